"""Gradients over a batch whose size changes every update, without recompiling (S0 §2.6 pitfall 6).

The batch is cut into micro-batches of a fixed size m. `lax.scan` runs over a fixed number of
them (the capacity). A full micro-batch is the loss function's own batch: its gradient is
`jax.grad(loss_fn)` there, and its `model_state` (BatchNorm statistics) is threaded on to the next
one. The last, partial micro-batch is evaluated example by example and masked (its model_state is
left as it was); the ones past the batch are skipped. Micro-batch j enters with weight
valid_j / count, so a batch of B examples gives the gradient of the mean loss over exactly those
B examples, whatever B is, with one compiled program — and a batch that is a single full
micro-batch gives `jax.grad(loss_fn)` itself, to the bit.

Among workers (`Workers.map`) the branches are taken on counts they all share, so that vmap keeps
them branches: a micro-batch past every worker's examples is skipped, and one that is partial on
any worker is evaluated example by example on all of them.

The loss is the library's contract, `loss_fn(params, model_state, batch, rng) ->
(loss, (model_state, metrics))`, a mean of per-example losses. With BatchNorm, keep the batches
multiples of m: a partial micro-batch normalises each of its examples on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax.tree_utils as otu
from jax import lax

PyTree = Any


def masked_mean_loss(loss_fn: Callable, params: PyTree, model_state: PyTree, batch: PyTree,
                     valid: jax.Array, rng: jax.Array) -> jax.Array:
  """The mean loss over the first `valid` examples of `batch`, each evaluated on its own."""
  def one(example):
    loss, _ = loss_fn(params, model_state, jax.tree.map(lambda x: x[None], example), rng)
    return loss

  losses = jax.vmap(one)(batch)
  mask = jnp.arange(losses.shape[0]) < valid
  return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(valid, 1).astype(losses.dtype)


def micro_batch_gradient(loss_fn: Callable, params: PyTree, model_state: PyTree, batch: PyTree,
                         valid: jax.Array, rng: jax.Array, *, full: bool
                         ) -> tuple[PyTree, jax.Array, PyTree]:
  """(gradient, loss, model_state) of the mean loss over the first `valid` examples."""
  if full:
    (loss, (model_state, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, model_state, batch, rng)
    return grads, loss, model_state
  loss, grads = jax.value_and_grad(masked_mean_loss, argnums=1)(
      loss_fn, params, model_state, batch, valid, rng)
  return grads, loss, model_state


def mean_gradient(loss_fn: Callable, params: PyTree, model_state: PyTree,
                  examples: Callable[[jax.Array], PyTree], count: jax.Array, *, micro_batch: int,
                  num_micro: int, rng: jax.Array, always_full: bool = False,
                  split: tuple[jax.Array, jax.Array] | None = None
                  ) -> tuple[PyTree, jax.Array, PyTree]:
  """(gradient, loss, model_state) of the mean loss over the first `count` examples.

  Args:
    loss_fn: the library's loss contract; a mean over the examples of its batch.
    params: the model.
    model_state: threaded through the full micro-batches.
    examples: `examples(positions)` gives the examples at `micro_batch` positions (int32).
    count: how many examples (dynamic, at most `micro_batch * num_micro`).
    micro_batch: examples per micro-batch (static).
    num_micro: micro-batches in the scan (static): the capacity.
    rng: a key; micro-batch j uses `fold_in(rng, j)`.
    always_full: the caller knows `count == micro_batch * num_micro` (a constant batch that
      fills its micro-batches): no masking or skipping is compiled.
    split: inside `Workers.map`, (the largest, the smallest nonzero) count over the workers,
      values every worker shares (`split_counts`): the branches below then stay branches under
      vmap instead of selects that compute every path. None: `count` itself (one worker).
  """
  offsets = jnp.arange(micro_batch, dtype=jnp.int32)
  total = jnp.maximum(count, 1).astype(jnp.float32)
  largest, smallest = (count, count) if split is None else split

  def accumulate(carry, j):
    grads, loss, model_state = carry
    valid = jnp.clip(count - j * micro_batch, 0, micro_batch)
    args = (params, model_state, examples(j * micro_batch + offsets), valid,
            jax.random.fold_in(rng, j))
    if always_full:
      g, value, model_state = micro_batch_gradient(loss_fn, *args, full=True)
    else:  # full on every worker that has examples here, or evaluated example by example
      g, value, model_state = lax.cond(
          (j + 1) * micro_batch <= smallest,
          lambda *a: micro_batch_gradient(loss_fn, *a, full=True),
          lambda *a: micro_batch_gradient(loss_fn, *a, full=False), *args)
    weight = valid.astype(jnp.float32) / total
    grads = jax.tree.map(lambda s, x: s + weight.astype(x.dtype) * x, grads, g)
    return grads, loss + weight * value, model_state

  def body(carry, j):
    if always_full:
      return accumulate(carry, j), None
    # past every worker's examples: skipped
    return lax.cond(j * micro_batch < largest, accumulate, lambda c, _: c, carry, j), None

  zero = (otu.tree_zeros_like(params), jnp.zeros((), jnp.float32), model_state)
  (grads, loss, model_state), _ = lax.scan(body, zero,
                                           jnp.arange(num_micro, dtype=jnp.int32))
  return grads, loss, model_state


def split_counts(total: jax.Array, share: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(largest, smallest nonzero) count when `total` examples go in blocks of `share` to the
  workers in order (the last active worker holds the rest)."""
  share = jnp.maximum(share, 1)
  active = -(-total // share)
  return jnp.minimum(share, total), total - (active - 1) * share
