"""Compressed-gossip baselines of [Lin22] Table 4.1: DCD-PSGD and ECD-PSGD (Tang et al. 2018a) and
DeepSqueeze (Tang et al. 2019). The thesis runs them with momentum but does not restate their
rules (§7 of the digest); these are the papers' updates with the local optimizer's update u_t in
place of -eta g_t, each sending one compressed message to each neighbour per step.

* DCD-PSGD (difference compression): x_{t+1} = x_t + C(sum_j w_ij x_j + u_t - x_t). Every worker
  applies the same C(.) to its copies of its neighbours, so they stay exact; s_i = sum_j w_ij x_j
  is kept as one vector, moved by the mixed messages.
* ECD-PSGD (extrapolation compression): x_{t+1} = sum_j w_ij y_j + u_t, with the estimates
  y_j <- (1 - 2/t) y_j + (2/t) C(z_j), z = (1 - t/2) x_t + (t/2) x_{t+1}, t = 1, 2, ...;
  s_i = sum_j w_ij y_j kept as one vector. Meant for unbiased compressors.
* DeepSqueeze (error-compensated): v = x_t + u_t + e, e <- v - C(v),
  x_{t+1} = x_t + u_t + gamma (sum_j w_ij C(v_j) - C(v_i)).
"""

from __future__ import annotations

from typing import Any

import jax
import optax.tree_utils as otu

from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState, metric_dtype
from jaxdist.communication.compression import Compressor
from jaxdist.core.state import per_worker, state_class
from jaxdist.errors import ArgumentError, check_at_least

PyTree = Any


@state_class
class CompressedState(DecentralizedState):
  memory: PyTree = per_worker(None)  # DCD, ECD: s = sum_j w_ij (copy of x_j); DeepSqueeze: e


class CompressedGossip(Decentralized):
  """What the three share: a compressor, a static graph, one compressed message a step."""

  def __init__(self, *args, compressor: Compressor, **kwargs):
    super().__init__(*args, **kwargs)
    if not isinstance(compressor, Compressor):
      raise ArgumentError("compressor", f"{compressor!r} is not a compressor",
                          "jaxdist.compression.TopK(a), RandomK(a), Sign(), QSGD(b), Identity()")
    if not self.gossip.static:
      raise ArgumentError("topology", f"{type(self).__name__} keeps its neighbours' copies "
                          f"mixed by one fixed W; {self.gossip.topology.name} changes with the "
                          "step", "ring, torus, complete, exponential, social, disconnected")
    self.compressor = compressor

  def initial_memory(self, params):
    return params  # s = W x0 = x0: every worker starts from the same model

  def init(self, params, model_state, rng) -> CompressedState:
    state = super().init(params, model_state, rng)
    return CompressedState(**vars(state), memory=self.initial_memory(params))

  def step(self, state: CompressedState, batch, rng):
    compress_rng = self.compressor.leaf_key(rng, 2**31 - 1)
    updates, opt_state, _, model_state, metrics = self.local_step(state, batch, rng)
    params, memory, message_bits = self.communicate(state, updates, compress_rng)
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state, memory=memory)
    return new, self.metrics(metrics, params, 1, self.gossip.neighbours(state.rounds),
                             message_bits)

  def communicate(self, state, updates, rng):
    raise NotImplementedError


class DCDPSGD(CompressedGossip):
  """DCD-PSGD: x_{t+1} = x_t + C(sum_j w_ij x_j + u_t - x_t)."""

  def communicate(self, state, updates, rng):
    z = jax.tree.map(lambda s, u, x: s + u - x, state.memory, updates, state.params)
    sent = self.compressor.tree(z, rng)
    mixed = otu.tree_add(state.memory, self.gossip.mix(sent, state.rounds))
    return otu.tree_add(state.params, sent), mixed, self.compressor.tree_bits(sent)


class ECDPSGD(CompressedGossip):
  """ECD-PSGD: x_{t+1} = sum_j w_ij y_j + u_t; y <- (1 - 2/t) y + (2/t) C(z)."""

  def communicate(self, state, updates, rng):
    t = (state.step + 1).astype(metric_dtype(state.params))  # 2/t exact to the params' dtype
    params = otu.tree_add(state.memory, updates)
    z = jax.tree.map(lambda a, b: ((1 - t / 2) * a + (t / 2) * b).astype(a.dtype),
                     state.params, params)
    sent = self.compressor.tree(z, rng)
    mixed = jax.tree.map(lambda s, m: ((1 - 2 / t) * s + (2 / t) * m).astype(s.dtype),
                         state.memory, self.gossip.mix(sent, state.rounds))
    return params, mixed, self.compressor.tree_bits(sent)


class DeepSqueeze(CompressedGossip):
  """DeepSqueeze: v = x + u + e, e <- v - C(v), x <- x + u + gamma (sum_j w_ij C(v_j) - C(v_i)).

  Args:
    consensus_step: gamma (much smaller than CHOCO's, [Lin22] Table 13.3: 0.0005-0.05).
  """

  def __init__(self, *args, consensus_step: float, **kwargs):
    super().__init__(*args, **kwargs)
    check_at_least("consensus_step", consensus_step, 0)
    self.consensus_step = consensus_step

  def initial_memory(self, params):
    return otu.tree_zeros_like(params)

  def communicate(self, state, updates, rng):
    half = otu.tree_add(state.params, updates)
    v = otu.tree_add(half, state.memory)
    sent = self.compressor.tree(v, rng)
    mixed = self.gossip.mix(sent, state.rounds)
    params = jax.tree.map(lambda h, m, q: h + self.consensus_step * (m - q), half, mixed, sent)
    return params, otu.tree_sub(v, sent), self.compressor.tree_bits(sent)
