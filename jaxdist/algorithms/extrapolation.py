"""Extrapolation: gradients taken at a perturbed copy of the model ([Lin22] ch. 3, Alg. 1, 12, 13).

Written in PyTorch's Nesterov form, EXTRAP-SGD (Alg. 1) is mini-batch SGD whose worker k evaluates
its gradient at x - eta_hat * zeta_k instead of x, eta_hat = scale * lr_t / K, the unscaled
small-batch rate (pitfall: not lr_t). The unified framework (§3.4.2) only changes zeta:

* `PastGradient()` (EXTRAP-SGD): zeta_k = worker k's previous local gradient, itself taken at its
  previous extrapolated point (zero at the first step: no extrapolation at t = 0);
* `GradientNoise()`: zeta_k = previous local gradient - previous mean gradient (anisotropic);
* `FilterNoise(gaussian=...)`: isotropic noise, filter-wise scaled to the norm of each filter of
  x (Li et al. 2018: slice [..., j] of a tensor, the whole tensor for biases); own noise per
  worker, or the same on every worker with `shared=True` (SmoothOut);
* `AdamDirection()`: Alg. 13 (EXTRAP-ADAM), the Adam direction of the previous local gradient
  under the global moments, (b1 m + (1-b1) g) / sqrt(b2 v + (1-b2) g^2 + eps).

With mini-batch SGD the perturbation costs no extra gradient and no extra communication; composed
with post-local SGD it gives Alg. 12 (each worker extrapolates its own model).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.errors import ArgumentError, check_at_least

PyTree = Any


@state_class
class PastGradientState:
  past_gradient: PyTree = per_worker()


@state_class
class GradientNoiseState:
  past_gradient: PyTree = per_worker()
  past_mean: PyTree = shared()


@state_class
class SharedKeyState:
  key: jax.Array = shared()


class Extrapolation:
  """Where a worker takes its gradient: `point(...)` before, `record(...)` after each step.

  Args:
    scale: eta_hat = scale * lr_t / K.
  """

  def __init__(self, scale: float = 1.0):
    check_at_least("scale", scale, 0)
    self.scale = scale

  def init(self, params: PyTree, rng: jax.Array) -> Any:
    return None

  def check(self, opt_state: PyTree) -> None:
    """Raises an ArgumentError if the optimizer lacks what this extrapolation reads."""

  def direction(self, state: Any, params: PyTree, opt_state: PyTree, step: jax.Array,
                rng: jax.Array) -> PyTree:
    """zeta for this worker."""
    raise NotImplementedError

  def point(self, state: Any, params: PyTree, opt_state: PyTree, step: jax.Array,
            learning_rate: jax.Array, rng: jax.Array) -> PyTree:
    """x - eta_hat * zeta: the model at which this worker takes its gradient."""
    rate = self.scale * learning_rate / collectives.num_workers()
    zeta = self.direction(state, params, opt_state, step, rng)
    return jax.tree.map(lambda x, z: x - (rate * z).astype(x.dtype), params, zeta)

  def record(self, state: Any, grads: PyTree, mean_grads: PyTree | None = None) -> Any:
    """Keeps what the next step needs; `mean_grads`, when the algorithm averaged the gradients
    anyway, saves a collective."""
    return state


class PastGradient(Extrapolation):
  """EXTRAP-SGD (Alg. 1): zeta = this worker's previous local gradient."""

  def init(self, params, rng):
    return PastGradientState(otu.tree_zeros_like(params))

  def direction(self, state, params, opt_state, step, rng):
    return state.past_gradient

  def record(self, state, grads, mean_grads=None):
    return PastGradientState(grads)


class GradientNoise(Extrapolation):
  """zeta = previous local gradient - previous mean gradient (stochastic-gradient noise)."""

  def init(self, params, rng):
    zeros = otu.tree_zeros_like(params)
    return GradientNoiseState(zeros, zeros)

  def direction(self, state, params, opt_state, step, rng):
    return otu.tree_sub(state.past_gradient, state.past_mean)

  def record(self, state, grads, mean_grads=None):
    return GradientNoiseState(grads, collectives.mean(grads) if mean_grads is None else
                              mean_grads)


class FilterNoise(Extrapolation):
  """Isotropic Gaussian or uniform noise scaled filter-wise to the model; `shared=True` draws the
  same noise on every worker (SmoothOut)."""

  def __init__(self, scale: float = 1.0, *, gaussian: bool = True, shared: bool = False):
    super().__init__(scale)
    self.gaussian, self.shared = gaussian, shared

  def init(self, params, rng):
    return SharedKeyState(rng) if self.shared else None

  def direction(self, state, params, opt_state, step, rng):
    if self.shared:
      rng = jax.random.fold_in(state.key, step)
    return _filter_scaled_noise(params, rng, self.gaussian)


class AdamDirection(Extrapolation):
  """EXTRAP-ADAM (Alg. 13): the Adam direction of the previous local gradient under the global
  moments, epsilon inside the square root as printed."""

  def __init__(self, scale: float = 1.0, *, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8):
    super().__init__(scale)
    self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, params, rng):
    return PastGradientState(otu.tree_zeros_like(params))

  def check(self, opt_state):
    self._moments(opt_state)

  def _moments(self, opt_state):
    try:
      mu = optax.tree_utils.tree_get(opt_state, "mu")
      nu = optax.tree_utils.tree_get(opt_state, "nu")
    except (KeyError, ValueError):
      mu = nu = None
    if mu is None or nu is None:
      raise ArgumentError("extrapolation", "AdamDirection needs Adam moments in the optimizer "
                          "state", "an Adam or LAMB optimizer")
    return mu, nu

  def direction(self, state, params, opt_state, step, rng):
    mu, nu = self._moments(opt_state)
    b1, b2, eps = self.b1, self.b2, self.eps
    return jax.tree.map(
        lambda m, v, g: (b1 * m + (1 - b1) * g) / jnp.sqrt(b2 * v + (1 - b2) * g * g + eps),
        mu, nu, state.past_gradient)

  def record(self, state, grads, mean_grads=None):
    return PastGradientState(grads)


def initial_state(extrapolation: Extrapolation | None, params: PyTree, opt_state: PyTree,
                  rng: jax.Array) -> Any:
  """The extrapolation's state at step 0 (None without one), once it has checked the
  optimizer."""
  if extrapolation is None:
    return None
  extrapolation.check(opt_state)
  return extrapolation.init(params, rng)


def gradient_point(extrapolation: Extrapolation | None, state: Any, learning_rate,
                   rng: jax.Array) -> tuple[PyTree, jax.Array]:
  """Where this worker takes its gradient (`state.params` without extrapolation), and what is
  left of `rng`. `state` has `params`, `opt_state`, `step` and `extrapolation` fields."""
  if extrapolation is None:
    return state.params, rng
  extrap_rng, rng = jax.random.split(rng)
  point = extrapolation.point(state.extrapolation, state.params, state.opt_state, state.step,
                              learning_rate(state.step), extrap_rng)
  return point, rng


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


def check_extrapolation(extrapolation: Any) -> None:
  if extrapolation is not None and not isinstance(extrapolation, Extrapolation):
    raise ArgumentError("extrapolation", f"{extrapolation!r} is not an extrapolation",
                        "None, PastGradient(), GradientNoise(), FilterNoise(...), "
                        "AdamDirection()")
