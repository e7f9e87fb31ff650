"""FedAvg ([Lin22] Alg. 17; the round of Alg. 5 without distillation), written for one client.

A round, as the runner's step with the cohort's slots as its workers:

    x_k = ClientLocalUpdate(k, x_server)      # E local epochs (or S steps) of plain SGD
    x_avg = sum_k n_k x_k / sum_k n_k          # one all-reduce of the models
    x_server = ServerOpt(x_server, x_server - x_avg)   # server.fedavg(): x_avg itself

Clients keep nothing between rounds (plain SGD, constant rate, no momentum or weight decay by
default); a client's optimizer state starts afresh every round. A client's batch is its whole
padded dataset (`cohort.ClientData`): every epoch shuffles its real examples in front of the
padding and walks them in batches of `batch_size`, the last batch partly masked and steps with
no real example skipped, so unequal clients share one program. The loss sees `batch["mask"]`
and must average over the examples it marks (`jaxdist.classification` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxdist.algorithms import base
from jaxdist.core.state import shared, state_class
from jaxdist.errors import ArgumentError, check_at_least
from jaxdist.federated import server, statistics

ROUND_KEYS = ("count", "client", "step")  # what a round adds to a client's arrays


@state_class
class ServerState:
  """Everything the server keeps between rounds; the same on every cohort slot."""

  round: jax.Array = shared()
  params: Any = shared()
  model_state: Any = shared()
  opt_state: Any = shared()  # the server optimizer's
  rng: jax.Array = shared()  # the server's own draws (distillation batches)
  statistics: Any = shared()  # what the non-trainable-state option keeps (a per-client table)


class LocalTraining:
  """ClientLocalUpdate: local epochs (or steps) of the client optimizer on its own data.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`,
      averaging over the examples whose `batch["mask"]` is 1.
    optimizer: an optax optimizer, or a function of the rate (default `optax.sgd`).
    learning_rate: the constant client rate (a float or a schedule over local steps).
    batch_size: examples per local step.
    epochs: E, passes over the client's data; ignored when `local_steps` is given.
    local_steps: a fixed number of local steps instead of epochs.
    regularizer: `term(params, server_params)` added to the loss (`proximal.proximal(mu)`).
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer = optax.sgd,
               learning_rate: base.LearningRate = None, *, batch_size: int, epochs: int = 1,
               local_steps: int | None = None,
               regularizer: Callable[[Any, Any], jax.Array] | None = None):
    base.check_loss(loss_fn)
    check_at_least("batch_size", batch_size, 1, integer=True)
    check_at_least("local_epochs", epochs, 1, integer=True)
    if local_steps is not None:
      check_at_least("local_steps", local_steps, 1, integer=True)
    self.loss_fn, self.regularizer = loss_fn, regularizer
    self.tx, _ = base.resolve_optimizer(optimizer, learning_rate)
    self.batch_size, self.epochs, self.local_steps = int(batch_size), int(epochs), local_steps

  def num_steps(self, max_examples: int) -> tuple[int, int]:
    """(local steps of a round, steps per epoch) for clients padded to `max_examples`."""
    per_epoch = math.ceil(max_examples / self.batch_size)
    return (self.local_steps or self.epochs * per_epoch), per_epoch

  def train(self, params: Any, model_state: Any, data: dict, rng: jax.Array,
            direction: Callable[[Any], Any] | None = None) -> tuple[Any, Any, dict]:
    """(client params, client model_state, metrics averaged over its real examples).

    `direction(grads)`, if given, is what the optimizer steps along instead of the stochastic
    gradient (MimeLite's U(g, s), `jaxdist.federated.mime`)."""
    examples = {k: v for k, v in data.items() if k not in ROUND_KEYS}
    size = examples["mask"].shape[0]
    steps, per_epoch = self.num_steps(size)
    width = per_epoch * self.batch_size
    examples = jax.tree.map(lambda x: jnp.concatenate(
        [x, jnp.zeros((width - size,) + x.shape[1:], x.dtype)]), examples)
    mask = examples["mask"]
    epochs = math.ceil(steps / per_epoch)
    shuffle_keys = jax.random.split(jax.random.fold_in(rng, 0), epochs)
    # every epoch: the real examples in a random order, then the padding
    orders = jax.vmap(lambda key: jnp.argsort(jnp.where(
        mask > 0, jax.random.uniform(key, mask.shape), 2.0)))(shuffle_keys)
    anchor = params

    def loss(p, model_state, batch, key):
      value, aux = self.loss_fn(p, model_state, batch, key)
      return (value + self.regularizer(p, anchor) if self.regularizer else value), aux

    def local_step(carry, j):
      p, model_state, opt_state = carry
      order = lax.dynamic_slice_in_dim(orders[j // per_epoch], (j % per_epoch) * self.batch_size,
                                       self.batch_size)
      batch = jax.tree.map(lambda x: x[order], examples)
      count = jnp.sum(batch["mask"])
      grads, new_state, metrics = base.gradients(loss, p, model_state, batch,
                                                 jax.random.fold_in(rng, j + 1))
      if direction is not None:
        grads = direction(grads)
      _, new_opt, new_p = base.local_update(self.tx, grads, opt_state, p)
      real = count > 0  # a batch of padding only changes nothing
      carry = jax.tree.map(lambda new, old: jnp.where(real, new, old),
                           (new_p, new_state, new_opt), carry)
      return carry, ({k: v * count for k, v in metrics.items()}, count)

    (params, model_state, _), (sums, counts) = lax.scan(
        local_step, (params, model_state, self.tx.init(params)), jnp.arange(steps))
    total = jnp.maximum(jnp.sum(counts), 1.0)
    return params, model_state, {k: jnp.sum(v) / total for k, v in sums.items()}


class FederatedAveraging:
  """Rounds of local training on the cohort, weighted averaging and a server optimizer.

  Args:
    client: the local training (`LocalTraining`).
    server_optimizer: an optax transform of the pseudo-gradient (`server.fedavg()`, default;
      `server.fedavgm(beta)`, `server.fedadam(...)`).
    statistics: what happens to non-trainable state (`statistics.Averaged()`, default;
      `PerClient(K)`, `Reset()`).
    fusion: a server-side fusion after the server step (`distillation.EnsembleDistillation`); None:
      the server step's model.
  """

  def __init__(self, client: LocalTraining,
               server_optimizer: optax.GradientTransformation | None = None, *,
               statistics: statistics.Averaged | None = None, fusion: Any = None):
    if not isinstance(client, LocalTraining):
      raise ArgumentError("client", f"{client!r} is not a LocalTraining",
                          "jaxdist.federated.LocalTraining(...)")
    server_optimizer = server.fedavg() if server_optimizer is None else server_optimizer
    if not isinstance(server_optimizer, optax.GradientTransformation):
      raise ArgumentError("server_optimizer", f"{server_optimizer!r} is not an optax transform",
                          "jaxdist.federated.server.fedavg(), fedavgm(beta), fedadam(), or any "
                          "optax GradientTransformation")
    self.client, self.server_tx, self.fusion = client, server_optimizer, fusion
    self.statistics = _statistics() if statistics is None else statistics

  def init(self, params, model_state, rng) -> ServerState:
    return ServerState(jnp.zeros((), jnp.int32), params, model_state,
                       self.server_tx.init(params), rng, self.statistics.init(model_state))

  def step(self, state: ServerState, batch: dict, rng: jax.Array):
    client, weight = batch["client"], batch["count"]
    start = self.statistics.start(state.model_state, state.statistics, client)
    params, model_state, metrics = self.client.train(state.params, start, batch, rng)
    fused_metrics = {}
    if self.fusion is not None:
      weight, fused_metrics = self.fusion.keep(params, model_state, weight)
    average = statistics.weighted_mean(params, weight)
    server_params, opt_state = server.apply(self.server_tx, state.params, state.opt_state,
                                            average)
    server_state, kept = self.statistics.finish(state.statistics, model_state, client, weight)
    if self.fusion is not None:
      key = jax.random.fold_in(state.rng, state.round)
      server_params, more = self.fusion.fuse(server_params, state.params, server_state, params,
                                             model_state, weight, key)
      fused_metrics.update(more)
    bits = float(base.bits_per_model(state.params))
    new = ServerState(state.round + 1, server_params, server_state, opt_state, state.rng, kept)
    return new, {**{f"local/{k}": v for k, v in metrics.items()}, **fused_metrics,
                 "comm/bits_down": jnp.float32(bits), "comm/bits_up": jnp.float32(bits),
                 "comm/rounds": jnp.float32(1)}

  def deployed(self, state: ServerState):
    return state.params, state.model_state


def _statistics():
  return statistics.Averaged()
