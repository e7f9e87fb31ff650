"""One-shot model averaging and prediction averaging ([S3 L672-818]; Zinkevich et al. 2010 [ext]).

Every worker runs SGD on its own data as if alone; nothing is communicated until the end, when the
models are averaged once (the runner's `deployed()` averages the workers' models) or, instead, the
final decision averages the workers' predictions (an ensemble, `prediction_average`) [S3 L818].
Averaging parameters is justified for convex problems, where every local solution is near the
global one [S3 L799]; on a symmetric non-convex problem the workers settle in different basins and
their average can be a bad point while the ensemble is not (pitfall 7). This is not local SGD:
there is no periodic averaging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.algorithms import base
from jaxdist.core.state import per_worker, shared, state_class


@state_class
class OneShotState:
  step: jax.Array = shared()
  params: Any = per_worker()
  opt_state: Any = per_worker()
  model_state: Any = per_worker()


class OneShotAveraging:
  """Independent SGD on every worker; the model deployed is their average, taken once.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate.
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None):
    base.check_loss(loss_fn)
    self.loss_fn = loss_fn
    self.tx, self.learning_rate = base.resolve_optimizer(optimizer, learning_rate)

  def init(self, params, model_state, rng) -> OneShotState:
    del rng
    return OneShotState(jnp.zeros((), jnp.int32), params, self.tx.init(params), model_state)

  def step(self, state: OneShotState, batch, rng):
    grads, model_state, metrics = base.gradients(self.loss_fn, state.params, state.model_state,
                                                 batch, rng)
    _, opt_state, params = base.local_update(self.tx, grads, state.opt_state, state.params)
    return (OneShotState(state.step + 1, params, opt_state, model_state),
            {**metrics, "comm/bits_sent": jnp.float32(0), "comm/rounds": jnp.float32(0)})

  def deployed(self, state: OneShotState):
    return state.params, state.model_state


def one_shot_averaging(loss_fn: base.LossFn, optimizer: base.Optimizer, *,
                       learning_rate: base.LearningRate = None) -> OneShotAveraging:
  """One-shot averaging: train every worker alone, average the models once at the end
  (`jaxdist.train(...).deployed()`), or ensemble them (`prediction_average`)."""
  return OneShotAveraging(loss_fn, optimizer, learning_rate)


def prediction_average(apply_fn: Callable[[Any, Any], jax.Array], stacked_params: Any,
                       inputs: Any) -> jax.Array:
  """The ensemble's prediction: `apply_fn(params, inputs)` of every worker's model (stacked on a
  leading axis, e.g. `result.deployed(average=False)[0]`) averaged."""
  return jnp.mean(jax.vmap(apply_fn, in_axes=(0, None))(stacked_params, inputs), axis=0)
