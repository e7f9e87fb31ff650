"""When local SGD averages: averaging schedules ([Lin22] Alg. 7, 8, eq. 11.1).

A schedule maps t, the number of local steps done, to a level: 0 for no averaging, `num_levels`
for an average over all workers, and 1 .. num_levels - 1 for averages over sub-groups (the
innermost grid dimensions: the workers of a node). The schedule of t is evaluated inside the jit.

* `Periodic(period, start, offset)`: all workers average after step t when t > start and
  (t - start) % period == 0, i.e. every H local steps after the first `start` (Alg. 7); with an
  `offset` o > 0 the first average comes o steps after `start`, then every H
  (`Periodic.torch(period, warmup_steps)` is PyTorch's `PeriodicModelAverager`: first right after
  step warmup + 1);
* `LocalStepsWarmup(period, warmup_steps, ramp)`: H grows from 1 to `period` over the first
  `warmup_steps` steps, "exponential" (1, 2, 4, ... in equal stages, [Lin22] L2959: the ImageNet
  runs), "linear" (1, 2, 3, ...) or "constant" (1 throughout, then H) (App. 11.2.5, L3059);
* `Hierarchical(period, block, start)`: within the node every H steps, over all workers every
  H * H_b steps (eq. 11.1; Alg. 11's caption and loop order are misprints);
* `PostLocal(switch, period)`: every step until `switch`, then every H (Alg. 8's switch where the
  models, not the gradients, are what is averaged: sign-compressed post-local SGD).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxdist.errors import check_at_least, check_choice


@dataclasses.dataclass(frozen=True)
class Periodic:
  """Average over all workers every `period` local steps after step `start`."""

  period: int = 1
  start: int = 0
  offset: int = 0
  num_levels = 1

  def __post_init__(self):
    check_at_least("local_steps", self.period, 1, integer=True)
    check_at_least("start", self.start, 0, integer=True)
    check_at_least("offset", self.offset, 0, integer=True)

  @classmethod
  def torch(cls, period: int, warmup_steps: int = 0) -> Periodic:
    """PyTorch's `PeriodicModelAverager(period, warmup_steps)`, called after every optimizer
    step: its call c (from 0) averages when c >= warmup_steps and (c - warmup_steps) % period
    == 0, i.e. after steps warmup + 1, warmup + 1 + period, ..."""
    return cls(period, start=warmup_steps, offset=1)

  def level(self, t: jax.Array) -> jax.Array:
    since = t - self.start
    due = (since > 0) & (since >= self.offset) & ((since - self.offset) % self.period == 0)
    return jnp.where(due, 1, 0)


WARMUP_RAMPS = ("exponential", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class LocalStepsWarmup:
  """H ramps from 1 to `period` over the first `warmup_steps` steps, in equal stages: H = 1, 2,
  4, ... ("exponential", log2 H stages), 1, 2, ..., H - 1 ("linear") or 1 ("constant", one
  stage); every stage ends with an average, then every `period` steps."""

  period: int
  warmup_steps: int
  ramp: str = "exponential"
  num_levels = 1

  def __post_init__(self):
    check_at_least("local_steps", self.period, 1, integer=True)
    check_at_least("warmup_steps", self.warmup_steps, 0, integer=True)
    check_choice("ramp", self.ramp, WARMUP_RAMPS)

  def stages(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(first step of each stage, H of each stage), the last stage being the target H."""
    if self.ramp == "exponential":
      sizes = [min(2**s, self.period) for s in range(max(1, math.ceil(math.log2(self.period))))]
    elif self.ramp == "linear":
      sizes = list(range(1, max(2, self.period)))
    else:
      sizes = [1]
    n = len(sizes) if self.warmup_steps else 0
    starts = [round(i * self.warmup_steps / max(n, 1)) for i in range(n)] + [self.warmup_steps]
    return tuple(starts), tuple(sizes[:n]) + (self.period,)

  def level(self, t: jax.Array) -> jax.Array:
    starts, sizes = self.stages()
    starts_array = jnp.asarray(starts)
    t = jnp.asarray(t)
    after = t[..., None] > starts_array.reshape((1,) * t.ndim + (-1,))
    stage = jnp.maximum(jnp.sum(after, -1) - 1, 0)
    begin = starts_array[stage]
    end = jnp.asarray(starts[1:] + (2**30,))[stage]  # a stage's last step averages
    due = ((t - begin) % jnp.asarray(sizes)[stage] == 0) | (t == end)
    return jnp.where((t > 0) & due, 1, 0)


@dataclasses.dataclass(frozen=True)
class Hierarchical:
  """Average within the node every `period` steps, over all workers every `period * block`."""

  period: int = 1
  block: int = 1
  start: int = 0
  num_levels = 2

  def __post_init__(self):
    check_at_least("local_steps", self.period, 1, integer=True)
    check_at_least("block_steps", self.block, 1, integer=True)
    check_at_least("start", self.start, 0, integer=True)

  def level(self, t: jax.Array) -> jax.Array:
    since = t - self.start
    started = since > 0
    everyone = started & (since % (self.period * self.block) == 0)
    node = started & (since % self.period == 0)
    return jnp.where(everyone, 2, jnp.where(node, 1, 0))


@dataclasses.dataclass(frozen=True)
class PostLocal:
  """Average over all workers after every step up to `switch`, then every `period` steps."""

  switch: int
  period: int = 1
  num_levels = 1

  def __post_init__(self):
    check_at_least("switch_step", self.switch, 0, integer=True)
    check_at_least("local_steps", self.period, 1, integer=True)

  def level(self, t: jax.Array) -> jax.Array:
    since = t - self.switch
    due = (t <= self.switch) | (since % self.period == 0)
    return jnp.where(due, 1, 0)
