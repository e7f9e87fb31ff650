"""MimeLite ([Lin22] App. 18, Alg. 21; Karimireddy et al. 2021) with SGDm, written for one client.

A round, as the runner's step with the cohort's slots as its workers:

    y_i = x; tau times: y_i <- y_i - eta U(grad F_i(y_i, xi), s)    # s is not updated locally
    send y_i and grad f_i(x), the full local-batch gradient at the round's server model
    s <- V(mean_i grad f_i(x), s);  x <- mean_i y_i                # server statistics, model

with SGDm's U(g, s) = (1 - beta) g + beta s and V(g, s) = (1 - beta) g + beta s. The mean of
the gradients is over the cohort, 1/|S| as Alg. 21 writes it; the models are averaged as FedAvg
does, weighted by the clients' example counts (the same for equal clients). The server
momentum s is applied, never updated, on the clients: the "global" direction that the thesis's
QG-DSGDm forms instead from two consecutive models (L2553-2562). MimeLite is a federated method
only; beta = 0 is FedAvg, bit for bit (test). Uplink and downlink each carry two models.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxdist.algorithms import base
from jaxdist.core.state import shared, state_class
from jaxdist.errors import check_fraction
from jaxdist.federated import averaging, server
from jaxdist.federated import statistics as statistics_lib


@state_class
class MimeState:
  """The server's model and its momentum statistics s; the same on every cohort slot."""

  round: jax.Array = shared()
  params: Any = shared()
  model_state: Any = shared()
  momentum: Any = shared()
  opt_state: Any = shared()  # the server optimizer's
  statistics: Any = shared()


class MimeLite(averaging.FederatedAveraging):
  """MimeLite rounds: local steps along U(g, s), then s and x updated on the server; FedAvg's
  round otherwise (its checks, server optimizer, statistics options and deployed model).

  Args:
    client: the local training (`averaging.LocalTraining`; plain SGD at the client rate eta).
    momentum: beta of U and V, in [0, 1).
    server_optimizer: how x follows the cohort's average (`server.fedavg()`, default: x
      becomes it, as in Alg. 21).
    statistics: what happens to non-trainable state (`statistics.Averaged()`, default).
  """

  def __init__(self, client: averaging.LocalTraining, momentum: float, *,
               server_optimizer: optax.GradientTransformation | None = None,
               statistics: statistics_lib.Averaged | None = None):
    super().__init__(client, server_optimizer, statistics=statistics)
    check_fraction("momentum", momentum)
    self.beta = momentum

  def init(self, params, model_state, rng) -> MimeState:
    del rng
    return MimeState(jnp.zeros((), jnp.int32), params, model_state, otu.tree_zeros_like(params),
                     self.server_tx.init(params), self.statistics.init(model_state))

  def _combine(self, grads, s):
    """U = V = (1 - beta) g + beta s (SGDm)."""
    return jax.tree.map(lambda g, m: (1 - self.beta) * g + self.beta * m, grads, s)

  def full_gradient(self, params, model_state, batch: dict, rng: jax.Array):
    """grad f_i(x): the client's loss over all its real examples (the mask), at `params`."""
    examples = {k: v for k, v in batch.items() if k not in averaging.ROUND_KEYS}
    grads, _, _ = base.gradients(self.client.loss_fn, params, model_state, examples, rng)
    return grads

  def step(self, state: MimeState, batch: dict, rng: jax.Array):
    client, weight = batch["client"], batch["count"]
    start = self.statistics.start(state.model_state, state.statistics, client)
    params, model_state, metrics = self.client.train(
        state.params, start, batch, rng,
        direction=lambda grads: self._combine(grads, state.momentum))
    full = self.full_gradient(state.params, start, batch, jax.random.fold_in(rng, 2**31 - 1))
    present = (weight > 0).astype(jnp.float32)  # 1/|S| sum_i grad f_i(x)
    momentum = self._combine(statistics_lib.weighted_mean(full, present), state.momentum)
    server_params, opt_state = server.apply(self.server_tx, state.params, state.opt_state,
                                            statistics_lib.weighted_mean(params, weight))
    server_state, kept = self.statistics.finish(state.statistics, model_state, client, weight)
    bits = 2 * float(base.bits_per_model(state.params))
    new = MimeState(state.round + 1, server_params, server_state, momentum, opt_state, kept)
    return new, {**{f"local/{k}": v for k, v in metrics.items()},
                 "comm/bits_down": jnp.float32(bits), "comm/bits_up": jnp.float32(bits),
                 "comm/rounds": jnp.float32(1)}
