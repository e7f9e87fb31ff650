"""Gradient tracking ([Lin22] App. 18.2): y_t = W y_{t-1} + g_t - g_{t-1} tracks the mean gradient
and replaces g in the local optimizer; x_{t+1} = W(x_t + opt(y_t)). Two gossip rounds a step.
"""

from __future__ import annotations

from typing import Any

import jax
import optax.tree_utils as otu

from jaxdist.algorithms import base
from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.communication.gossip import gossip_residual
from jaxdist.core.state import per_worker, state_class

PyTree = Any


@state_class
class TrackingState(DecentralizedState):
  tracker: PyTree = per_worker(None)  # y_{t-1}
  previous_grads: PyTree = per_worker(None)  # g_{t-1}


class GradientTracking(Decentralized):
  """Decentralized SGD on a tracked estimate of the mean gradient."""

  def init(self, params, model_state, rng) -> TrackingState:
    state = super().init(params, model_state, rng)
    zeros = otu.tree_zeros_like(params)
    return TrackingState(**vars(state), tracker=zeros, previous_grads=zeros)

  def step(self, state: TrackingState, batch, rng):
    grads, model_state, metrics = base.gradients(self.loss_fn, state.params, state.model_state,
                                                 batch, rng)
    mixed = self.gossip.mix(state.tracker, state.rounds)
    tracker = jax.tree.map(lambda y, g, p: y + (g - p), mixed, grads, state.previous_grads)
    _, opt_state, half = base.local_update(self.tx, tracker, state.opt_state, state.params)
    params = self.gossip.mix(half, state.rounds)
    residual = gossip_residual(half, params) if self.measure_consensus else None
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state, tracker=tracker,
                        previous_grads=grads)
    return new, self.metrics(metrics, params, 2, self.gossip.messages(state.rounds),
                             bits_per_model(params), residual)
