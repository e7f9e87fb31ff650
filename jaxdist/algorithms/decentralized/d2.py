"""D^2 and D^2_+ ([Lin22] App. 18.2, L2752): x_{t+1} = W(x_t + u_t + c_t) with the correction
c_t = x_t - x_{t-1} - u_{t-1} of the previous step.

D^2 rescales only the update part with r_t = lr_t / lr_{t-1} (Tang et al.'s eta_t (g_t - g_{t-1})),
D^2_+ the whole of it, so that a learning-rate decay does not turn the stale correction into a
huge step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.communication.gossip import gossip_residual
from jaxdist.core.state import per_worker, state_class

PyTree = Any


@state_class
class D2State(DecentralizedState):
  previous_params: PyTree = per_worker(None)  # x_{t-1}
  previous_updates: PyTree = per_worker(None)  # u_{t-1}


def _scale(c, tree):
  return jax.tree.map(lambda x: (c * x).astype(x.dtype), tree)


class D2(Decentralized):
  """D^2 (`rescale_all=False`) or D^2_+ (`rescale_all=True`).

  Args:
    rescale_all: rescale the whole correction by lr_t / lr_{t-1} (D^2_+), not only its update.
    (the others as for `Decentralized`)
  """

  needs_rate = "D^2's correction"

  def __init__(self, *args, rescale_all: bool = False, **kwargs):
    super().__init__(*args, **kwargs)
    self.rescale_all = rescale_all

  def init(self, params, model_state, rng) -> D2State:
    state = super().init(params, model_state, rng)
    return D2State(**vars(state), previous_params=params,
                   previous_updates=otu.tree_zeros_like(params))

  def step(self, state: D2State, batch, rng):
    updates, opt_state, _, model_state, metrics = self.local_step(state, batch, rng)
    lr, previous_lr = self.learning_rate(state.step), self.learning_rate(state.step - 1)
    ratio = jnp.where((state.step > 0) & (previous_lr > 0), lr / previous_lr, 1.0)
    drift = otu.tree_sub(state.params, state.previous_params)
    if self.rescale_all:
      correction = _scale(ratio, otu.tree_sub(drift, state.previous_updates))
    else:
      correction = otu.tree_sub(drift, _scale(ratio, state.previous_updates))
    half = jax.tree.map(lambda x, u, c: x + u + c, state.params, updates, correction)
    params = self.gossip.mix(half, state.rounds)
    residual = gossip_residual(half, params) if self.measure_consensus else None
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state,
                        previous_params=state.params, previous_updates=updates)
    return new, self.metrics(metrics, params, 1, self.gossip.messages(state.rounds),
                             bits_per_model(params), residual)
