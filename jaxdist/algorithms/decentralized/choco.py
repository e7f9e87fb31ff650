"""CHOCO-SGD and CHOCO-Gossip ([Lin22] ch. 4, Alg. 2/3; App. 13.1.1; Koloskova et al. 2019).

CHOCO-Gossip: one round moves this worker's public copy xhat by the compressed difference
q = Q(x - xhat), accumulates s += sum_j w_ij q_j, and pulls the private x towards its
neighbours' public copies, x += gamma (s - xhat). The average of the x_i is preserved exactly
whatever Q does; s_i = sum_j w_ij xhat_j is kept as one vector (L1109), so a worker stores three
model-sized vectors whatever its degree. Public copies start at zero (pitfall 9); Q acts per
tensor.

CHOCO-SGD (Alg. 2; with the optimizer's momentum, Alg. 3), in the order of Koloskova et al.: the
local step x_{t+1/2}, then one CHOCO-Gossip round on it. One compressed message to each
neighbour per step.
"""

from __future__ import annotations

from typing import Any

import jax
import optax.tree_utils as otu

from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.communication.compression import Compressor
from jaxdist.communication.gossip import Gossip
from jaxdist.core.state import per_worker, state_class
from jaxdist.errors import ArgumentError, check_at_least, is_traced

PyTree = Any


@state_class
class PublicCopies:
  own: PyTree = per_worker()  # xhat_i
  mixed: PyTree = per_worker()  # s_i = sum_j w_ij xhat_j


class ChocoGossip:
  """One CHOCO-Gossip round: `(params, public, rounds, rng) -> (params, public, bits)`."""

  def __init__(self, gossip: Gossip, compressor: Compressor, consensus_step: float):
    if not isinstance(compressor, Compressor):
      raise ArgumentError("compressor", f"{compressor!r} is not a compressor",
                          "jaxdist.compression.TopK(a), RandomK(a), Sign(), QSGD(b), Identity()")
    if not compressor.is_contraction:
      raise ArgumentError("compressor", "CHOCO needs a contractive (biased, scaled down) "
                          "compressor", "the biased forms (unbiased=False)")
    check_at_least("consensus_step", consensus_step, 0)
    # past 1 the pull overshoots the neighbours' copies and diverges
    if not is_traced(consensus_step) and consensus_step > 1:
      raise ArgumentError("consensus_step", f"{consensus_step} overshoots: gamma moves x part "
                          "of the way to its neighbours' copies", "0 <= consensus_step <= 1")
    self.gossip, self.compressor, self.consensus_step = gossip, compressor, consensus_step

  def init(self, params: PyTree) -> PublicCopies:
    zeros = otu.tree_zeros_like(params)
    return PublicCopies(zeros, zeros)  # public copies start at zero (L1084)

  def __call__(self, params, public: PublicCopies, rounds, rng):
    sent = self.compressor.tree(otu.tree_sub(params, public.own), rng)
    own = otu.tree_add(public.own, sent)
    mixed = otu.tree_add(public.mixed, self.gossip.mix(sent, rounds))
    params = jax.tree.map(lambda x, s, h: x + self.consensus_step * (s - h), params, mixed, own)
    return params, PublicCopies(own, mixed), self.compressor.tree_bits(sent)


@state_class
class ChocoState(DecentralizedState):
  public: PublicCopies = None


class ChocoSGD(Decentralized):
  """CHOCO-SGD: the local step, then one CHOCO-Gossip round.

  Args:
    compressor: Q, a contractive compressor (`jaxdist.compression.TopK(0.01)`, `Sign()`, ...).
    consensus_step: gamma (tune it per compressor, [Lin22] Table 13.1).
    (the others as for `Decentralized`; the topology must be static)
  """

  def __init__(self, *args, compressor: Compressor, consensus_step: float, **kwargs):
    super().__init__(*args, **kwargs)
    if not self.gossip.static:
      raise ArgumentError("topology", "CHOCO keeps s_i = sum_j w_ij xhat_j for one fixed W; "
                          f"{self.gossip.topology.name} changes with the step",
                          "ring, torus, complete, exponential, social")
    self.choco = ChocoGossip(self.gossip, compressor, consensus_step)

  def init(self, params, model_state, rng) -> ChocoState:
    state = super().init(params, model_state, rng)
    return ChocoState(**vars(state), public=self.choco.init(params))

  def step(self, state: ChocoState, batch, rng):
    compress_rng, rng = jax.random.split(rng)
    _, opt_state, half, model_state, metrics = self.local_step(state, batch, rng)
    params, public, message_bits = self.choco(half, state.public, state.rounds, compress_rng)
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state, public=public)
    return new, self.metrics(metrics, params, 1, self.gossip.neighbours(state.rounds),
                             message_bits)
