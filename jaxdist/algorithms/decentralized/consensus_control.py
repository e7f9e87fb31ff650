"""Consensus control ([Lin22] §5.5): how much a D-SGD step communicates, phase by phase.

Phases are the learning-rate phases (the segments between decays; `phase_steps` are the first
steps of the phases after the first). In the phases `control_phases`, gossip rounds are repeated
after the step until Xi <= `target` (at most `max_rounds` per step); in `exact_phases` the
workers all-reduce instead (the "dec-phase-x" runs); elsewhere one gossip round. Every step also
gives Theta, the cheap estimator of Xi after the first round (§5.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.communication.gossip import Gossip, consensus_distance
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_at_least

PyTree = Any


class ConsensusControl:
  """Extra gossip rounds up to a consensus target, or exact averaging, by phase.

  Args:
    target: Xi to gossip down to in the controlled phases; 0 for no extra rounds.
    phase_steps: first steps of the learning-rate phases after the first.
    control_phases: phases (0, 1, ...) under control; empty for all.
    exact_phases: phases that all-reduce instead of gossiping.
    max_rounds: cap on gossip rounds per step.
  """

  def __init__(self, target: float = 0.0, *, phase_steps: Sequence[int] = (),
               control_phases: Sequence[int] = (), exact_phases: Sequence[int] = (),
               max_rounds: int = 100):
    check_at_least("consensus_target", target, 0)
    check_at_least("max_gossip_rounds", max_rounds, 1, integer=True)
    num_phases = len(phase_steps) + 1
    for name, phases in (("control_phases", control_phases), ("exact_phases", exact_phases)):
      if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < num_phases
             for p in phases):
        raise ArgumentError(name, f"{tuple(phases)} names a phase the learning-rate schedule "
                            "does not have", f"phase indices 0..{num_phases - 1}")
    self.target, self.max_rounds = target, int(max_rounds)
    self.phase_steps = np.asarray(phase_steps, np.int32)
    self.control_phases = tuple(control_phases) or tuple(range(num_phases))
    self.exact_phases = tuple(exact_phases)

  def phase(self, step: jax.Array) -> jax.Array:
    return jnp.searchsorted(jnp.asarray(self.phase_steps), step, side="right")

  def __call__(self, gossip: Gossip, half: PyTree, rounds: jax.Array, step: jax.Array):
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

    def more(carry):
      params, done = carry
      return (controlled & (done < self.max_rounds) &
              (consensus_distance(params) > self.target))

    def gossip_again(carry):
      params, done = carry
      return gossip.mix(params, rounds + done), done + 1

    params, done = lax.while_loop(more, gossip_again, (mixed, jnp.int32(1)))
    return params, mixed, done, messages
