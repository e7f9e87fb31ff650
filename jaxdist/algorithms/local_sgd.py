"""Mini-batch SGD and the local SGD family ([Lin22] ch. 2 and App. 11).

* Mini-batch SGD (eq. 2.1): gradients averaged over all workers every step; all workers hold the
  same model and optimizer state, which are therefore SHARED.
* Local SGD (eq. 2.2, Alg. 7): H steps of the local optimizer on every worker, then the models are
  averaged (Alg. 7's extra learning rate on the average is a misprint: averaging the models is
  averaging the updates). Momentum buffers and BatchNorm statistics stay on their worker.
* Global and hybrid momentum (App. 11.2.4): at each averaging, u <- m*u + (anchor - mean_k x_k)/lr,
  x <- anchor - lr*u, where the anchor is the model of the previous averaging; with the local
  optimizer's momentum as well it is hybrid momentum.
* Post-local SGD (Alg. 8): mini-batch SGD until a switch step (by default the first learning-rate
  decay), local SGD afterwards.
* Hierarchical local SGD (eq. 11.1; Alg. 11's caption and loop order are misprints): workers on a
  (nodes, workers per node) grid average within their node every H steps and over all workers
  every H * H_b steps.
* Sign compression (Alg. 9, signSGD) and with error feedback (Alg. 10, EF-signSGD): local steps
  move by lr * sign(direction of the local optimizer); at averaging every worker sends
  s = sign(delta) and p = ||delta||_1 / d per tensor, delta = anchor - x_k (+ e_k), the new model
  is anchor - mean_k(s p), and the error memory keeps e_k = delta - s p (Alg. 10 line 13 misprints
  it as e - s p). Before a post-local switch H = 1.
* Any of them can take gradients at an extrapolated point (`extrap.Extrapolation`).

Communication, counted in metrics as bits sent per worker: d fp32 numbers per averaging (or per
step for mini-batch SGD), d bits plus one fp32 per tensor for a sign-compressed averaging.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxdist.algorithms.extrap import Extrapolation
from jaxdist.errors import ConfigError
from jaxdist.workers import PER_WORKER, SHARED, Comm

PyTree = Any
COMPRESSIONS = ("none", "sign", "ef_sign")


class State(NamedTuple):
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  model_state: PyTree
  anchor: PyTree = None  # the model after the last global averaging (global momentum, sign)
  global_momentum: PyTree = None
  error: PyTree = None  # EF-signSGD memory
  extrapolation: PyTree = None


def bits_per_model(params: PyTree) -> int:
  """Bits in one full-precision message of the parameters."""
  return sum(x.size * x.dtype.itemsize * 8 for x in jax.tree.leaves(params))


def bits_per_sign_message(params: PyTree) -> int:
  """Bits in one sign-compressed message: a sign per entry and one fp32 scale per tensor."""
  return sum(x.size + 32 for x in jax.tree.leaves(params))


def _sign_compress(delta):
  """Per tensor: sign(delta) * ||delta||_1 / d (Alg. 9 line 12)."""
  return jax.tree.map(lambda x: jnp.sign(x) * jnp.mean(jnp.abs(x)), delta)


class _SGDFamily:
  axes: State  # of every field but the extrapolation's

  def __init__(self, loss_fn: Callable, tx: optax.GradientTransformation, comm: Comm,
               extrapolation: Extrapolation | None = None):
    self.loss_fn, self.tx, self.comm, self.extrapolation = loss_fn, tx, comm, extrapolation
    self.state_axes = self.axes._replace(
        extrapolation=Extrapolation.state_axes if extrapolation else None)

  def _state(self, params, model_state, rng, **fields) -> State:
    extrapolation = self.extrapolation.init(params, rng) if self.extrapolation else None
    return State(jnp.zeros((), jnp.int32), params, self.tx.init(params), model_state,
                 extrapolation=extrapolation, **fields)

  def deployed(self, state: State):
    return state.params, state.model_state

  def _gradients(self, state: State, batch, rng):
    point = state.params
    if self.extrapolation:
      extrap_rng, rng = jax.random.split(rng)
      point = self.extrapolation.point(state.extrapolation, state.params, state.opt_state,
                                       state.step, extrap_rng)
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(point, state.model_state, batch, rng)
    return grads, model_state, metrics

  def _record(self, state: State, grads, mean_grads=None):
    if not self.extrapolation:
      return None
    return self.extrapolation.record(state.extrapolation, grads, mean_grads)


class MinibatchSGD(_SGDFamily):
  """x <- x - lr * opt(mean_k g_k): one all-reduce of the gradients per step (eq. 2.1)."""

  axes = State(step=SHARED, params=SHARED, opt_state=SHARED, model_state=PER_WORKER)

  def init(self, params, model_state, rng) -> State:
    return self._state(params, model_state, rng)

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    mean_grads = self.comm.mean(grads)
    updates, opt_state = self.tx.update(mean_grads, state.opt_state, state.params)
    new = state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state, model_state=model_state,
                         extrapolation=self._record(state, grads, mean_grads))
    return new, {**metrics, "comm/bits_sent": jnp.float32(bits_per_model(state.params)),
                 "comm/rounds": jnp.float32(1)}


class LocalSGD(_SGDFamily):
  """Local SGD with its variants; see the module docstring.

  `switch_step`: steps of mini-batch SGD before the local steps start (post-local SGD; 0 = none).
  `block_steps` H_b and `node_dim`: hierarchical local SGD on a two-level worker grid.
  """

  axes = State(step=SHARED, params=PER_WORKER, opt_state=PER_WORKER, model_state=PER_WORKER,
               anchor=SHARED, global_momentum=SHARED, error=PER_WORKER)

  def __init__(self, loss_fn: Callable, tx: optax.GradientTransformation, comm: Comm,
               learning_rate: optax.Schedule, *, local_steps: int = 1, block_steps: int = 1,
               node_dim: str | None = None, switch_step: int = 0, global_momentum: float = 0.0,
               compression: str = "none", extrapolation: Extrapolation | None = None):
    super().__init__(loss_fn, tx, comm, extrapolation)
    if compression not in COMPRESSIONS:
      raise ConfigError("algo.compression", f"unknown compression {compression!r}",
                        COMPRESSIONS)
    if compression != "none" and global_momentum:
      raise ConfigError("algo.global_momentum", "global momentum does not combine with sign "
                        "compression", "0.0 with algo.compression != 'none'")
    if node_dim is not None and (compression != "none" or global_momentum):
      raise ConfigError("algo.name", "hierarchical local SGD averages plainly",
                        "algo.compression='none' and algo.global_momentum=0.0")
    self.learning_rate = learning_rate
    self.local_steps, self.block_steps, self.node_dim = local_steps, block_steps, node_dim
    self.switch_step, self.global_momentum, self.compression = (switch_step, global_momentum,
                                                                compression)

  def init(self, params, model_state, rng) -> State:
    keeps_anchor = self.global_momentum > 0 or self.compression != "none"
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return self._state(
        params, model_state, rng, anchor=params if keeps_anchor else None,
        global_momentum=zeros() if self.global_momentum > 0 else None,
        error=zeros() if self.compression == "ef_sign" else None)

  def step(self, state: State, batch, rng):
    local_grads, model_state, metrics = self._gradients(state, batch, rng)
    minibatch_phase = state.step < self.switch_step
    grads = local_grads
    if self.switch_step and self.compression == "none":
      grads = lax.cond(minibatch_phase, self.comm.mean, lambda g: g, grads)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    if self.compression == "none":
      params = optax.apply_updates(state.params, updates)
    else:  # x <- x - lr * sign(direction); the updates are -lr * direction
      lr = self.learning_rate(state.step)
      params = jax.tree.map(lambda x, u: x + (lr * jnp.sign(u)).astype(x.dtype), state.params,
                            updates)
    state = state._replace(step=state.step + 1, params=params, opt_state=opt_state,
                           model_state=model_state,
                           extrapolation=self._record(state, local_grads))

    since_switch = state.step - self.switch_step
    global_sync = (since_switch > 0) & (since_switch % (self.local_steps * self.block_steps) == 0)
    if self.compression != "none":
      global_sync |= minibatch_phase
    level = jnp.where(global_sync, 2, 0)
    if self.node_dim is not None:
      level = jnp.where(~global_sync & (since_switch > 0) &
                        (since_switch % self.local_steps == 0), 1, level)
    state = lax.switch(level, [lambda s: s, self._node_average, self._global_average], state)

    d = bits_per_model(params)
    global_bits = bits_per_sign_message(params) if self.compression != "none" else d
    grad_bits = d if self.switch_step and self.compression == "none" else 0
    bits = jnp.select([level == 2, level == 1, minibatch_phase], [global_bits, d, grad_bits], 0)
    rounds = (level == 2) | (minibatch_phase & (self.compression == "none") &
                             (self.switch_step > 0))
    return state, {**metrics, "comm/bits_sent": bits.astype(jnp.float32),
                   "comm/rounds": rounds.astype(jnp.float32)}

  def _node_average(self, state: State) -> State:
    return state._replace(params=self.comm.mean(state.params, self.node_dim))

  def _global_average(self, state: State) -> State:
    if self.compression != "none":
      delta = jax.tree.map(jnp.subtract, state.anchor, state.params)
      if self.compression == "ef_sign":
        delta = jax.tree.map(jnp.add, delta, state.error)
      sent = _sign_compress(delta)
      params = jax.tree.map(jnp.subtract, state.anchor, self.comm.mean(sent))
      error = jax.tree.map(jnp.subtract, delta, sent) if self.compression == "ef_sign" else None
      return state._replace(params=params, anchor=params, error=error)
    average = self.comm.mean(state.params)
    if not self.global_momentum:
      return state._replace(params=average)
    lr = self.learning_rate(state.step - 1)
    momentum = jax.tree.map(lambda u, a, x: self.global_momentum * u + (a - x) / lr,
                            state.global_momentum, state.anchor, average)
    params = jax.tree.map(lambda a, u: a - lr * u, state.anchor, momentum)
    return state._replace(params=params, anchor=params, global_momentum=momentum)
