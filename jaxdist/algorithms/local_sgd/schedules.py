"""When local SGD averages: averaging schedules ([Lin22] Alg. 7, 8, eq. 11.1).

A schedule maps t, the number of local steps done, to a level: 0 for no averaging, `num_levels`
for an average over all workers, and 1 .. num_levels - 1 for averages over sub-groups (the
innermost grid dimensions: the workers of a node). The schedule of t is evaluated inside the jit.

* `Periodic(period, start)`: all workers average after step t when t > start and
  (t - start) % period == 0, i.e. every H local steps after the first `start` (Alg. 7);
* `Hierarchical(period, block, start)`: within the node every H steps, over all workers every
  H * H_b steps (eq. 11.1; Alg. 11's caption and loop order are misprints);
* `PostLocal(switch, period)`: every step until `switch`, then every H (Alg. 8's switch where the
  models, not the gradients, are what is averaged: sign-compressed post-local SGD).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxdist.errors import check_at_least


@dataclasses.dataclass(frozen=True)
class Periodic:
  """Average over all workers every `period` local steps after step `start`."""

  period: int = 1
  start: int = 0
  num_levels = 1

  def __post_init__(self):
    check_at_least("local_steps", self.period, 1, integer=True)
    check_at_least("start", self.start, 0, integer=True)

  def level(self, t: jax.Array) -> jax.Array:
    since = t - self.start
    return jnp.where((since > 0) & (since % self.period == 0), 1, 0)


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
