"""Stochastic gradient push (SGP; Assran et al. 2019), the directed-graph baseline of [Lin22]
Table 9.3: push-sum gossip over a column-stochastic W, e.g. the directed one-peer exponential
graph (`jaxdist.topology.directed_exponential`).

Each worker keeps a numerator x_i and a push-sum weight w_i (1 at the start) and evaluates its
gradient at the de-biased model z_i = x_i / w_i:
x_{t+1/2} = x_t + u_t(z_t), x_{t+1} = sum_j W_ij x_{j,t+1/2}, w_{t+1} = sum_j W_ij w_j,
z_{t+1} = x_{t+1} / w_{t+1}. The state's params are z; on a doubly stochastic W the weights stay 1
and SGP is D-SGD.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.core.state import per_worker, state_class

PyTree = Any


@state_class
class PushSumState(DecentralizedState):
  weight: jax.Array = per_worker(None)  # w_i; the numerator is x_i = w_i z_i


class SGP(Decentralized):
  """Stochastic gradient push: D-SGD's local step at z = x / w, push-sum gossip of (x, w)."""

  def init(self, params, model_state, rng) -> PushSumState:
    state = super().init(params, model_state, rng)
    return PushSumState(**vars(state), weight=jnp.ones((), jnp.float32))

  def step(self, state: PushSumState, batch, rng):
    updates, opt_state, _, model_state, metrics = self.local_step(state, batch, rng)
    numerator = jax.tree.map(lambda z, u: state.weight.astype(z.dtype) * z + u, state.params,
                             updates)
    numerator, weight = self.gossip.mix((numerator, state.weight), state.rounds)
    params = jax.tree.map(lambda x: x / weight.astype(x.dtype), numerator)
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state, weight=weight)
    return new, self.metrics(metrics, params, 1, self.gossip.messages(state.rounds),
                             bits_per_model(params) + 32)
