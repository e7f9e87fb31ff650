"""Consensus control ([Lin22] §5.5): how much a D-SGD step communicates, phase by phase.

Phases are the learning-rate phases (the segments between decays; `phase_steps` are the first
steps of the phases after the first). In the phases `control_phases`, gossip rounds are repeated
after the step until the stopping rule holds (at most `max_rounds` per step); in `exact_phases`
the workers all-reduce instead (the "dec-phase-x" runs); elsewhere one gossip round. The rules:

* `distance` (§5.5.1): Xi <= target, Xi the consensus distance (an all-reduce of the model a
  round); `target` one value or one per phase (targets of factor * Xi_max, `xi_max_per_phase`
  calibrates Xi_max from an uncontrolled run's metrics);
* `adaptive` (App. 14.5.3, Table 14.9): Xi <= target * phi_ema;
* `residual` (L4525, Tables 14.1/14.2): Theta < target * phi_ema, Theta the gossip residual of
  the latest round (a scalar all-reduce a round), target = q in {1e-4, 1e-3, 1e-2}.

phi_t = sqrt((1/n) sum_i ||grad f_i(x_i)||^2) is the mean local gradient norm
(`consensus/phi`); phi_ema its exponential moving average with decay `ema_decay`, restarted at
every phase (kept in the step's state). Every step also gives Theta after the first round (§5.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.communication.gossip import Gossip, consensus_distance, gossip_residual
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_at_least, check_choice, check_fraction

PyTree = Any
RULES = ("distance", "adaptive", "residual")


# phi_ema: the EMA of phi_t within the phase (the same on every worker)
ControlState = NamedTuple(  # noqa: UP014 (the API reference cannot read string annotations)
    "ControlState", [("phi_ema", Any)])


def xi_max_per_phase(distance, phase_steps: Sequence[int], first_step: int = 1) -> tuple:
  """Xi_max of every phase: the largest consensus distance an uncontrolled run logged in it.

  Args:
    distance: the run's `consensus/distance`, one value per step from `first_step` on (e.g.
      `result.metric("train/consensus/distance")` or the per-step metrics of `Runner.run`).
    phase_steps: first steps of the phases after the first (as for `ConsensusControl`).
    first_step: the step of `distance[0]` (steps count from 1 after the first update).
  Returns:
    one Xi_max per phase; multiply by the factors (1, 1/2, 1/4, ...) for the targets.
  """
  distance = np.asarray(distance, np.float64)
  steps = first_step + np.arange(len(distance)) - 1  # the step that produced each value
  phases = np.searchsorted(np.asarray(phase_steps), steps, side="right")
  return tuple(float(distance[phases == p].max()) if np.any(phases == p) else float("nan")
               for p in range(len(phase_steps) + 1))


class ConsensusControl:
  """Extra gossip rounds up to a consensus target, or exact averaging, by phase.

  Args:
    target: the rule's target in the controlled phases, one value or one per phase; 0 for no
      extra rounds.
    phase_steps: first steps of the learning-rate phases after the first.
    control_phases: phases (0, 1, ...) under control; empty for all.
    exact_phases: phases that all-reduce instead of gossiping.
    max_rounds: cap on gossip rounds per step.
    rule: `distance` (Xi <= target), `adaptive` (Xi <= target * phi_ema) or `residual`
      (Theta < target * phi_ema).
    ema_decay: decay of phi_ema, in [0, 1).
  """

  def __init__(self, target: float | Sequence[float] = 0.0, *, phase_steps: Sequence[int] = (),
               control_phases: Sequence[int] = (), exact_phases: Sequence[int] = (),
               max_rounds: int = 100, rule: str = "distance", ema_decay: float = 0.9):
    num_phases = len(phase_steps) + 1
    targets = tuple(target) if isinstance(target, (tuple, list)) else (target,) * num_phases
    if len(targets) != num_phases:
      raise ArgumentError("consensus_target", f"{len(targets)} targets for {num_phases} phases",
                          f"one number, or {num_phases} (one per phase)")
    for value in targets:
      check_at_least("consensus_target", value, 0)
    check_at_least("max_gossip_rounds", max_rounds, 1, integer=True)
    check_choice("consensus_rule", rule, RULES)
    check_fraction("ema_decay", ema_decay)
    for name, phases in (("control_phases", control_phases), ("exact_phases", exact_phases)):
      if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < num_phases
             for p in phases):
        raise ArgumentError(name, f"{tuple(phases)} names a phase the learning-rate schedule "
                            "does not have", f"phase indices 0..{num_phases - 1}")
    self.targets, self.max_rounds = targets, int(max_rounds)
    self.target = max(targets)  # 0: no extra rounds anywhere
    self.rule, self.ema_decay = rule, float(ema_decay)
    self.phase_steps = np.asarray(phase_steps, np.int32)
    self.control_phases = tuple(control_phases) or tuple(range(num_phases))
    self.exact_phases = tuple(exact_phases)

  @property
  def needs_phi(self) -> bool:
    return self.rule != "distance" and self.target > 0

  def phase(self, step: jax.Array) -> jax.Array:
    return jnp.searchsorted(jnp.asarray(self.phase_steps), step, side="right")

  def init(self) -> ControlState:
    return ControlState(jnp.zeros((), jnp.float32))

  def update(self, control: ControlState, phi: jax.Array, step: jax.Array) -> ControlState:
    """phi_ema after this step's phi_t, restarted at the first step of every phase."""
    starts = jnp.isin(step, jnp.asarray(np.concatenate([[0], self.phase_steps]), jnp.int32))
    ema = self.ema_decay * control.phi_ema + (1 - self.ema_decay) * phi
    return ControlState(jnp.where(starts, phi, ema).astype(jnp.float32))

  def __call__(self, gossip: Gossip, half: PyTree, rounds: jax.Array, step: jax.Array,
               phi_ema: jax.Array | None = None):
    """(params, params after the first round, rounds, messages per round)."""
    phase = self.phase(step)
    messages = gossip.messages(rounds)
    if self.exact_phases:
      exact = jnp.isin(phase, jnp.asarray(self.exact_phases))
      mixed = lax.cond(exact, collectives.mean, lambda x: gossip.mix(x, rounds), half)
      messages = jnp.where(exact, 1, messages)  # one all-reduce
    else:
      mixed = gossip.mix(half, rounds)
    if not self.target:
      return mixed, mixed, 1, messages
    controlled = jnp.isin(phase, jnp.asarray(self.control_phases))
    if self.exact_phases:
      controlled &= ~exact
    target = jnp.asarray(self.targets, jnp.float32)[phase]
    controlled &= target > 0  # a phase with target 0 takes no extra rounds
    if self.rule != "distance":
      target = target * phi_ema

    def more(carry):
      params, before, done = carry
      if self.rule == "residual":  # Theta of the latest round, a scalar all-reduce
        unsettled = gossip_residual(before, params) >= target
      else:
        unsettled = consensus_distance(params) > target
      return controlled & (done < self.max_rounds) & unsettled

    def gossip_again(carry):
      params, _, done = carry
      return gossip.mix(params, rounds + done), params, done + 1

    params, _, done = lax.while_loop(more, gossip_again, (mixed, half, jnp.int32(1)))
    return params, mixed, done, messages
