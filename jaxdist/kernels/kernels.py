"""Kernel functions of [You20] Table 2.1, evaluated in blocks.

    linear      K(x, z) = x . z
    polynomial  K(x, z) = (gamma x . z + coef0) ** degree
    gaussian    K(x, z) = exp(-gamma ||x - z||^2)     (ch. 3 writes gamma = 1 / (2 sigma^2))
    sigmoid     K(x, z) = tanh(gamma x . z + coef0)

The same definitions as scikit-learn's `linear`, `poly`, `rbf` and `sigmoid`. The solvers never
hold an m x m matrix of the whole data: SMO and Asy-GCD ask for a column at a time
(`column`), predictions and the maintained gradients go through `matvec`, which computes
K(a, b) v one block of rows of `a` at a time. Squared distances are summed coordinate-wise (not
as ||a||^2 + ||b||^2 - 2 a.b), so a row's kernel values do not depend on the block it sits in.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.errors import check_at_least, check_choice

KERNELS = ("linear", "polynomial", "gaussian", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Kernel:
  """A kernel of Table 2.1 with its parameters (hashable: a static argument of the solvers)."""

  name: str = "gaussian"
  gamma: float = 1.0
  coef0: float = 0.0
  degree: int = 3

  def __post_init__(self):
    check_choice("kernel", self.name, KERNELS)
    check_at_least("gamma", self.gamma, 0)
    check_at_least("degree", self.degree, 1, integer=True)

  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """K(a_i, b_j) for rows a `[r, n]` and b `[c, n]`: an `[r, c]` block."""
    if self.name == "gaussian":
      return from_squared_distances(jnp.sum((a[:, None, :] - b[None, :, :])**2, axis=-1),
                                    self.gamma)
    dot = jnp.sum(a[:, None, :] * b[None, :, :], axis=-1)
    if self.name == "linear":
      return dot
    if self.name == "polynomial":
      return (self.gamma * dot + self.coef0)**self.degree
    return jnp.tanh(self.gamma * dot + self.coef0)

  def diagonal(self, a: jax.Array) -> jax.Array:
    """K(a_i, a_i) for every row of a."""
    return jax.vmap(lambda row: self(row[None], row[None])[0, 0])(a)


def from_squared_distances(squared: jax.Array, gamma: jax.Array | float) -> jax.Array:
  """The Gaussian kernel exp(-gamma d) of squared distances d (gamma may be traced: a grid)."""
  return jnp.exp(-gamma * squared)


def gaussian(sigma: float) -> Kernel:
  """ch. 3's Gaussian kernel exp(-||x - z||^2 / (2 sigma^2))."""
  check_at_least("sigma", sigma, 1e-12)
  return Kernel("gaussian", gamma=1.0 / (2.0 * sigma**2))


def column(kernel: Kernel, x: jax.Array, point: jax.Array) -> jax.Array:
  """K(x_i, point) for every row of x: one kernel column, O(m n)."""
  return kernel(x, point[None])[:, 0]


def matvec(kernel: Kernel, a: jax.Array, b: jax.Array, v: jax.Array, block: int = 256
           ) -> jax.Array:
  """K(a, b) @ v, computed `block` rows of a at a time (memory block * len(b) * n)."""
  rows = a.shape[0]
  block = max(1, min(block, rows))
  blocks = math.ceil(rows / block)
  padded = jnp.pad(a, ((0, blocks * block - rows), (0, 0)))
  out = lax.map(lambda chunk: kernel(chunk, b) @ v, padded.reshape(blocks, block, a.shape[1]))
  return out.reshape((blocks * block,) + v.shape[1:])[:rows]


def gram(kernel: Kernel, a: jax.Array, b: jax.Array, block: int = 256) -> jax.Array:
  """The `[len(a), len(b)]` kernel matrix, built `block` rows at a time (for the direct solves
  of ch. 3, which need the local matrix)."""
  rows = a.shape[0]
  block = max(1, min(block, rows))
  blocks = math.ceil(rows / block)
  padded = jnp.pad(a, ((0, blocks * block - rows), (0, 0)))
  out = lax.map(lambda chunk: kernel(chunk, b), padded.reshape(blocks, block, a.shape[1]))
  return out.reshape(blocks * block, b.shape[0])[:rows]


def squared_distances(a: jax.Array, b: jax.Array, block: int = 256) -> jax.Array:
  """||a_i - b_j||^2, blocked, summed coordinate-wise as the Gaussian kernel sums them."""
  return gram(_SQUARED, a, b, block)


class _SquaredDistance(Kernel):
  def __call__(self, a, b):
    return jnp.sum((a[:, None, :] - b[None, :, :])**2, axis=-1)


_SQUARED = _SquaredDistance("linear")


def block_diagonal_error(kernel: Kernel, x: jax.Array, assignment: jax.Array,
                         block: int = 256) -> jax.Array:
  """|‖K‖_F − ‖K̃‖_F| / ‖K‖_F of the block-diagonal K̃ that a partition keeps (Table 2.19).

  Sums of squared kernel values, a block of rows at a time; `assignment[i]` is row i's part.
  """
  rows = x.shape[0]
  block = max(1, min(block, rows))
  blocks = math.ceil(rows / block)
  pad = blocks * block - rows
  xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(blocks, block, x.shape[1])
  parts = jnp.pad(assignment, (0, pad), constant_values=-1).reshape(blocks, block)

  def sums(args):
    chunk, part = args
    squared = kernel(chunk, x)**2 * (part[:, None] >= 0)
    same = part[:, None] == assignment[None, :]
    return jnp.sum(squared), jnp.sum(jnp.where(same, squared, 0.0))

  total, kept = lax.map(sums, (xs, parts))
  full, diagonal = jnp.sqrt(jnp.sum(total)), jnp.sqrt(jnp.sum(kept))
  return jnp.abs(full - diagonal) / full

GAUSSIAN = Kernel()  # the default of the methods: exp(-||x - z||^2)
