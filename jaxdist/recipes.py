"""Large-batch training recipes on optax: learning-rate schedules and optimizers.

Schedules ([Lin22] §2.2 and App. 11.1.3; [You20] ch. 5-6), defined on the number of samples seen,
never on rounds: the rate is scaled with the global batch K*B (linear or square-root rule) and
reached by a linear warmup (whose length grows with the batch under LEGW), then decays in steps
(e.g. /10 at 50% and 75% of all samples), polynomially to zero, or along a cosine.

Optimizers, each with weight decay skipped on biases and normalisation parameters (every leaf of
rank < 2) unless asked:
* `sgd`: momentum in PyTorch's form (m <- beta*m + g; x <- x - lr*(g + beta*m) with Nesterov),
  weight decay added to the gradient before the momentum;
* `adam`: Adam with the weight decay added to the gradient (L2);
* `lars`: [You20] ch. 5. Trust ratio l*||w|| / (||g|| + wd*||w||) as in the thesis and the
  reference code (optax's `lars` uses ||g + wd*w||, selectable), optional clipping of the ratio and
  of the gradient, learning rate inside the momentum (optax, ch. 5 text) or outside it (the
  reference code); leaves of rank < 2 get plain momentum SGD;
* `lamb`: [You20] Alg. 16. Adam direction plus decoupled weight decay, scaled per leaf by
  phi(||x||) / ||r + wd*x||; epsilon outside the square root (reference code, optax) or inside (as
  printed), bias correction switchable, optional phi bounds and global-norm gradient clipping.

When the settings coincide with optax's definitions, optax.lars / optax.lamb are used as they are.
Norms are per whole tensor, in float32; `norm_axes` names mesh axes over which a sharded tensor's
squared norm is summed.
"""

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import lax

from jaxdist.errors import ConfigError

LR_SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("step", "constant", "cosine", "poly")
WARMUP_SCALINGS = ("none", "legw")
OPTIMIZERS = ("sgd", "adam", "lars", "lamb")
TRUST_DENOMINATORS = ("sum_of_norms", "norm_of_sum")
LARS_MOMENTUM = ("lr_inside", "lr_outside")


def learning_rate(config: ml_collections.ConfigDict, *, global_batch: int, train_size: int,
                  total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step, defined on the number of samples seen."""
  if config.lr_scaling not in LR_SCALINGS:
    raise ConfigError("optim.lr_scaling", f"unknown rule {config.lr_scaling!r}", LR_SCALINGS)
  if config.schedule not in SCHEDULES:
    raise ConfigError("optim.schedule", f"unknown schedule {config.schedule!r}", SCHEDULES)
  if config.warmup_scaling not in WARMUP_SCALINGS:
    raise ConfigError("optim.warmup_scaling", f"unknown rule {config.warmup_scaling!r}",
                      WARMUP_SCALINGS)
  ratio = global_batch / config.base_batch
  peak = config.base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[
      config.lr_scaling]
  total = total_steps * global_batch
  # LEGW: warmup epochs grow with the batch, so the warmup keeps its number of iterations.
  warmup_epochs = config.warmup_epochs * (ratio if config.warmup_scaling == "legw" else 1.0)
  warmup = round(warmup_epochs * train_size)
  if not 0 <= warmup < total:
    raise ConfigError("optim.warmup_epochs",
                      f"{warmup_epochs:g} epochs of warmup do not fit the run",
                      f"0 <= warmup epochs < {total / train_size:g}")
  if config.schedule == "step":
    fractions = tuple(config.decay_at)
    if list(fractions) != sorted(fractions) or not all(
        warmup / total < f < 1 for f in fractions):
      raise ConfigError("optim.decay_at", f"{fractions} are not increasing fractions of the run "
                        "after the warmup", f"increasing values in ({warmup / total:g}, 1)")
    after_warmup = optax.piecewise_constant_schedule(
        peak, {round(f * total) - warmup: config.decay_factor for f in fractions})
  elif config.schedule == "cosine":
    after_warmup = optax.cosine_decay_schedule(peak, total - warmup)
  elif config.schedule == "poly":
    after_warmup = optax.polynomial_schedule(peak, 0.0, config.decay_power, total - warmup)
  else:
    after_warmup = optax.constant_schedule(peak)
  per_sample = after_warmup
  if warmup:
    start = config.base_lr if config.warmup_start_lr is None else config.warmup_start_lr
    per_sample = optax.join_schedules(
        [optax.linear_schedule(start, peak, warmup), after_warmup], [warmup])
  return lambda step: per_sample(step * global_batch)


def first_decay_samples(config: ml_collections.ConfigDict, total_samples: int) -> int:
  """Samples seen when a step schedule first decays the learning rate."""
  if config.schedule != "step":
    raise ConfigError("optim.schedule", f"{config.schedule!r} has no first decay to switch at; "
                      "set the switch point explicitly", ("step",))
  return round(config.decay_at[0] * total_samples)


def _is_weight_matrix(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def optimizer(config: ml_collections.ConfigDict, lr: optax.Schedule,
              norm_axes: Sequence[str] = ()) -> optax.GradientTransformation:
  """The per-worker optimizer named by `config.optimizer` (its state stays on the worker)."""
  if config.optimizer not in OPTIMIZERS:
    raise ConfigError("optim.optimizer", f"unknown optimizer {config.optimizer!r}", OPTIMIZERS)
  decay_mask = None if config.decay_norm_and_bias else _is_weight_matrix
  clip = optax.identity()
  if config.grad_clip_norm:
    clip = optax.clip_by_global_norm(config.grad_clip_norm)
  if config.optimizer in ("sgd", "adam"):
    decay = optax.identity()
    if config.weight_decay:
      decay = optax.add_decayed_weights(config.weight_decay, mask=decay_mask)
    if config.optimizer == "sgd":
      base = optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)
    else:
      base = optax.adam(lr, config.b1, config.b2, config.eps)
    return optax.chain(clip, decay, base)
  adapt_mask = True if config.adapt_norm_and_bias else _is_weight_matrix
  if config.optimizer == "lars":
    return optax.chain(clip, _lars(config, lr, decay_mask, adapt_mask, norm_axes))
  return optax.chain(clip, _lamb(config, lr, decay_mask, adapt_mask, norm_axes))


# -- LARS ------------------------------------------------------------------------------------------


def _lars(config, lr, decay_mask, adapt_mask, norm_axes):
  if config.lars_momentum not in LARS_MOMENTUM:
    raise ConfigError("optim.lars_momentum", f"unknown form {config.lars_momentum!r}",
                      LARS_MOMENTUM)
  if config.trust_denominator not in TRUST_DENOMINATORS:
    raise ConfigError("optim.trust_denominator", f"unknown form {config.trust_denominator!r}",
                      TRUST_DENOMINATORS)
  as_optax = (config.lars_momentum == "lr_inside" and not config.grad_clip_value and
              tuple(config.trust_clip) == (0.0, math.inf) and not norm_axes and
              (config.trust_denominator == "norm_of_sum" or not config.weight_decay))
  if as_optax:
    return optax.lars(lr, config.weight_decay, decay_mask or True, config.trust_coefficient,
                      config.eps, adapt_mask, config.momentum, config.nesterov)
  return lars(lr, weight_decay=config.weight_decay, momentum=config.momentum,
              trust_coefficient=config.trust_coefficient, eps=config.eps,
              trust_denominator=config.trust_denominator, trust_clip=tuple(config.trust_clip),
              grad_clip_value=config.grad_clip_value, lr_inside=config.lars_momentum == "lr_inside",
              decay_mask=decay_mask, adapt_mask=adapt_mask, norm_axes=norm_axes)


class LarsState(NamedTuple):
  count: jax.Array
  momentum: Any


def _norm(x: jax.Array, axes: Sequence[str]) -> jax.Array:
  squares = jnp.sum(jnp.square(x.astype(jnp.float32)))
  return jnp.sqrt(lax.psum(squares, tuple(axes)) if axes else squares)


def _resolve(mask, params):
  if mask is None or mask is True:
    return jax.tree.map(lambda _: True, params)
  return mask(params) if callable(mask) else mask


def lars(learning_rate: optax.ScalarOrSchedule, *, weight_decay: float = 0.0,
         momentum: float = 0.9, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_denominator: str = "sum_of_norms", trust_clip=(0.0, math.inf),
         grad_clip_value: float = 0.0, lr_inside: bool = True, decay_mask=None, adapt_mask=None,
         norm_axes: Sequence[str] = ()) -> optax.GradientTransformation:
  """LARS with the thesis's choices ([You20] ch. 5), per leaf w with gradient g:

    ratio = l*||w|| / (||g|| + wd*||w|| + eps)    (or l*||w|| / (||g + wd*w|| + eps)),
            1 if ||w|| or ||g|| is 0, clipped to `trust_clip`;
    d = clip(g + wd*w, -grad_clip_value, grad_clip_value)
    lr_inside:  a = momentum*a + lr*ratio*d;  w -= a              (ch. 5 text, optax)
    lr_outside: a = momentum*a + d;           w -= lr*ratio*a     (the reference code)

  Leaves outside `adapt_mask` use ratio 1, outside `decay_mask` no weight decay.
  """
  schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate)

  def init(params):
    return LarsState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params):
    adapt, decay = _resolve(adapt_mask, params), _resolve(decay_mask, params)
    rate = schedule(state.count)

    def leaf(g, w, a, adapt_leaf, decay_leaf):
      wd = weight_decay if decay_leaf else 0.0
      d = g + wd * w
      if grad_clip_value:
        d = jnp.clip(d, -grad_clip_value, grad_clip_value)
      ratio = 1.0
      if adapt_leaf:
        w_norm, g_norm = _norm(w, norm_axes), _norm(g, norm_axes)
        denominator = g_norm + wd * w_norm if trust_denominator == "sum_of_norms" else _norm(
            g + wd * w, norm_axes)
        ratio = jnp.where((w_norm == 0) | (g_norm == 0), 1.0,
                          trust_coefficient * w_norm / (denominator + eps))
        ratio = jnp.clip(ratio, *trust_clip)
      if lr_inside:
        a = momentum * a + (rate * ratio * d).astype(a.dtype)
        return -a, a
      a = momentum * a + d
      return (-rate * ratio * a).astype(a.dtype), a

    out = jax.tree.map(leaf, grads, params, state.momentum, adapt, decay)
    treedef = jax.tree.structure(grads)
    updates, buffers = zip(*treedef.flatten_up_to(out)) if treedef.num_leaves else ((), ())
    return (jax.tree.unflatten(treedef, updates),
            LarsState(state.count + 1, jax.tree.unflatten(treedef, buffers)))

  return optax.GradientTransformation(init, update)


# -- LAMB ------------------------------------------------------------------------------------------


def _lamb(config, lr, decay_mask, adapt_mask, norm_axes):
  as_optax = (not config.eps_inside_sqrt and config.bias_correction and adapt_mask is True and
              tuple(config.trust_clip) == (0.0, math.inf) and not norm_axes)
  if as_optax:
    return optax.lamb(lr, config.b1, config.b2, config.eps, 0.0, config.weight_decay,
                      decay_mask)
  return optax.chain(
      scale_by_adam(config.b1, config.b2, config.eps, config.eps_inside_sqrt,
                    config.bias_correction),
      optax.add_decayed_weights(config.weight_decay, decay_mask),
      optax.masked(scale_by_trust_ratio(tuple(config.trust_clip), norm_axes), adapt_mask),
      optax.scale_by_learning_rate(lr))


class AdamState(NamedTuple):
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
                  eps_inside_sqrt: bool = False,
                  bias_correction: bool = True) -> optax.GradientTransformation:
  """Adam's direction m_hat / (sqrt(v_hat) + eps), or m_hat / sqrt(v_hat + eps) as [You20] Alg. 16
  prints it, with or without bias correction."""

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return AdamState(jnp.zeros([], jnp.int32), zeros, zeros)

  def update(grads, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, grads)
    c1 = 1 - b1**count if bias_correction else 1.0
    c2 = 1 - b2**count if bias_correction else 1.0

    def direction(m, v):
      m_hat, v_hat = m / c1, v / c2
      return m_hat / (jnp.sqrt(v_hat + eps) if eps_inside_sqrt else jnp.sqrt(v_hat) + eps)

    return jax.tree.map(direction, mu, nu), AdamState(count, mu, nu)

  return optax.GradientTransformation(init, update)


def scale_by_trust_ratio(phi_bounds=(0.0, math.inf),
                         norm_axes: Sequence[str] = ()) -> optax.GradientTransformation:
  """u <- phi(||x||) / ||u|| * u per leaf, phi(z) = clip(z, *phi_bounds); 1 for zero norms."""

  def update(updates, state, params):
    def leaf(u, x):
      x_norm, u_norm = _norm(x, norm_axes), _norm(u, norm_axes)
      ratio = jnp.clip(x_norm, *phi_bounds) / u_norm
      return u * jnp.where((x_norm == 0) | (u_norm == 0), 1.0, ratio).astype(u.dtype)

    return jax.tree.map(leaf, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)
