"""Mini-batch SGD ([Lin22] eq. 2.1), and EXTRAP-SGD when its gradients are extrapolated (Alg. 1).

x <- x - lr * opt(mean_k g_k): one all-reduce of the gradients per step. All workers hold the same
model and optimizer state, which are therefore shared (one copy); BatchNorm statistics stay on
their worker.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdist.algorithms import base
from jaxdist.algorithms.extrapolation import (
  Extrapolation,
  check_extrapolation,
  gradient_point,
  initial_state,
)
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.optim.optimizers import trust_ratio_metrics


@state_class
class MinibatchState:
  step: jax.Array = shared()
  params: Any = shared()
  opt_state: Any = shared()
  model_state: Any = per_worker()
  extrapolation: Any = None


class MinibatchSGD:
  """Mini-batch SGD: the workers' gradients averaged every step.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    extrapolation: where the gradients are taken (`PastGradient()` makes EXTRAP-SGD); None: at x.
    log_trust_ratios: log ||w|| / ||g|| of the averaged gradient per tensor ([You20] Table 5.6)
      as `trust_ratio/<path>`.
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None, *,
               extrapolation: Extrapolation | None = None, log_trust_ratios: bool = False):
    base.check_loss(loss_fn)
    check_extrapolation(extrapolation)
    self.loss_fn, self.extrapolation = loss_fn, extrapolation
    self.log_trust_ratios = bool(log_trust_ratios)
    self.tx, self.learning_rate = base.resolve_optimizer(
        optimizer, learning_rate, "extrapolation" if extrapolation else None)

  def init(self, params, model_state, rng) -> MinibatchState:
    opt_state = self.tx.init(params)
    return MinibatchState(jnp.zeros((), jnp.int32), params, opt_state, model_state,
                          initial_state(self.extrapolation, params, opt_state, rng))

  def step(self, state: MinibatchState, batch, rng):
    point, rng = gradient_point(self.extrapolation, state, self.learning_rate, rng)
    grads, model_state, metrics = base.gradients(self.loss_fn, point, state.model_state, batch,
                                                 rng)
    mean_grads = collectives.mean(grads)
    _, opt_state, params = base.local_update(self.tx, mean_grads, state.opt_state, state.params)
    extrapolation = (self.extrapolation.record(state.extrapolation, grads, mean_grads)
                     if self.extrapolation else None)
    new = MinibatchState(state.step + 1, params, opt_state, model_state, extrapolation)
    if self.log_trust_ratios:
      metrics = {**metrics, **trust_ratio_metrics(state.params, mean_grads)}
    return new, {**metrics, "comm/bits_sent": jnp.float32(base.bits_per_model(state.params)),
                 "comm/rounds": jnp.float32(1)}

  def deployed(self, state: MinibatchState):
    return state.params, state.model_state


def minibatch_sgd(loss_fn: base.LossFn, optimizer: base.Optimizer = optax.sgd, *,
                  learning_rate: base.LearningRate = None,
                  extrapolation: Extrapolation | None = None,
                  log_trust_ratios: bool = False) -> MinibatchSGD:
  """Mini-batch SGD (eq. 2.1): the gradients averaged over all workers every step; EXTRAP-SGD
  (Alg. 1) with `extrapolation=jaxdist.extrapolation.PastGradient()`.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    extrapolation: where the gradients are taken; None: at the model.
    log_trust_ratios: log ||w|| / ||g|| per tensor ([You20] Table 5.6).
  """
  return MinibatchSGD(loss_fn, optimizer, learning_rate, extrapolation=extrapolation,
                      log_trust_ratios=log_trust_ratios)
