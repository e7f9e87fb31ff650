"""Mini-batch SGD with compressed gradients, as [Sievert] §3.3 runs ATOMO (S0 L1101-1111).

Every worker compresses its own gradient per tensor with an unbiased compressor (ATOMO, l_q
quantization, QSGD; `jaxdist.communication.atomo`) and the messages are combined by decoding
them, since compressed messages cannot be summed: all-reduce of the decoded estimates, or an
all-gather of them (a parameter server receiving every message). The thesis's runs use plain
SGD: no momentum, no weight decay, a step size tuned per compressor (Table D.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxdist.algorithms import base
from jaxdist.algorithms.minibatch import MinibatchState
from jaxdist.communication import atomo
from jaxdist.communication.compression import Compressor
from jaxdist.errors import ArgumentError


class CompressedSGD:
  """Mini-batch SGD whose workers send `compressor(gradient)`.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    compressor: a `jaxdist.compression.Compressor`, per tensor.
    aggregation: "decompress" (all-reduce the decoded estimates) or "gather" (all-gather them).
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None, *, compressor: Compressor,
               aggregation: str = "decompress"):
    base.check_loss(loss_fn)
    if not isinstance(compressor, Compressor):
      raise ArgumentError("compressor", f"{compressor!r}",
                          "a jaxdist.compression.Compressor (Atomo, LqQuantization, QSGD, ...)")
    atomo.check_aggregation(aggregation)
    self.loss_fn, self.compressor, self.aggregation = loss_fn, compressor, aggregation
    self.tx, self.learning_rate = base.resolve_optimizer(optimizer, learning_rate)

  def init(self, params, model_state, rng) -> MinibatchState:
    del rng
    return MinibatchState(jnp.zeros((), jnp.int32), params, self.tx.init(params), model_state)

  def step(self, state: MinibatchState, batch, rng):
    loss_rng, compress_rng = jax.random.split(rng)
    grads, model_state, metrics = base.gradients(self.loss_fn, state.params, state.model_state,
                                                 batch, loss_rng)
    mean_grads = atomo.aggregate(self.compressor, grads, compress_rng, self.aggregation)
    _, opt_state, params = base.local_update(self.tx, mean_grads, state.opt_state, state.params)
    new = MinibatchState(state.step + 1, params, opt_state, model_state)
    bits = self.compressor.tree_bits(state.params)
    return new, {**metrics, "comm/bits_sent": jnp.float32(bits), "comm/rounds": jnp.float32(1)}

  def deployed(self, state: MinibatchState):
    return state.params, state.model_state


def compressed_sgd(loss_fn: base.LossFn, optimizer: base.Optimizer = optax.sgd, *,
                   learning_rate: base.LearningRate = None, compressor: Compressor,
                   aggregation: str = "decompress") -> CompressedSGD:
  """Mini-batch SGD with every worker's gradient compressed (ATOMO, S0 §3.3).

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    compressor: an unbiased `jaxdist.compression.Compressor` (e.g. `compression.Atomo(2,
      "spectral")`).
    aggregation: "decompress" or "gather".
  """
  return CompressedSGD(loss_fn, optimizer, learning_rate, compressor=compressor,
                       aggregation=aggregation)
