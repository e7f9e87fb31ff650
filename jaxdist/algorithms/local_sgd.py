"""Mini-batch SGD and local SGD ([Lin22] ch. 2: eq. 2.1, eq. 2.2, Algorithm 7).

Mini-batch SGD averages the gradients of all workers every step, so all workers hold the same
model and optimizer state: those are SHARED. Local SGD runs H steps of the local optimizer on each
worker, then averages the parameters (Alg. 7 with the misprinted extra learning rate dropped:
averaging the models is averaging the updates). Momentum buffers and BatchNorm statistics stay on
their worker and are never averaged. With H = 1 the averaged model follows mini-batch SGD exactly.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxdist.workers import PER_WORKER, SHARED, Comm

PyTree = Any


class State(NamedTuple):
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  model_state: PyTree


def bits_per_model(params: PyTree) -> int:
  """Bits in one full-precision message of the parameters."""
  return sum(x.size * x.dtype.itemsize * 8 for x in jax.tree.leaves(params))


class _SGDFamily:
  state_axes: State

  def __init__(self, loss_fn: Callable, tx: optax.GradientTransformation, comm: Comm):
    self.loss_fn, self.tx, self.comm = loss_fn, tx, comm

  def init(self, params, model_state) -> State:
    return State(jnp.zeros((), jnp.int32), params, self.tx.init(params), model_state)

  def deployed(self, state: State):
    return state.params, state.model_state

  def _gradients(self, state: State, batch, rng):
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, rng)
    return grads, model_state, metrics

  def _apply(self, state: State, grads):
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state


class MinibatchSGD(_SGDFamily):
  """x <- x - lr * opt(mean_k g_k): one all-reduce of the gradients per step (eq. 2.1)."""

  state_axes = State(step=SHARED, params=SHARED, opt_state=SHARED, model_state=PER_WORKER)

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    params, opt_state = self._apply(state, self.comm.mean(grads))
    bits = jnp.float32(bits_per_model(state.params))
    return State(state.step + 1, params, opt_state, model_state), {**metrics, "bits_sent": bits}


class LocalSGD(_SGDFamily):
  """H local steps per worker, then the parameters are averaged (eq. 2.2, Alg. 7)."""

  state_axes = State(step=SHARED, params=PER_WORKER, opt_state=PER_WORKER,
                     model_state=PER_WORKER)

  def __init__(self, loss_fn: Callable, tx: optax.GradientTransformation, comm: Comm,
               local_steps: int):
    super().__init__(loss_fn, tx, comm)
    self.local_steps = local_steps

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    params, opt_state = self._apply(state, grads)
    sync = (state.step + 1) % self.local_steps == 0
    params = lax.cond(sync, self.comm.mean, lambda p: p, params)
    bits = jnp.where(sync, jnp.float32(bits_per_model(params)), 0.0)
    return State(state.step + 1, params, opt_state, model_state), {**metrics, "bits_sent": bits}
