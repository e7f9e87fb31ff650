"""Sign-compressed local SGD: signSGD (Alg. 9) and EF-signSGD (Alg. 10) ([Lin22] §2.4, App. 11.3).

* The local step moves by lr * sign(direction of the local optimizer): `sign_steps(lr)` after
  the optimizer turns its update -lr * d into -lr * sign(d).
* At each averaging every worker sends s = sign(delta) and p = ||delta||_1 / d per tensor,
  delta = anchor - x_k (+ e_k with error feedback); the new model is anchor - mean_k(s p), and
  the error memory keeps e_k = delta - s p (Alg. 10 line 13 misprints it as e - s p). d bits
  plus one fp32 per tensor.
* `majority_vote=True` (Table 11.10's other row, Bernstein et al.'s signSGD): the new model is
  anchor - mean_k(p_k) * sign(sum_k s_k), the sign the majority of workers sent (0 on a tie),
  scaled by the mean scale; the reply is again d bits and one float.
* Without the sign steps, `SignAveraging(error_feedback=True)` after every step is the
  centralized EF-signSGD baseline (Karimireddy et al. 2019 with K workers, [Lin22] Table 4.1's
  "EF-signSGD centralized"): each worker compresses its own update plus its error.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxdist.algorithms.local_sgd.averaging import Averaging
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class

PyTree = Any


def sign_steps(learning_rate: optax.Schedule) -> optax.GradientTransformation:
  """After an optimizer: its update u = -lr * d becomes lr_t * sign(u) = -lr_t * sign(d)."""

  def init(params):
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    rate = learning_rate(state.count)
    signed = jax.tree.map(lambda u: (rate * jnp.sign(u)).astype(u.dtype), updates)
    return signed, optax.ScaleByScheduleState(count=state.count + 1)

  return optax.GradientTransformation(init, update)


def sign_compress(delta: PyTree) -> PyTree:
  """Per tensor: sign(delta) * ||delta||_1 / d (Alg. 9 line 12)."""
  return jax.tree.map(lambda x: jnp.sign(x) * jnp.mean(jnp.abs(x)), delta)


def bits_per_sign_message(params: PyTree) -> int:
  """Bits in one sign-compressed message: a sign per entry and one fp32 scale per tensor."""
  return sum(x.size + 32 for x in jax.tree.leaves(params))


@state_class
class SignState:
  anchor: PyTree = shared()  # the model after the last global averaging
  error: PyTree = per_worker()  # EF-signSGD's memory; None without error feedback


class SignAveraging(Averaging):
  """anchor - mean_k(sign(delta_k) ||delta_k||_1 / d), with error feedback if asked (Alg. 10)."""

  def __init__(self, error_feedback: bool = False, majority_vote: bool = False):
    self.error_feedback, self.majority_vote = error_feedback, majority_vote

  def init(self, params):
    error = otu.tree_zeros_like(params) if self.error_feedback else None
    return SignState(params, error)

  def __call__(self, params, state, learning_rate):
    delta = otu.tree_sub(state.anchor, params)
    if self.error_feedback:
      delta = otu.tree_add(delta, state.error)
    sent = sign_compress(delta)
    params = otu.tree_sub(state.anchor, self._combine(delta, sent))
    error = otu.tree_sub(delta, sent) if self.error_feedback else None
    return params, SignState(params, error)

  def _combine(self, delta, sent):
    if not self.majority_vote:
      return collectives.mean(sent)
    signs, scales = collectives.mean((jax.tree.map(jnp.sign, delta),
                                      jax.tree.map(lambda x: jnp.mean(jnp.abs(x)), delta)))
    return jax.tree.map(lambda s, p: jnp.sign(s) * p, signs, scales)

  def message_bits(self, params):
    return bits_per_sign_message(params)
