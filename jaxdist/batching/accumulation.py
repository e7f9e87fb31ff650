"""Gradients over a batch whose size changes every update, without recompiling (S0 §2.6 pitfall 6).

The batch is cut into micro-batches of a fixed size m. `lax.scan` runs over a fixed number of
them (the capacity); the ones past the batch are skipped (`lax.cond`) and the last, partial one is
masked example by example. Losses and gradients are summed and divided by the true example
count, never by the padded one, so a batch of B examples gives the gradient of the mean loss over
exactly those B examples, whatever B is, with one compiled program.

The loss is the library's contract, `loss_fn(params, model_state, batch, rng) -> (loss, aux)`,
evaluated here on one example at a time (vmapped), so it must be a mean of per-example losses;
`model_state` is passed through unchanged (no BatchNorm statistics under accumulation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax.tree_utils as otu
from jax import lax

PyTree = Any


def masked_loss_sum(loss_fn: Callable, params: PyTree, model_state: PyTree, batch: PyTree,
                    mask: jax.Array, rng: jax.Array) -> jax.Array:
  """sum_i mask_i loss(example_i): the loss of every example of `batch` on its own."""
  def one(example):
    loss, _ = loss_fn(params, model_state, jax.tree.map(lambda x: x[None], example), rng)
    return loss

  losses = jax.vmap(one)(batch)
  return jnp.sum(jnp.where(mask, losses, 0.0))


def gradient_sum(loss_fn: Callable, params: PyTree, model_state: PyTree,
                 examples: Callable[[jax.Array], PyTree], count: jax.Array, *, micro_batch: int,
                 num_micro: int, rng: jax.Array) -> tuple[PyTree, jax.Array]:
  """(sum of the per-example gradients, sum of the losses) over the first `count` examples.

  Args:
    loss_fn: the library's loss contract; a mean over the examples of its batch.
    params: the model.
    model_state: passed through unchanged.
    examples: `examples(positions)` gives the examples at `micro_batch` positions (int32).
    count: how many examples (dynamic, at most `micro_batch * num_micro`).
    micro_batch: examples per micro-batch (static).
    num_micro: micro-batches in the scan (static): the capacity.
    rng: a key; micro-batch j uses `fold_in(rng, j)`.
  """
  grad_fn = jax.value_and_grad(masked_loss_sum, argnums=1)
  offsets = jnp.arange(micro_batch, dtype=jnp.int32)

  def body(carry, j):
    def compute(carry):
      grads, loss = carry
      positions = j * micro_batch + offsets
      value, g = grad_fn(loss_fn, params, model_state, examples(positions), positions < count,
                         jax.random.fold_in(rng, j))
      return otu.tree_add(grads, g), loss + value

    return lax.cond(j * micro_batch < count, compute, lambda c: c, carry), None

  zero = (otu.tree_zeros_like(params), jnp.zeros((), jnp.float32))
  (grads, loss), _ = lax.scan(body, zero, jnp.arange(num_micro, dtype=jnp.int32))
  return grads, loss


def mean_gradient(loss_fn: Callable, params: PyTree, model_state: PyTree,
                  examples: Callable[[jax.Array], PyTree], count: jax.Array, *, micro_batch: int,
                  num_micro: int, rng: jax.Array) -> tuple[PyTree, jax.Array]:
  """(gradient, loss) of the mean loss over the first `count` examples: sums over the true count."""
  grads, loss = gradient_sum(loss_fn, params, model_state, examples, count,
                             micro_batch=micro_batch, num_micro=num_micro, rng=rng)
  denominator = jnp.maximum(count, 1).astype(jnp.float32)
  return otu.tree_scale(1 / denominator, grads), loss / denominator
