"""Kernel ridge regression by a direct solve ([You20] ch. 3, eqs. 3.4-3.7, Alg. 6).

    (K + lambda m I) alpha = y      by Cholesky (2.2x faster than elimination, L1706)
    y_hat(x) = sum_i alpha_i K(x_i, x)

m is the number of rows of *this* solve: a partitioned method solves its local problem with
its local m (Alg. 8 / 10 line "Solve (K + lambda m I) alpha = y"), so the effective
regularisation changes with P. scikit-learn's KernelRidge(alpha=lambda m) is the same solve.
Rows where `mask` is False are padding: their rows and columns of K are replaced by the identity
and their labels by 0, so their alphas are 0 and the solve is the unpadded one's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from jaxdist.kernels.kernels import Kernel, gram, matvec


def solve_gram(k: jax.Array, y: jax.Array, lam: jax.Array | float,
               mask: jax.Array | None = None) -> jax.Array:
  """alpha of (K + lambda m I) alpha = y for a given kernel matrix K `[m, m]`."""
  if mask is None:
    mask = jnp.ones(y.shape, bool)
  m = jnp.sum(mask).astype(k.dtype)
  both = mask[:, None] & mask[None, :]
  eye = jnp.eye(k.shape[0], dtype=bool)
  system = jnp.where(both, k, 0) + jnp.where(eye, jnp.where(mask, lam * m, 1)[:, None], 0)
  return cho_solve(cho_factor(system, lower=True), jnp.where(mask, y, 0))


def solve(kernel: Kernel, x: jax.Array, y: jax.Array, lam: float,
          mask: jax.Array | None = None, block: int = 256) -> jax.Array:
  """alpha of (K + lambda m I) alpha = y on rows x `[m, n]`."""
  return solve_gram(gram(kernel, x, x, block), y, lam, mask)


def predict(kernel: Kernel, x: jax.Array, alpha: jax.Array, x_test: jax.Array,
            block: int = 256) -> jax.Array:
  """sum_i alpha_i K(x_i, x_test) for every test row, in blocks."""
  return matvec(kernel, x_test, x, alpha, block)
