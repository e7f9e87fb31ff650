"""Extrapolation: gradients taken at a perturbed copy of the model ([Lin22] ch. 3, Alg. 1, 12, 13).

Written in PyTorch's Nesterov form, EXTRAP-SGD (Alg. 1) is mini-batch SGD whose worker k evaluates
its gradient at x - eta_hat * zeta_k instead of x; the unified framework (§3.4.2) only changes zeta:

* `extrap`: zeta_k = worker k's previous local gradient, itself taken at its previous
  extrapolated point (zero at the first step: no extrapolation at t = 0);
* `gradient_noise`: zeta_k = previous local gradient - previous mean gradient (anisotropic noise);
* `gaussian`, `uniform`: isotropic noise, filter-wise scaled to the norm of each filter of x
  (Li et al. 2018: slice [..., j] of a tensor, the whole tensor for biases); own noise per worker;
* `smoothout`: uniform filter-wise noise shared by all workers (SmoothOut);
* `extrap_adam`: Alg. 13, the Adam direction of the previous local gradient under the global
  moments, (b1 m + (1-b1) g) / sqrt(b2 v + (1-b2) g^2 + eps).

eta_hat = scale * lr_t / K, the unscaled small-batch rate (pitfall: not lr_t). With mini-batch SGD
the perturbation costs no extra gradient and no extra communication; composed with post-local SGD
it gives Alg. 12 (each worker extrapolates its own model).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdist.errors import ConfigError
from jaxdist.workers import PER_WORKER, SHARED, Comm

KINDS = ("none", "extrap", "gradient_noise", "gaussian", "uniform", "smoothout", "extrap_adam")
_NEEDS_PAST = ("extrap", "gradient_noise", "extrap_adam")


class State(NamedTuple):
  past_gradient: Any  # per worker; None when unused
  past_mean: Any  # shared mean of the past gradients (gradient_noise); None when unused
  key: Any  # shared key (smoothout); None when unused


class Extrapolation:
  """Where a worker takes its gradient: `point(...)` before, `record(...)` after each step."""

  state_axes = State(past_gradient=PER_WORKER, past_mean=SHARED, key=SHARED)

  def __init__(self, kind: str, scale: float, learning_rate: optax.Schedule, comm: Comm,
               adam=(0.9, 0.999, 1e-8)):
    if kind not in KINDS or kind == "none":
      raise ConfigError("algo.extrapolation", f"unknown extrapolation {kind!r}", KINDS)
    self.kind, self.scale, self.learning_rate, self.comm = kind, scale, learning_rate, comm
    self.b1, self.b2, self.eps = adam

  def init(self, params, rng) -> State:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return State(past_gradient=zeros if self.kind in _NEEDS_PAST else None,
                 past_mean=zeros if self.kind == "gradient_noise" else None,
                 key=rng if self.kind == "smoothout" else None)

  def point(self, state: State, params, opt_state, step, rng):
    """The model at which this worker takes its gradient."""
    rate = self.scale * self.learning_rate(step) / self.comm.num_workers
    if self.kind == "extrap":
      zeta = state.past_gradient
    elif self.kind == "gradient_noise":
      zeta = jax.tree.map(jnp.subtract, state.past_gradient, state.past_mean)
    elif self.kind == "extrap_adam":
      zeta = self._adam_direction(state.past_gradient, opt_state)
    else:
      if self.kind == "smoothout":
        rng = jax.random.fold_in(state.key, step)
      zeta = _filter_scaled_noise(params, rng, self.kind == "gaussian")
    return jax.tree.map(lambda x, z: x - (rate * z).astype(x.dtype), params, zeta)

  def record(self, state: State, grads, mean_grads=None) -> State:
    """Keeps this step's gradients for the next extrapolation; `mean_grads`, when the algorithm
    averaged them anyway, saves gradient_noise a collective."""
    if self.kind not in _NEEDS_PAST:
      return state
    if self.kind == "gradient_noise" and mean_grads is None:
      mean_grads = self.comm.mean(grads)
    return state._replace(past_gradient=grads,
                          past_mean=mean_grads if self.kind == "gradient_noise" else None)

  def _adam_direction(self, grads, opt_state):
    try:
      mu = optax.tree_utils.tree_get(opt_state, "mu")
      nu = optax.tree_utils.tree_get(opt_state, "nu")
    except (KeyError, ValueError):
      raise ConfigError("algo.extrapolation", "extrap_adam needs Adam moments in the optimizer "
                        "state", "optim.optimizer='adam' or 'lamb'") from None
    b1, b2, eps = self.b1, self.b2, self.eps
    return jax.tree.map(
        lambda m, v, g: (b1 * m + (1 - b1) * g) / jnp.sqrt(b2 * v + (1 - b2) * g * g + eps),
        mu, nu, grads)


def _filter_scaled_noise(params, rng, gaussian: bool):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(rng, len(leaves))

  def noise(x, key):
    sample = (jax.random.normal(key, x.shape, x.dtype) if gaussian else
              jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0))
    axes = tuple(range(x.ndim - 1)) if x.ndim >= 2 else None
    norm = lambda v: jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=axes is not None))
    return sample / jnp.maximum(norm(sample), 1e-12) * norm(x)

  return jax.tree.unflatten(treedef, [noise(x, k) for x, k in zip(leaves, keys)])
