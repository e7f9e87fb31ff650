"""Local SGD ([Lin22] eq. 2.2, Alg. 7) composed of three pieces:

* the local step: the optimizer on this worker's gradient (taken at an extrapolated point if
  asked, Alg. 12), optionally averaged over all workers first (`minibatch_steps`: the mini-batch
  phase of post-local SGD, Alg. 8), and after that phase, with `subgroup_gradients`, averaged
  within the node (the innermost grid dimension; PyTorch's `post_local_gradient_allreduce`);
* when to average: a schedule (`Periodic`, `Hierarchical`, `PostLocal`);
* what the global average is: an averaging rule (`ModelAverage`, `GlobalMomentum`,
  `SignAveraging`).

Momentum buffers and BatchNorm statistics stay on their worker. Bits sent per worker: d floats
per global plain averaging (or per mini-batch step), the rule's message otherwise, d floats per
node averaging.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.algorithms import base
from jaxdist.algorithms.extrapolation import (
  Extrapolation,
  check_extrapolation,
  gradient_point,
  initial_state,
)
from jaxdist.algorithms.local_sgd.averaging import Averaging, ModelAverage
from jaxdist.algorithms.local_sgd.schedules import Periodic
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.errors import ArgumentError, check_at_least


@state_class
class LocalSGDState:
  step: jax.Array = shared()
  params: Any = per_worker()
  opt_state: Any = per_worker()
  model_state: Any = per_worker()
  averaging: Any = None  # the averaging rule's state, which declares its own fields
  extrapolation: Any = None


class LocalSGD:
  """Local steps on every worker, models averaged as `schedule` and `averaging` say.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: the local optimizer: an optax optimizer, or a function of the learning rate.
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    schedule: when to average (default `Periodic(4)`: every 4 local steps).
    averaging: what the global average is (default `ModelAverage()`).
    minibatch_steps: steps at the start whose gradients are averaged over all workers
      (post-local SGD's mini-batch phase); 0 for none.
    extrapolation: where the gradients are taken; None: at the worker's model.
    subgroup_gradients: after `minibatch_steps`, average the gradients within the node every
      step (a grid of (nodes, workers per node)).
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None, *,
               schedule=None, averaging: Averaging | None = None, minibatch_steps: int = 0,
               extrapolation: Extrapolation | None = None, subgroup_gradients: bool = False):
    base.check_loss(loss_fn)
    check_extrapolation(extrapolation)
    schedule = Periodic(4) if schedule is None else schedule
    if not hasattr(schedule, "level"):
      raise ArgumentError("schedule", f"{schedule!r} is not an averaging schedule",
                          "Periodic(H), Hierarchical(H, H_b), PostLocal(switch, H)")
    averaging = ModelAverage() if averaging is None else averaging
    if not isinstance(averaging, Averaging):
      raise ArgumentError("averaging", f"{averaging!r} is not an averaging rule",
                          "ModelAverage(), GlobalMomentum(m), SignAveraging(...)")
    check_at_least("minibatch_steps", minibatch_steps, 0, integer=True)
    needs = [reason for reason, needed in (
        ("global momentum", averaging.needs_learning_rate), ("extrapolation", extrapolation))
        if needed]
    self.tx, self.learning_rate = base.resolve_optimizer(optimizer, learning_rate,
                                                         " and ".join(needs) or None)
    self.loss_fn, self.schedule, self.averaging = loss_fn, schedule, averaging
    self.minibatch_steps, self.extrapolation = int(minibatch_steps), extrapolation
    self.subgroup_gradients = bool(subgroup_gradients)

  def init(self, params, model_state, rng) -> LocalSGDState:
    opt_state = self.tx.init(params)
    return LocalSGDState(jnp.zeros((), jnp.int32), params, opt_state, model_state,
                         self.averaging.init(params),
                         initial_state(self.extrapolation, params, opt_state, rng))

  def step(self, state: LocalSGDState, batch, rng):
    dims = [name for name, _ in collectives.grid()]
    if self.schedule.num_levels > len(dims):
      raise ArgumentError("schedule", f"{type(self.schedule).__name__} averages at "
                          f"{self.schedule.num_levels} levels, but the worker grid has "
                          f"{len(dims)} dimension(s) {tuple(dims)}",
                          "a grid of (nodes, workers per node) for hierarchical averaging")
    if self.subgroup_gradients and len(dims) < 2:
      raise ArgumentError("post_local_gradient_allreduce", "gradients are averaged within the "
                          f"node, but the worker grid has {len(dims)} dimension(s) {tuple(dims)}",
                          "a grid of (nodes, workers per node)")
    point, rng = gradient_point(self.extrapolation, state, self.learning_rate, rng)
    local_grads, model_state, metrics = base.gradients(self.loss_fn, point, state.model_state,
                                                       batch, rng)
    minibatch_phase = state.step < self.minibatch_steps
    grads = local_grads
    if self.minibatch_steps or self.subgroup_gradients:
      after = ((lambda g: collectives.mean(g, dims[-1:])) if self.subgroup_gradients else
               (lambda g: g))
      grads = lax.cond(minibatch_phase, collectives.mean, after, grads)
    _, opt_state, params = base.local_update(self.tx, grads, state.opt_state, state.params)
    extrapolation = (self.extrapolation.record(state.extrapolation, local_grads)
                     if self.extrapolation else None)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                          model_state=model_state, extrapolation=extrapolation)

    level = self.schedule.level(state.step)
    top = self.schedule.num_levels
    branches = [lambda s: s]
    for sub_group in range(1, top):  # innermost grid dimensions: the workers of a node
      branches.append(lambda s, k=sub_group: s.replace(
          params=collectives.mean(s.params, dims[len(dims) - k:])))
    branches.append(self._global_average)
    state = lax.switch(level, branches, state)

    d = base.bits_per_model(params)
    grad_bits = jnp.where(minibatch_phase, d, d if self.subgroup_gradients else 0)
    bits = jnp.where(level == top, self.averaging.message_bits(params),
                     jnp.where(level > 0, d, 0)) + grad_bits
    rounds = (level == top) | (minibatch_phase & (self.minibatch_steps > 0))
    return state, {**metrics, "comm/bits_sent": bits.astype(jnp.float32),
                   "comm/rounds": rounds.astype(jnp.float32)}

  def _global_average(self, state: LocalSGDState) -> LocalSGDState:
    lr = self.learning_rate(state.step - 1) if self.averaging.needs_learning_rate else None
    params, averaging = self.averaging(state.params, state.averaging, lr)
    return state.replace(params=params, averaging=averaging)

  def deployed(self, state: LocalSGDState):
    return state.params, state.model_state
