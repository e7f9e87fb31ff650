"""Batch-size rules of [Sievert] §3.1 (S0 L753-911, App. B) and [Holt & Sievert] (S1 L186-199).

A rule decides, before every model update k, the batch size B_k and a factor on the base learning
rate gamma; after the update it sees the batch's loss and squared gradient norm. Rules are pure
functions over a small state (`RuleState`), so a driver can jit them, resume them bit-exactly and
run them inside `lax.while_loop` (the schedule arithmetic of S1 Table 1).

    rule = RadaDamp(initial_batch=256, max_batch=1024)
    state = rule.init()
    state, batch, lr_scale = rule.schedule(state, observation)   # before update k
    state = rule.observe(state, loss, grad_sq_norm)               # after it

* `Constant(B)`: plain mini-batch SGD.
* `Oracle(B_0, optimum)`: B_k = ceil(B_0 (F(w_0) - F*) / (F(w_k) - F*)) (Eq. 3.3, S0 L2218); it
  needs the full-data loss F(w_k) every update, whose cost the driver reports (pitfall 1).
* `GradientNorm(B_0)`: B_k = ceil(c / ||grad F(w_k)||^2), c = B_0 ||grad F(w_0)||^2 (Thm. 5).
* `RadaDamp(B_0, B_max, rho=0.999, regularization=1e-3)`: Algorithm 1, the rolling average
  d_k = rho d_{k-1} + (1 - rho)(L_k + lambda ||grad L_k||^2) started at d_0 = t_0 (not at zero),
  B_{k+1} = ceil(B_0 d_0 / d_k).
* `GeoDamp(B_0, factor, delay, B_max)`: the batch times `factor` every `delay` epochs (Smith et
  al.); no linear scaling of the rate with the batch (S0 §3.4 pitfall 3).
* `Linear(B_0, slope)`: the passive rule B_k = B_0 + ceil(m k) (S0 L868).
* `LearningRateTwin(rule)`: RADADAMP-LR, GeoDamp-LR: the batch stays at B_0 and the rate is
  divided by the factor the batch would have grown by (S0 L2257-2261).

Every rule caps the batch at `max_batch` as Alg. 1 lines 2-5 do: past it, the rate is
gamma B_max / B_k, recomputed from the base gamma each update (never compounded).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.core.state import state_class
from jaxdist.errors import ArgumentError, check_at_least


@state_class
class RuleState:
  """What a rule carries between updates.

  Attributes:
    batch: the uncapped batch size the rule asks for at the next update (float32: it may grow
      past any integer range before the cap).
    average: the rolling average d_k (RADADAMP), or 0.
    reference: d_0 (RADADAMP), F(w_0) - F* (oracle) or c (gradient norm); 0 until known.
    updates: model updates so far.
  """

  batch: jax.Array
  average: jax.Array
  reference: jax.Array
  updates: jax.Array


def cap(requested: jax.Array, max_batch: float) -> tuple[jax.Array, jax.Array]:
  """Alg. 1 lines 2-5: (B_k, gamma' / gamma) = (min(B, B_max), B_max / B if B >= B_max else 1)."""
  requested = jnp.maximum(jnp.ceil(requested), 1.0)
  if math.isinf(max_batch):
    return requested.astype(jnp.int32), jnp.float32(1.0)
  over = requested >= max_batch
  scale = jnp.where(over, max_batch / requested, 1.0).astype(jnp.float32)
  return jnp.where(over, max_batch, requested).astype(jnp.int32), scale


def _check_batch(name: str, value: Any) -> None:
  check_at_least(name, value, 1, integer=True)


@dataclasses.dataclass(frozen=True)
class Rule:
  """Base: a constant requested batch; subclasses change `_requested` or `observe`.

  Attributes:
    initial_batch: B_0.
    max_batch: B_max, the cap past which the rate decays instead (inf: no cap).
  """

  initial_batch: int = 32
  max_batch: float = math.inf

  needs_full: bool = dataclasses.field(default=False, init=False)

  def __post_init__(self):
    _check_batch("initial_batch", self.initial_batch)
    if not (self.max_batch == math.inf or (isinstance(self.max_batch, int) and
                                           self.max_batch >= self.initial_batch)):
      raise ArgumentError("max_batch", f"{self.max_batch!r}",
                          f"an integer >= initial_batch ({self.initial_batch}), or math.inf")

  def init(self) -> RuleState:
    zero = jnp.float32(0.0)
    return RuleState(jnp.float32(self.initial_batch), zero, zero, jnp.int32(0))

  def _requested(self, state: RuleState, observation: dict[str, jax.Array]
                 ) -> tuple[RuleState, jax.Array]:
    return state, state.batch

  def schedule(self, state: RuleState, observation: dict[str, jax.Array]
               ) -> tuple[RuleState, jax.Array, jax.Array]:
    """(state, B_k, lr factor) for the next update.

    Args:
      state: the rule's state.
      observation: `epoch` (gradient evaluations / n so far), and for rules with `needs_full`
        `full_loss` and `full_grad_sq` at the current model.
    """
    state, requested = self._requested(state, observation)
    batch, scale = cap(requested, self.max_batch)
    return state, batch, scale

  def observe(self, state: RuleState, loss: jax.Array, grad_sq_norm: jax.Array) -> RuleState:
    """After the update: the batch's mean loss and squared gradient norm."""
    del loss, grad_sq_norm
    return state.replace(updates=state.updates + 1)


@dataclasses.dataclass(frozen=True)
class Constant(Rule):
  """B_k = B_0: plain mini-batch SGD."""


@dataclasses.dataclass(frozen=True)
class Oracle(Rule):
  """Eq. 3.3 with c = B_0 (F(w_0) - F*): B_k = ceil(B_0 (F(w_0) - F*) / (F(w_k) - F*)).

  Attributes:
    optimum: F*, the optimal training loss (0 for over-parameterised models, S0 L767-769).
  """

  optimum: float = 0.0
  needs_full: bool = dataclasses.field(default=True, init=False)

  def _requested(self, state, observation):
    gap = jnp.maximum(observation["full_loss"] - self.optimum, 1e-30)
    reference = jnp.where(state.updates == 0, gap, state.reference)
    return state.replace(reference=reference), self.initial_batch * reference / gap


@dataclasses.dataclass(frozen=True)
class GradientNorm(Rule):
  """Thm. 5: B_k = ceil(c / ||grad F(w_k)||^2) with c = B_0 ||grad F(w_0)||^2."""

  needs_full: bool = dataclasses.field(default=True, init=False)

  def _requested(self, state, observation):
    norm = jnp.maximum(observation["full_grad_sq"], 1e-30)
    reference = jnp.where(state.updates == 0, norm, state.reference)
    return state.replace(reference=reference), self.initial_batch * reference / norm


@dataclasses.dataclass(frozen=True)
class RadaDamp(Rule):
  """RADADAMP, Algorithm 1 (S0 L883-900) with dwell 1.

  Attributes:
    rho: memory of the rolling average (0.999).
    regularization: lambda, the weight of ||grad L||^2 in t_k (1e-3).
  """

  rho: float = 0.999
  regularization: float = 1e-3

  def __post_init__(self):
    super().__post_init__()
    if not 0 <= self.rho < 1:
      raise ArgumentError("rho", f"{self.rho!r}", "a number in [0, 1)")
    check_at_least("regularization", self.regularization, 0)

  def observe(self, state, loss, grad_sq_norm):
    t = (loss + self.regularization * grad_sq_norm).astype(jnp.float32)  # line 8
    first = state.updates == 0
    average = jnp.where(first, t, self.rho * state.average + (1 - self.rho) * t)  # lines 9-12
    reference = jnp.where(first, t, state.reference)
    batch = jnp.ceil(self.initial_batch * reference / average)  # line 13
    return RuleState(batch, average, reference, state.updates + 1)


@dataclasses.dataclass(frozen=True)
class GeoDamp(Rule):
  """Geometric growth: B_0 * factor^floor(epoch / delay), epochs counted in examples / n.

  Attributes:
    factor: the damping factor (1.219231 on Fashion-MNIST, 5 on CIFAR-10).
    delay: epochs between damping steps (10), or `milestones` instead.
    milestones: the epochs at which to damp (60, 120, 180 for CIFAR-10); overrides `delay`.
  """

  factor: float = 2.0
  delay: float = 10.0
  milestones: tuple[float, ...] = ()

  def __post_init__(self):
    super().__post_init__()
    if not self.factor > 0:
      raise ArgumentError("factor", f"{self.factor!r}", "a number > 0")
    if not self.delay > 0:
      raise ArgumentError("delay", f"{self.delay!r}", "a number of epochs > 0")
    if list(self.milestones) != sorted(self.milestones):
      raise ArgumentError("milestones", f"{self.milestones!r} not increasing", "epochs, sorted")

  def damping_steps(self, epoch: jax.Array) -> jax.Array:
    if self.milestones:
      return jnp.sum(epoch >= jnp.asarray(self.milestones, jnp.float32)).astype(jnp.float32)
    return jnp.floor(epoch / self.delay)

  def _requested(self, state, observation):
    steps = self.damping_steps(jnp.asarray(observation["epoch"], jnp.float32))
    return state, self.initial_batch * jnp.float32(self.factor)**steps


@dataclasses.dataclass(frozen=True)
class Linear(Rule):
  """The passive rule B_k = B_0 + ceil(slope k) (S0 L868)."""

  slope: float = 1.0

  def _requested(self, state, observation):
    return state, self.initial_batch + jnp.ceil(self.slope * state.updates.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class LearningRateTwin:
  """The "-LR" twin of a rule: B_0 throughout, the rate divided by the factor the batch would
  have grown by (RADADAMP-LR, GeoDamp-LR = SGD with step decay; S0 L2257-2261)."""

  rule: Rule

  def __post_init__(self):
    if not isinstance(self.rule, Rule):
      raise ArgumentError("rule", f"{self.rule!r} is not a batch-size rule",
                          "RadaDamp(...), GeoDamp(...), ...")

  @property
  def needs_full(self) -> bool:
    return self.rule.needs_full

  @property
  def initial_batch(self) -> int:
    return self.rule.initial_batch

  @property
  def max_batch(self) -> float:
    return self.rule.initial_batch

  def init(self) -> RuleState:
    return self.rule.init()

  def schedule(self, state, observation):
    state, requested = self.rule._requested(state, observation)
    scale = self.rule.initial_batch / jnp.maximum(jnp.ceil(requested), 1.0)
    return state, jnp.int32(self.rule.initial_batch), scale.astype(jnp.float32)

  def observe(self, state, loss, grad_sq_norm):
    return self.rule.observe(state, loss, grad_sq_norm)


def check_rule(rule: Any) -> None:
  if not isinstance(rule, (Rule, LearningRateTwin)):
    raise ArgumentError("rule", f"{rule!r} is not a batch-size rule",
                        "Constant, Oracle, GradientNorm, RadaDamp, GeoDamp, Linear, or "
                        "LearningRateTwin(rule)")
