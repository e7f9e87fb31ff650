"""Per-worker optimizers on optax, with the choices of the large-batch recipes.

Each is an optax-style function of the learning rate (a float or a schedule) that returns a
`GradientTransformation`, so an algorithm takes `functools.partial(jaxdist.optim.sgd,
momentum=0.9)` as its optimizer and the rate once. Defaults are the plain method: no momentum, no
weight decay. Weight decay skips biases and normalisation parameters (every leaf of rank < 2)
unless `decay_norm_and_bias`.

* `sgd`: momentum in PyTorch's form (m <- beta*m + g; x <- x - lr*(g + beta*m) with Nesterov),
  weight decay added to the gradient before the momentum ([Lin22] §0);
* `adam`: Adam with the weight decay added to the gradient (L2);
* `lars`: [You20] ch. 5. Trust ratio l*||w|| / (||g|| + wd*||w||) as in the thesis and the
  reference code (optax's `lars` uses ||g + wd*w||, selectable), optional clipping of the ratio and
  of the gradient, learning rate inside the momentum (optax, ch. 5 text) or outside it (the
  reference code); leaves of rank < 2 get plain momentum SGD;
* `lamb`: [You20] Alg. 16. Adam direction plus decoupled weight decay, scaled per leaf by
  phi(||x||) / ||r + wd*x||; epsilon outside the square root (reference code, optax) or inside (as
  printed), bias correction switchable, optional phi bounds.

* `lars(lars_momentum="ema_normalized")`: [You20] ch. 6 Alg. 15, m = b1 m + (1 - b1)(g + wd x),
  x -= lr phi(||x||) / ||m|| m, phi = clip to `trust_clip` (no trust coefficient);
* `lamb(variant="n_lamb" | "nn_lamb")`: Alg. 17 / 18, Nesterov on the first (and second) moment;
* `trust_norm="l1" | "linf"`: other norms for the trust ratio of LARS and LAMB (ch. 6, Fig. 6.4);
* `adamw` (decoupled weight decay) and `adagrad`: the baselines of [You20] ch. 6;
* `with_gradient_noise(optimizer, eta, gamma)`: Neelakantan et al.'s noise on the gradient
  ([Lin22] Table 11.9's baseline to extrapolation and post-local SGD).

When the settings coincide with optax's definitions, optax.lars / optax.lamb are used as they are.
Norms are per whole tensor, in float32; `norm_axes` names mesh axes over which a sharded tensor's
squared norm is summed.
"""


import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jax import lax

from jaxdist.errors import ArgumentError, check_at_least, check_choice, is_traced

TRUST_DENOMINATORS = ("sum_of_norms", "norm_of_sum")
LARS_MOMENTUM = ("lr_inside", "lr_outside", "ema_normalized")
TRUST_NORMS = ("l2", "l1", "linf")
LAMB_VARIANTS = ("lamb", "n_lamb", "nn_lamb")
ScalarOrSchedule = optax.ScalarOrSchedule


def is_weight_matrix(params: Any) -> Any:
  """True for the leaves of rank >= 2 (kernels), False for biases and normalisation parameters."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def decay_weights(weight_decay: float, decay_norm_and_bias: bool) -> optax.GradientTransformation:
  """L2 decay added to the gradient: of the weight matrices, or of every leaf."""
  check_at_least("weight_decay", weight_decay, 0)
  if not is_traced(weight_decay) and not weight_decay:
    return optax.identity()
  return optax.add_decayed_weights(weight_decay,
                                   mask=None if decay_norm_and_bias else is_weight_matrix)


def clip_gradients(grad_clip_norm: float) -> optax.GradientTransformation:
  """Clip the global gradient norm to `grad_clip_norm`; 0 = off."""
  check_at_least("grad_clip_norm", grad_clip_norm, 0)
  return optax.clip_by_global_norm(grad_clip_norm) if grad_clip_norm else optax.identity()


def _check_momentum(momentum: float) -> None:
  check_at_least("momentum", momentum, 0)
  if not is_traced(momentum) and momentum >= 1:
    raise ArgumentError("momentum", f"{momentum} is not a momentum", "0 <= momentum < 1")


def sgd(learning_rate: ScalarOrSchedule, *, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, decay_norm_and_bias: bool = False,
        grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """SGD with PyTorch's (Nesterov) momentum and L2 weight decay on the kernels.

  Args:
    learning_rate: a float or an optax schedule of the step.
    momentum: beta of m <- beta m + g; 0 for plain SGD.
    nesterov: x <- x - lr (g + beta m) instead of x - lr m.
    weight_decay: lambda of g <- g + lambda x, before the momentum.
    decay_norm_and_bias: also decay the leaves of rank < 2.
    grad_clip_norm: clip the gradient's global norm first; 0 = off.
  """
  _check_momentum(momentum)
  return optax.chain(clip_gradients(grad_clip_norm),
                     decay_weights(weight_decay, decay_norm_and_bias),
                     optax.sgd(learning_rate, momentum=momentum if is_traced(momentum) else
                               momentum or None, nesterov=nesterov))


def adam(learning_rate: ScalarOrSchedule, *, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, weight_decay: float = 0.0, decay_norm_and_bias: bool = False,
         grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """Adam (optax.adam) with L2 weight decay added to the gradient."""
  _check_betas(b1, b2)
  check_at_least("eps", eps, 0)
  return optax.chain(clip_gradients(grad_clip_norm),
                     decay_weights(weight_decay, decay_norm_and_bias),
                     optax.adam(learning_rate, b1, b2, eps))


def adamw(learning_rate: ScalarOrSchedule, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.0, decay_norm_and_bias: bool = False,
          grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """AdamW (optax.adamw): weight decay decoupled from the Adam direction, scaled by the rate;
  [You20] ch. 6's BERT baseline."""
  _check_betas(b1, b2)
  check_at_least("eps", eps, 0)
  check_at_least("weight_decay", weight_decay, 0)
  return optax.chain(clip_gradients(grad_clip_norm), optax.adamw(
      learning_rate, b1, b2, eps, weight_decay=weight_decay,
      mask=None if decay_norm_and_bias else is_weight_matrix))


def adagrad(learning_rate: ScalarOrSchedule, *, initial_accumulator: float = 0.1,
            eps: float = 1e-7, weight_decay: float = 0.0, decay_norm_and_bias: bool = False,
            grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """AdaGrad (optax.adagrad) with L2 weight decay added to the gradient; a [You20] ch. 6
  baseline."""
  check_at_least("initial_accumulator", initial_accumulator, 0)
  check_at_least("eps", eps, 0)
  return optax.chain(clip_gradients(grad_clip_norm),
                     decay_weights(weight_decay, decay_norm_and_bias),
                     optax.adagrad(learning_rate, initial_accumulator, eps))


def _check_betas(b1: float, b2: float) -> None:
  for name, beta in (("b1", b1), ("b2", b2)):
    check_at_least(name, beta, 0)
    if beta >= 1:
      raise ArgumentError(name, f"{beta} is not a decay rate", f"0 <= {name} < 1")


def _check_trust_clip(trust_clip) -> tuple[float, float]:
  low, high = (float(x) for x in trust_clip)
  if not 0 <= low <= high:
    raise ArgumentError("trust_clip", f"{tuple(trust_clip)} is not a range",
                        "(low, high) with 0 <= low <= high")
  return low, high


def lars(learning_rate: ScalarOrSchedule, *, momentum: float = 0.9, nesterov: bool = False,
         weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_denominator: str = "sum_of_norms", trust_clip=(0.0, math.inf),
         grad_clip_value: float = 0.0, lars_momentum: str = "lr_inside",
         adapt_norm_and_bias: bool = False, decay_norm_and_bias: bool = False,
         grad_clip_norm: float = 0.0, norm_axes: Sequence[str] = (), trust_norm: str = "l2"
         ) -> optax.GradientTransformation:
  """LARS ([You20] ch. 5); see `scale_by_lars` for the update. optax.lars where it coincides.

  `lars_momentum="ema_normalized"` is ch. 6's Alg. 15 instead: m = momentum m + (1 - momentum)
  (g + wd x), x -= lr phi(||x||) / ||m|| m with phi = clip to `trust_clip`; the trust
  coefficient, epsilon, denominator and `nesterov` do not enter it.
  """
  _check_momentum(momentum)
  check_at_least("weight_decay", weight_decay, 0)
  check_at_least("trust_coefficient", trust_coefficient, 0)
  check_at_least("eps", eps, 0)
  check_at_least("grad_clip_value", grad_clip_value, 0)
  check_choice("trust_denominator", trust_denominator, TRUST_DENOMINATORS)
  check_choice("lars_momentum", lars_momentum, LARS_MOMENTUM)
  check_choice("trust_norm", trust_norm, TRUST_NORMS)
  trust_clip = _check_trust_clip(trust_clip)
  decay_mask = None if decay_norm_and_bias else is_weight_matrix
  adapt_mask = True if adapt_norm_and_bias else is_weight_matrix
  if lars_momentum == "ema_normalized":
    return optax.chain(
        clip_gradients(grad_clip_norm), optax.add_decayed_weights(weight_decay, decay_mask),
        optax.ema(momentum, debias=False),
        optax.masked(scale_by_trust_ratio(trust_clip, norm_axes, trust_norm), adapt_mask),
        optax.scale_by_learning_rate(learning_rate))
  as_optax = (lars_momentum == "lr_inside" and not grad_clip_value and trust_norm == "l2" and
              trust_clip == (0.0, math.inf) and not norm_axes and
              (trust_denominator == "norm_of_sum" or not weight_decay))
  if as_optax:
    base = optax.lars(learning_rate, weight_decay, decay_mask or True, trust_coefficient, eps,
                      adapt_mask, momentum, nesterov)
  else:
    base = scale_by_lars(learning_rate, weight_decay=weight_decay, momentum=momentum,
                         trust_coefficient=trust_coefficient, eps=eps,
                         trust_denominator=trust_denominator, trust_clip=trust_clip,
                         grad_clip_value=grad_clip_value, lr_inside=lars_momentum == "lr_inside",
                         nesterov=nesterov, decay_mask=decay_mask, adapt_mask=adapt_mask,
                         norm_axes=norm_axes, trust_norm=trust_norm)
  return optax.chain(clip_gradients(grad_clip_norm), base)


def lamb(learning_rate: ScalarOrSchedule, *, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6, weight_decay: float = 0.0, eps_inside_sqrt: bool = False,
         bias_correction: bool = True, trust_clip=(0.0, math.inf),
         adapt_norm_and_bias: bool = False, decay_norm_and_bias: bool = False,
         grad_clip_norm: float = 0.0, norm_axes: Sequence[str] = (), trust_norm: str = "l2",
         variant: str = "lamb") -> optax.GradientTransformation:
  """LAMB ([You20] Alg. 16); optax.lamb where it coincides. `variant="n_lamb"` (Alg. 17) and
  `"nn_lamb"` (Alg. 18) take Nesterov's momentum on the first (and the second) moment
  (`nesterov_adam`); `trust_norm` the norm of the trust ratio."""
  _check_betas(b1, b2)
  check_at_least("eps", eps, 0)
  check_at_least("weight_decay", weight_decay, 0)
  check_choice("trust_norm", trust_norm, TRUST_NORMS)
  check_choice("variant", variant, LAMB_VARIANTS)
  trust_clip = _check_trust_clip(trust_clip)
  decay_mask = None if decay_norm_and_bias else is_weight_matrix
  adapt_mask = True if adapt_norm_and_bias else is_weight_matrix
  as_optax = (not eps_inside_sqrt and bias_correction and adapt_mask is True and
              trust_clip == (0.0, math.inf) and not norm_axes and trust_norm == "l2" and
              variant == "lamb")
  if as_optax:
    base = optax.lamb(learning_rate, b1, b2, eps, 0.0, weight_decay, decay_mask)
  else:
    moments = (scale_by_adam(b1, b2, eps, eps_inside_sqrt, bias_correction)
               if variant == "lamb" else
               nesterov_adam(b1, b2, eps, eps_inside_sqrt, both=variant == "nn_lamb"))
    base = optax.chain(
        moments, optax.add_decayed_weights(weight_decay, decay_mask),
        optax.masked(scale_by_trust_ratio(trust_clip, norm_axes, trust_norm), adapt_mask),
        optax.scale_by_learning_rate(learning_rate))
  return optax.chain(clip_gradients(grad_clip_norm), base)


def with_gradient_noise(optimizer: Any, *, eta: float, gamma: float = 0.55,
                        key: int = 0) -> Any:
  """Neelakantan et al.'s gradient noise, [Lin22] Table 11.9's baseline: g + N(0, sigma_t^2),
  sigma_t^2 = eta / (1 + t)^gamma (as optax.add_noise), before `optimizer`, a function of the
  rate. The noise comes from the optimizer's state: one draw for all workers where the state is
  shared (mini-batch SGD), the same draw on every worker otherwise.

  Args:
    optimizer: a function of the learning rate returning an optax optimizer.
    eta: the variance at t = 0 (the thesis's grid: 1e-6, 5e-6, 1e-5, 5e-5).
    gamma: its decay (grid 0.5 ... 3; Neelakantan et al.'s 0.55).
    key: the noise's random key.
  """
  check_at_least("gradient_noise_eta", eta, 0)
  check_at_least("gradient_noise_gamma", gamma, 0)

  def build(learning_rate):
    return optax.chain(_add_noise(eta, gamma, key), optimizer(learning_rate))

  return build


class NoiseState(NamedTuple):
  count: jax.Array
  key: jax.Array  # a raw uint32 key (optax.add_noise keeps a typed one, which layouts refuse)


def _add_noise(eta: float, gamma: float, seed: int) -> optax.GradientTransformation:
  def init(params):
    return NoiseState(jnp.zeros([], jnp.int32), jax.random.PRNGKey(seed))

  def update(updates, state, params=None):
    del params
    count = state.count + 1
    key, sample = jax.random.split(state.key)
    std = jnp.sqrt(eta / count.astype(jnp.float32)**gamma)
    noise = otu.tree_random_like(sample, updates, jax.random.normal)
    return otu.tree_add_scale(updates, std, noise), NoiseState(count, key)

  return optax.GradientTransformation(init, update)


def trust_ratio_metrics(params: Any, grads: Any) -> dict[str, jax.Array]:
  """||w|| / ||g|| per tensor, as [You20] Table 5.6 lists them (the trust ratio before the
  coefficient and weight decay): `{"trust_ratio/<path>": ratio}`, 0 where ||g|| = 0."""
  metrics = {}
  for path, w in jax.tree_util.tree_flatten_with_path(params)[0]:
    g = _at(grads, path)
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    w_norm, g_norm = _norm(w, ()), _norm(g, ())
    metrics[f"trust_ratio/{name}"] = jnp.where(g_norm > 0, w_norm / jnp.where(
        g_norm > 0, g_norm, 1.0), 0.0)
  return metrics


def _at(tree: Any, path) -> Any:
  for key in path:
    tree = tree[getattr(key, "key", getattr(key, "idx", None))]
  return tree


# -- LARS ------------------------------------------------------------------------------------------


class LarsState(NamedTuple):
  count: jax.Array
  momentum: Any


def _norm(x: jax.Array, axes: Sequence[str], kind: str = "l2") -> jax.Array:
  """The norm of a whole tensor, in float32, combined over the mesh `axes` it is sharded on."""
  x = jnp.abs(x.astype(jnp.float32))
  if kind == "linf":
    largest = jnp.max(x, initial=0.0)
    return lax.pmax(largest, tuple(axes)) if axes else largest
  total = jnp.sum(x if kind == "l1" else jnp.square(x))
  total = lax.psum(total, tuple(axes)) if axes else total
  return total if kind == "l1" else jnp.sqrt(total)


def _resolve(mask, params):
  if mask is None or mask is True:
    return jax.tree.map(lambda _: True, params)
  return mask(params) if callable(mask) else mask


def scale_by_lars(learning_rate: optax.ScalarOrSchedule, *, weight_decay: float = 0.0,
         momentum: float = 0.9, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_denominator: str = "sum_of_norms", trust_clip=(0.0, math.inf),
         grad_clip_value: float = 0.0, lr_inside: bool = True, nesterov: bool = False,
         decay_mask=None, adapt_mask=None, norm_axes: Sequence[str] = (),
         trust_norm: str = "l2") -> optax.GradientTransformation:
  """LARS with the thesis's choices ([You20] ch. 5), per leaf w with gradient g:

    ratio = l*||w|| / (||g|| + wd*||w|| + eps)    (or l*||w|| / (||g + wd*w|| + eps)),
            1 if ||w|| or ||g|| is 0, clipped to `trust_clip`;
    d = clip(g + wd*w, -grad_clip_value, grad_clip_value)
    lr_inside:  a = momentum*a + lr*ratio*d;  w -= a              (ch. 5 text, optax)
    lr_outside: a = momentum*a + d;           w -= lr*ratio*a     (the reference code)
    nesterov:   w -= momentum*a + lr*ratio*d  (lr_inside), lr*ratio*(momentum*a + d) (lr_outside)

  Leaves outside `adapt_mask` use ratio 1, outside `decay_mask` no weight decay.
  """
  schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate)

  def init(params):
    return LarsState(jnp.zeros([], jnp.int32), otu.tree_zeros_like(params))

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
        w_norm, g_norm = _norm(w, norm_axes, trust_norm), _norm(g, norm_axes, trust_norm)
        denominator = g_norm + wd * w_norm if trust_denominator == "sum_of_norms" else _norm(
            g + wd * w, norm_axes, trust_norm)
        ratio = jnp.where((w_norm == 0) | (g_norm == 0), 1.0,
                          trust_coefficient * w_norm / (denominator + eps))
        ratio = jnp.clip(ratio, *trust_clip)
      if lr_inside:
        step = (rate * ratio * d).astype(a.dtype)
        a = momentum * a + step
        return -(momentum * a + step if nesterov else a), a
      a = momentum * a + d
      direction = momentum * a + d if nesterov else a
      return (-rate * ratio * direction).astype(a.dtype), a

    out = jax.tree.map(leaf, grads, params, state.momentum, adapt, decay)
    treedef = jax.tree.structure(grads)
    updates, buffers = zip(*treedef.flatten_up_to(out)) if treedef.num_leaves else ((), ())
    return (jax.tree.unflatten(treedef, updates),
            LarsState(state.count + 1, jax.tree.unflatten(treedef, buffers)))

  return optax.GradientTransformation(init, update)


# -- LAMB ------------------------------------------------------------------------------------------


class AdamState(NamedTuple):
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
                  eps_inside_sqrt: bool = False,
                  bias_correction: bool = True) -> optax.GradientTransformation:
  """Adam's direction m_hat / (sqrt(v_hat) + eps), or m_hat / sqrt(v_hat + eps) as [You20] Alg. 16
  prints it, with or without bias correction."""

  def direction(m, v, g, t):
    c1 = 1 - b1**t if bias_correction else 1.0
    c2 = 1 - b2**t if bias_correction else 1.0
    return _normalised(m / c1, v / c2, eps, eps_inside_sqrt)

  return _scale_by_moments(b1, b2, direction)


def nesterov_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
                  eps_inside_sqrt: bool = True, both: bool = False
                  ) -> optax.GradientTransformation:
  """The moments of N-LAMB ([You20] Alg. 17; NN-LAMB, Alg. 18, with `both`), with constant
  beta_i^t = beta_i (Dozat's schedule held fixed) and epsilon inside the square root as printed:

    m_hat = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)
    v_hat = b2 v_t / (1 - b2^(t+1)) [+ (1 - b2) g_t^2 / (1 - b2^t) with `both`]
    r = m_hat / sqrt(v_hat + eps)   (m_hat / (sqrt(v_hat) + eps) with eps_inside_sqrt=False)
  """

  def direction(m, v, g, t):
    m_hat = b1 * m / (1 - b1**(t + 1)) + (1 - b1) * g / (1 - b1**t)
    v_hat = b2 * v / (1 - b2**(t + 1))
    if both:
      v_hat = v_hat + (1 - b2) * jnp.square(g) / (1 - b2**t)
    return _normalised(m_hat, v_hat, eps, eps_inside_sqrt)

  return _scale_by_moments(b1, b2, direction)


def _normalised(m_hat, v_hat, eps, eps_inside_sqrt):
  return m_hat / (jnp.sqrt(v_hat + eps) if eps_inside_sqrt else jnp.sqrt(v_hat) + eps)


def _scale_by_moments(b1: float, b2: float, direction) -> optax.GradientTransformation:
  """Adam's moments m, v of the gradient, and `direction(m, v, g, t)` of them at step t >= 1."""

  def init(params):
    zeros = otu.tree_zeros_like(params)
    return AdamState(jnp.zeros([], jnp.int32), zeros, zeros)

  def update(grads, state, params=None):
    del params
    t = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, grads)
    out = jax.tree.map(lambda m, v, g: direction(m, v, g, t), mu, nu, grads)
    return out, AdamState(t, mu, nu)

  return optax.GradientTransformation(init, update)


def scale_by_trust_ratio(phi_bounds=(0.0, math.inf), norm_axes: Sequence[str] = (),
                         trust_norm: str = "l2") -> optax.GradientTransformation:
  """u <- phi(||x||) / ||u|| * u per leaf, phi(z) = clip(z, *phi_bounds); 1 for zero norms;
  the norms L2, L1 or L-infinity (`trust_norm`)."""

  def update(updates, state, params):
    def leaf(u, x):
      x_norm, u_norm = _norm(x, norm_axes, trust_norm), _norm(u, norm_axes, trust_norm)
      ratio = jnp.clip(x_norm, *phi_bounds) / u_norm
      return u * jnp.where((x_norm == 0) | (u_norm == 0), 1.0, ratio).astype(u.dtype)

    return jax.tree.map(leaf, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)
