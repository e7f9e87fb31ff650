"""Compute-time models: how long one worker takes for one gradient ([S3 L891-937], pitfall 8).

The cost of synchrony depends entirely on the tail of these times, so they are a parameter of every
simulator. A model gives one worker's time for one computation from a key and the worker's index,
`model.sample(key, worker) -> scalar`, so it runs inside a jitted simulator, vmapped over workers.

    Constant(1.0)                       every computation takes 1
    Exponential(mean=1.0, offset=0.2)   offset + Exp(mean): memoryless, the order-statistics model
    LogNormal(sigma=1.5)                exp(mu + sigma N(0, 1)): a heavy tail
    Straggler(Constant(1.0), worker=0, slowdown=10.0)   one worker always 10 times slower
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxdist.errors import ArgumentError, check_at_least


class ComputeTime:
  """A distribution of one worker's compute time; subclasses define `sample`."""

  def sample(self, key: jax.Array, worker: jax.Array) -> jax.Array:
    raise NotImplementedError

  def mean(self, worker: int = 0) -> float:
    """The expected time of `worker`'s computation."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Constant(ComputeTime):
  """Every computation takes `time` (deterministic: synchrony costs nothing, pitfall 8)."""
  time: float = 1.0

  def __post_init__(self):
    check_at_least("time", self.time, 0)

  def sample(self, key, worker):
    del key, worker
    return jnp.float32(self.time)

  def mean(self, worker=0):
    return self.time


@dataclasses.dataclass(frozen=True)
class Exponential(ComputeTime):
  """`offset` + an exponential time of mean `mean` (check 6's Exp(1) + a constant)."""
  mean_time: float = 1.0
  offset: float = 0.0

  def __post_init__(self):
    check_at_least("mean_time", self.mean_time, 0)
    check_at_least("offset", self.offset, 0)

  def sample(self, key, worker):
    del worker
    return jnp.float32(self.offset) + self.mean_time * jax.random.exponential(key, ())

  def mean(self, worker=0):
    return self.offset + self.mean_time


@dataclasses.dataclass(frozen=True)
class LogNormal(ComputeTime):
  """`offset` + exp(mu + sigma N(0, 1)): a heavy tail for large `sigma`."""
  mu: float = 0.0
  sigma: float = 1.0
  offset: float = 0.0

  def __post_init__(self):
    check_at_least("sigma", self.sigma, 0)
    check_at_least("offset", self.offset, 0)

  def sample(self, key, worker):
    del worker
    return jnp.float32(self.offset) + jnp.exp(self.mu + self.sigma * jax.random.normal(key, ()))

  def mean(self, worker=0):
    return self.offset + float(jnp.exp(self.mu + self.sigma**2 / 2))


@dataclasses.dataclass(frozen=True)
class Straggler(ComputeTime):
  """`base`'s times, with worker `worker` always `slowdown` times slower (a fixed straggler)."""
  base: ComputeTime = dataclasses.field(default_factory=Constant)
  worker: int = 0
  slowdown: float = 10.0

  def __post_init__(self):
    if not isinstance(self.base, ComputeTime):
      raise ArgumentError("base", f"{self.base!r} is not a compute-time model",
                          "Constant, Exponential, LogNormal")
    check_at_least("worker", self.worker, 0, integer=True)
    check_at_least("slowdown", self.slowdown, 1)

  def sample(self, key, worker):
    time = self.base.sample(key, worker)
    return jnp.where(worker == self.worker, self.slowdown * time, time)

  def mean(self, worker=0):
    return self.base.mean(worker) * (self.slowdown if worker == self.worker else 1.0)


def check_compute_time(name: str, model: object) -> None:
  if not isinstance(model, ComputeTime):
    raise ArgumentError(name, f"{model!r} is not a compute-time model",
                        "jaxdist.asynchrony.Constant, Exponential, LogNormal, Straggler")


def draw(model: ComputeTime, key: jax.Array, worker: jax.Array, count: jax.Array) -> jax.Array:
  """The time of `worker`'s `count`-th computation: a function of (key, worker, count) only, so a
  schedule is the same however the simulation is cut into calls."""
  return model.sample(jax.random.fold_in(jax.random.fold_in(key, worker), count), worker)
