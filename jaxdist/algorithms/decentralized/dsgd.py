"""D-SGD ([Lin22] §4.4, eq. at L1354; Alg. 14): x_i <- sum_j w_ij (x_j + u_j), u_j the local
optimizer's update; with momentum it is DSGDm, with Nesterov DSGDm-N (only parameters travel).

How a step communicates is a piece of its own: one gossip round (`GossipOnce`), or consensus
control (`jaxdist.algorithms.decentralized.consensus_control`).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.communication.gossip import Gossip, gossip_residual
from jaxdist.core.state import shared, state_class
from jaxdist.errors import ArgumentError

PyTree = Any


@state_class
class ControlledState(DecentralizedState):
  control: Any = shared(None)  # the communication policy's state (phi_ema)


class GossipOnce:
  """One gossip round per step: (params, params after the first round, rounds, messages)."""

  def __call__(self, gossip: Gossip, half: PyTree, rounds: jax.Array, step: jax.Array):
    mixed = gossip.mix(half, rounds)
    return mixed, mixed, 1, gossip.messages(rounds)


class DSGD(Decentralized):
  """D-SGD: the local step, then `communication` (default one gossip round).

  Args:
    communication: `GossipOnce()` or a `ConsensusControl(...)`.
    (the others as for `Decentralized`)
  """

  def __init__(self, *args, communication=None, **kwargs):
    super().__init__(*args, **kwargs)
    self.communication = GossipOnce() if communication is None else communication
    if not callable(self.communication):
      raise ArgumentError("communication", f"{communication!r} is not a communication policy",
                          "GossipOnce(), ConsensusControl(...)")
    self.wants_phi = getattr(self.communication, "needs_phi", False)

  def init(self, params, model_state, rng) -> DecentralizedState:
    state = super().init(params, model_state, rng)
    if self.wants_phi:
      return ControlledState(**vars(state), control=self.communication.init())
    return state

  def step(self, state: DecentralizedState, batch, rng):
    _, opt_state, half, model_state, metrics = self.local_step(state, batch, rng)
    extra, kwargs = {}, {}
    if self.wants_phi:  # the target scales with phi_ema
      extra["control"] = self.communication.update(state.control, metrics["consensus/phi"],
                                                   state.step)
      kwargs["phi_ema"] = extra["control"].phi_ema
    params, first, rounds, messages = self.communication(self.gossip, half, state.rounds,
                                                         state.step, **kwargs)
    opt_state = self.after_communication(state, opt_state, params)
    residual = gossip_residual(half, first) if self.measure_consensus else None
    new = state.replace(step=state.step + 1, rounds=state.rounds + rounds, params=params,
                        opt_state=opt_state, model_state=model_state, **extra)
    metrics = self.metrics(metrics, params, rounds, messages, bits_per_model(params), residual)
    extra_bits = self.extra_bits(state, params)
    if extra_bits is not None:
      metrics["comm/bits_sent"] = metrics["comm/bits_sent"] + extra_bits
    return new, metrics

  def extra_bits(self, state: DecentralizedState, params: PyTree):
    """Bits sent besides the parameters' gossip (a variant that also exchanges its buffer)."""
    return None

  def after_communication(self, state: DecentralizedState, opt_state: PyTree,
                          params: PyTree) -> PyTree:
    """The optimizer state after the step; quasi-global momentum rebuilds its buffer here."""
    return opt_state
