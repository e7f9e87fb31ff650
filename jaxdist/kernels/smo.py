"""Two-variable SMO for the kernel-SVM dual with the equality constraint ([You20] ch. 2).

    max_alpha  sum(alpha) - 1/2 sum_ij alpha_i alpha_j y_i y_j K_ij
    s.t.       sum_i alpha_i y_i = 0,  0 <= alpha_i <= C

Keerthi's form, as Catanzaro and the thesis write it (eqs. 2.5-2.7): f_i = sum_j alpha_j y_j K_ij
- y_i; every iteration takes high = argmin f over I_high and low = argmax f over I_low
(I_high: y = +1, alpha < C or y = -1, alpha > 0; I_low the mirror image), moves the two alphas
along the equality constraint by (b_high - b_low) / eta, clipped to the box (eqs. 2.6-2.7), and
updates every f_i with two kernel columns (eq. 2.5). It stops when b_low <= b_high + tol
(scikit-learn's `tol` means the same gap). The decision function is
sum_i alpha_i y_i K(x, x_i) - b with b = (b_low + b_high) / 2.

One loop serves the single solver (`solve`, which vmaps over partitions padded with masks) and
Dis-SMO (`solve_distributed`, run inside `Workers.map`: each worker holds a block of rows, the
argmin / argmax are reductions over the workers and the two chosen samples reach every worker),
so the two do the same arithmetic and a one-worker Dis-SMO is the single solver exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.core import collectives
from jaxdist.errors import check_at_least
from jaxdist.kernels.kernels import Kernel, matvec


class SMOResult(NamedTuple):
  """A solved dual: alpha, the gradients f, the bias b and how the loop ended."""

  alpha: jax.Array
  f: jax.Array
  b: jax.Array
  iterations: jax.Array
  gap: jax.Array  # b_low - b_high at the end (<= tol when converged)


class _Candidate(NamedTuple):
  value: jax.Array
  row: jax.Array
  label: jax.Array
  alpha: jax.Array
  owner: jax.Array  # the worker that holds it
  index: jax.Array  # its row on that worker


def check_svm_arguments(C: float, tol: float, max_iter: int) -> None:
  check_at_least("C", C, 1e-12)
  check_at_least("tol", tol, 0)
  check_at_least("max_iter", max_iter, 1, integer=True)


def _sets(alpha, y, mask, C):
  positive = y > 0
  high = mask & ((positive & (alpha < C)) | (~positive & (alpha > 0)))
  low = mask & ((positive & (alpha > 0)) | (~positive & (alpha < C)))
  return high, low


def _snap(value, C):
  """A value a few roundings from a bound is put on it, so no pair stalls on a step of 1e-16."""
  eps = 16 * jnp.finfo(value.dtype).eps * C
  return jnp.where(value < eps, 0.0, jnp.where(value > C - eps, C, value)).astype(value.dtype)


def _local_candidates(x, y, alpha, f, high, low, me):
  inf = jnp.asarray(jnp.inf, f.dtype)
  ih = jnp.argmin(jnp.where(high, f, inf))
  il = jnp.argmax(jnp.where(low, f, -inf))
  pick = lambda i, value: _Candidate(value, x[i], y[i], alpha[i], me, i)
  return pick(ih, jnp.where(high, f, inf)[ih]), pick(il, jnp.where(low, f, -inf)[il])


def _alone(high: _Candidate, low: _Candidate) -> tuple[_Candidate, _Candidate]:
  return high, low


def _over_workers(high: _Candidate, low: _Candidate) -> tuple[_Candidate, _Candidate]:
  """The argmin / argmax reductions of Dis-SMO: every worker's candidate gathered, the best kept
  (ties to the lowest worker, as argmin over the stacked rows would)."""
  highs, lows = collectives.gather(high), collectives.gather(low)
  hi, lo = jnp.argmin(highs.value), jnp.argmax(lows.value)
  return (jax.tree.map(lambda v: v[hi], highs), jax.tree.map(lambda v: v[lo], lows))


def _loop(kernel: Kernel, x, y, mask, alpha, f, C, tol, max_iter,
          select: Callable, me) -> SMOResult:
  dtype = f.dtype
  C = jnp.asarray(C, dtype)

  def candidates(alpha, f):
    high, low = _sets(alpha, y, mask, C)
    return select(*_local_candidates(x, y, alpha, f, high, low, me))

  def cond(carry):
    _, _, it, (hi, lo) = carry
    return (lo.value > hi.value + tol) & (it < max_iter)

  def body(carry):
    alpha, f, it, (hi, lo) = carry
    pair = jnp.stack([hi.row, lo.row])
    k = kernel(pair, pair)
    eta = jnp.maximum(k[0, 0] + k[1, 1] - 2 * k[0, 1], jnp.asarray(1e-12, dtype))
    s = hi.label * lo.label
    # eq. 2.6: the low alpha moves by y_low (b_high - b_low) / eta, clipped to what the box and
    # the equality constraint allow; eq. 2.7: the high alpha by s times the opposite.
    same, differ = hi.alpha + lo.alpha, lo.alpha - hi.alpha
    lower = jnp.where(s > 0, jnp.maximum(0, same - C), jnp.maximum(0, differ))
    upper = jnp.where(s > 0, jnp.minimum(C, same), jnp.minimum(C, C + differ))
    new_low = jnp.clip(lo.alpha + lo.label * (hi.value - lo.value) / eta, lower, upper)
    new_high = _snap(hi.alpha + s * (lo.alpha - new_low), C)
    new_low = _snap(new_low, C)
    # eq. 2.5: every f_i with the two kernel columns
    columns = kernel(x, pair)
    f = (f + (new_high - hi.alpha) * hi.label * columns[:, 0]
         + (new_low - lo.alpha) * lo.label * columns[:, 1])
    rows = jnp.arange(alpha.shape[0])
    alpha = jnp.where((hi.owner == me) & (rows == hi.index), new_high, alpha)
    alpha = jnp.where((lo.owner == me) & (rows == lo.index), new_low, alpha)
    return alpha, f, it + 1, candidates(alpha, f)

  start = (alpha, f, jnp.int32(0), candidates(alpha, f))
  alpha, f, it, (hi, lo) = lax.while_loop(cond, body, start)
  return SMOResult(alpha, f, (hi.value + lo.value) / 2, it, lo.value - hi.value)


def _start(kernel, x, y, mask, alpha, block):
  if alpha is None:
    return jnp.zeros_like(y), -y
  alpha = jnp.where(mask, alpha, 0)
  return alpha, matvec(kernel, x, x, alpha * y, block) - y  # f of a warm start


def solve(kernel: Kernel, x: jax.Array, y: jax.Array, mask: jax.Array | None = None, *,
          C: float = 1.0, tol: float = 1e-3, max_iter: int = 100_000,
          alpha: jax.Array | None = None, block: int = 256) -> SMOResult:
  """SMO on rows x `[m, n]` with labels y in {-1, +1}; rows where `mask` is False are padding.

  `alpha` warm-starts (Cascade's levels); it must satisfy sum(alpha y) = 0. Pure and jittable
  (kernel, C, tol, max_iter static), so partitions run vmapped.
  """
  mask = jnp.ones(y.shape, bool) if mask is None else mask.astype(bool)
  alpha, f = _start(kernel, x, y, mask, alpha, block)
  return _loop(kernel, x, y, mask, alpha, f, C, tol, max_iter, _alone, jnp.int32(0))


def solve_distributed(kernel: Kernel, x: jax.Array, y: jax.Array, mask: jax.Array, *,
                      C: float = 1.0, tol: float = 1e-3, max_iter: int = 100_000
                      ) -> SMOResult:
  """Dis-SMO: one global SMO over the rows of all workers, for one worker inside `Workers.map`.

  Each iteration is two reductions over the workers (the argmin over I_high, the argmax over
  I_low) that bring the two chosen samples to every worker; each worker updates the f of its
  own rows and the owners their alphas.
  """
  mask = mask.astype(bool)
  alpha, f = jnp.zeros_like(y), -y
  return _loop(kernel, x, y, mask, alpha, f, C, tol, max_iter, _over_workers,
               collectives.index())


def dual_objective(result: SMOResult, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """sum(alpha) - 1/2 alpha' Q alpha, read from f (alpha' Q alpha = sum alpha_i (y_i f_i + 1))."""
  alpha = result.alpha if mask is None else jnp.where(mask, result.alpha, 0)
  return jnp.sum(alpha) - 0.5 * jnp.sum(alpha * (y * result.f + 1))


def decision(kernel: Kernel, x_train: jax.Array, y: jax.Array, alpha: jax.Array, b: jax.Array,
             x: jax.Array, block: int = 256) -> jax.Array:
  """sum_i alpha_i y_i K(x, x_i) - b for every row of x, in blocks."""
  return matvec(kernel, x, x_train, alpha * y, block) - b
