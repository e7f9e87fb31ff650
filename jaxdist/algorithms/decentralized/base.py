"""What the decentralized algorithms share ([Lin22] ch. 4, 5, 9): the local step, gossip, and the
measurements.

Every worker runs its own optimizer (momentum, Adam moments and BatchNorm statistics stay local);
only parameters travel, through `Gossip` rounds over a topology. Every step logs the bits each
worker sent (each gossip round sends the worker's message to each neighbour; an all-reduce counts
one model), the gossip rounds, and, unless `measure_consensus=False`, the consensus distance
Xi = sqrt(mean_i ||x_i - x_bar||^2) after communication (an all-reduce of the model) and the mean
local gradient norm phi_t = sqrt(mean_i ||g_i||^2) (`consensus/phi`, a scalar all-reduce).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.algorithms import base
from jaxdist.communication.gossip import Gossip, consensus_distance, squared_norm
from jaxdist.communication.topology import Topology
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class

PyTree = Any


@state_class
class DecentralizedState:
  step: jax.Array = shared()
  rounds: jax.Array = shared()  # gossip rounds so far: the time of a time-varying topology
  params: PyTree = per_worker()
  opt_state: PyTree = per_worker()
  model_state: PyTree = per_worker()


def metric_dtype(params: PyTree):
  """The widest float dtype of the parameters, at least float32."""
  return jnp.result_type(jnp.float32, *[x.dtype for x in jax.tree.leaves(params)])


class Decentralized:
  """The local step and the measurements of the decentralized algorithms.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: the local optimizer: an optax optimizer, or a function of the learning rate.
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    topology: the graph, e.g. `jaxdist.topology.ring(n)` for n workers.
    exchange: how neighbours' values arrive (`auto`, `shift`, `dense`, `mean`; see
      `jaxdist.communication.gossip`).
    measure_consensus: log the consensus distance every step (an all-reduce of the model).
    seed: the seed of a random matching's draws.
  """

  needs_rate: str | None = None  # why a subclass needs the learning rate
  wants_phi: bool = False  # log phi_t even without measure_consensus (consensus control)

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None, *,
               topology: Topology, exchange: str = "auto", measure_consensus: bool = True,
               seed: int = 0):
    base.check_loss(loss_fn)
    self.loss_fn, self.measure_consensus = loss_fn, measure_consensus
    self.tx, self.learning_rate = base.resolve_optimizer(optimizer, learning_rate,
                                                         self.needs_rate)
    self.gossip = Gossip(topology, exchange, seed)

  def init(self, params, model_state, rng) -> DecentralizedState:
    del rng
    zero = jnp.zeros((), jnp.int32)
    return DecentralizedState(zero, zero, params, self.tx.init(params), model_state)

  def deployed(self, state: DecentralizedState):
    return state.params, state.model_state

  def local_step(self, state: DecentralizedState, batch, rng):
    """(updates, opt_state, x_{t+1/2}, model_state, metrics) of this worker's optimizer step."""
    grads, model_state, metrics = base.gradients(self.loss_fn, state.params, state.model_state,
                                                 batch, rng)
    if self.measure_consensus or self.wants_phi:  # phi_t, the mean local gradient norm (§5.4)
      metrics = {**metrics, "consensus/phi": jnp.sqrt(collectives.mean(squared_norm(grads)))}
    grads = self.step_gradients(state, grads)
    updates, opt_state, half = base.local_update(self.tx, grads, state.opt_state, state.params)
    return updates, opt_state, half, model_state, metrics

  def step_gradients(self, state: DecentralizedState, grads: PyTree) -> PyTree:
    """The gradients the optimizer steps on: this worker's own (gradient gossip mixes them)."""
    del state
    return grads

  def metrics(self, metrics, params, rounds, messages, message_bits, residual=None):
    """`rounds` gossip rounds of `messages` messages of `message_bits` bits each; the counts in
    the parameters' float dtype (a float64 run logs float64)."""
    dtype = metric_dtype(params)
    rounds = jnp.asarray(rounds, dtype)
    bits = rounds * jnp.asarray(messages, dtype) * float(message_bits)
    out = {**metrics, "comm/bits_sent": bits, "comm/rounds": rounds}
    if self.measure_consensus:
      out["consensus/distance"] = consensus_distance(params)
      if residual is not None:
        out["consensus/residual"] = residual
    return out
