"""Coordinate (model) parallelism ([S3 L406-549]): every worker holds all the data and computes
only the gradient coordinates of its block C_p; the server concatenates the blocks into the full
gradient and steps. Related to block coordinate descent, which updates one block at a time.

`block_gradients` computes the P blocks in one vmapped call (each block by differentiating the
loss in its own coordinates only) and concatenates them; `coordinate_parallel_gd` steps with them;
`block_coordinate_descent` is cyclic BCD on least squares with each block's own step 1/L_p.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.errors import ArgumentError, check_at_least


def _blocks(dim: int, num_blocks: int) -> jax.Array:
  check_at_least("num_blocks", num_blocks, 1, integer=True)
  if dim % num_blocks:
    raise ArgumentError("num_blocks", f"{num_blocks} does not divide the dimension {dim}",
                        f"divisors of {dim}")
  return jnp.arange(dim).reshape(num_blocks, dim // num_blocks)


def block_gradients(loss_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                    num_blocks: int) -> jax.Array:
  """The gradient of `loss_fn` at the flat `x`, as P coordinate blocks computed apart (one per
  worker, vmapped) and concatenated."""
  blocks = _blocks(x.shape[0], num_blocks)

  def block(coordinates):
    return jax.grad(lambda part: loss_fn(x.at[coordinates].set(part)))(x[coordinates])

  return jax.vmap(block)(blocks).reshape(-1)


def coordinate_parallel_gd(loss_fn: Callable[[jax.Array], jax.Array], x0: jax.Array, *,
                           learning_rate: float, num_blocks: int, num_steps: int) -> jax.Array:
  """Gradient descent whose gradient is the server's concatenation of the workers' blocks."""
  check_at_least("num_steps", num_steps, 0, integer=True)
  step = lambda x, _: (x - learning_rate * block_gradients(loss_fn, x, num_blocks), None)
  return lax.scan(step, jnp.asarray(x0), None, length=num_steps)[0]


@functools.partial(jax.jit, static_argnames=("num_blocks", "num_sweeps"))  # once per shape
def block_coordinate_descent(a: jax.Array, b: jax.Array, x0: jax.Array, *, num_blocks: int,
                             num_sweeps: int) -> jax.Array:
  """Cyclic BCD on f(x) = ||a x - b||^2 / (2n): block p steps by 1/L_p, L_p the largest
  eigenvalue of a_p^T a_p / n, in the order 0, 1, ..., P-1 for `num_sweeps` sweeps."""
  check_at_least("num_sweeps", num_sweeps, 0, integer=True)
  blocks = _blocks(a.shape[1], num_blocks)
  n = a.shape[0]
  columns = jnp.moveaxis(a[:, blocks], 1, 0)  # [P, n, d/P]
  lipschitz = jax.vmap(lambda c: jnp.linalg.eigvalsh(c.T @ c / n)[-1])(columns)

  def block_step(x, p):
    residual = a @ x - b
    grad = columns[p].T @ residual / n
    return x.at[blocks[p]].add(-grad / lipschitz[p]), None

  order = jnp.tile(jnp.arange(num_blocks), num_sweeps)
  return lax.scan(block_step, jnp.asarray(x0), order)[0]
