"""ATOMO: unbiased atomic sparsification of gradients ([Sievert] §3.3, App. D; S0 L1070-1200).

Write a tensor as g = sum_i lambda_i a_i over unit-norm atoms a_i. ATOMO keeps atom i with
probability p_i and scales it by 1/p_i: g_hat = sum_i (t_i / p_i) lambda_i a_i, t_i ~ Bernoulli
(p_i), which is unbiased (Lemma 19) with E||g_hat||^2 = sum_i lambda_i^2 / p_i for orthonormal
atoms. The p minimising that variance at an expected budget of s atoms (Eq. 3.8, Thm. 23) is
Algorithm 2: p_i = s |lambda_i| / ||lambda||_1 when that is at most 1 ("s-balanced"); otherwise
the largest atom gets p = 1 and the rest share s - 1, recursively (`sampling_probabilities`:
the top ceil(s) atoms ranked by `lax.top_k`, since fewer than s are clipped, and cumulative sums
instead of the loop).

* `Atomo(budget, basis="entries")`: atoms are the standard basis (lambda = the entries).
* `Atomo(budget, basis="spectral")`: atoms are u_i v_i^T of the SVD of each layer as a matrix
  (S0 L1169-1181): a conv kernel [k, k, x, y] (flax's HWIO; [x, y, k, k] in PyTorch) becomes
  [xy/2, 2k^2] when xy is even, [xy, k^2] otherwise; vectors are [1, d]; other tensors
  [shape[0], rest].
* `LqQuantization(q)`: L_q(g)_i = ||g||_q sgn(g_i) Bernoulli(|g_i| / ||g||_q) (Thm. 10), ATOMO
  in the standard basis with s = ||g||_1 / ||g||_q and E||L_q(g)||^2 = ||g||_1 ||g||_q; q = 2 is
  1-bit QSGD (`one_bit_qsgd()`), q = inf TernGrad (`terngrad()`).
* `qsgd(bits)`: multi-level QSGD, `jaxdist.compression.QSGD(bits, unbiased=True)`.

Shapes are static under jit: the estimate is sent dense with zeros, and the bits are analytic,
for the expected message (pitfall 2): entry-wise 64 bits (value and index) per expected atom;
spectral 32 (rows + cols + 1) bits per expected atom; l_q 2 bits per entry (sign and nonzero)
plus the fp32 norm; multi-level QSGD b d + 32 (a sign and b - 1 level bits per entry and the
norm; no Elias coding, pitfall 7). Compressed messages cannot be summed (pitfall 4): `aggregate`
decodes every worker's message then all-reduces, or all-gathers the decoded messages, as a
parameter server that receives each of them (S0 L1111).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.communication.compression import FLOAT_BITS, QSGD, Compressor
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_at_least, check_choice

BASES = ("entries", "spectral")
AGGREGATIONS = ("decompress", "gather")


@functools.partial(jax.jit, static_argnums=1)
def sampling_probabilities(magnitudes: jax.Array, budget: float) -> tuple[jax.Array, jax.Array]:
  """Algorithm 2 (S0 L2428-2445): the variance-optimal p at an expected budget of s atoms.

  Args:
    magnitudes: |lambda|, one per atom (any order).
    budget: s > 0, the expected number of atoms kept.

  Returns:
    (p, lambda_i / p_i for the atoms with p_i > 0 as a magnitude): p_i = 1 for the n_s largest
    atoms and |lambda_i| (s - n_s) / sum_{j > n_s} |lambda_j| for the rest, n_s the first count
    that makes every p <= 1; atoms with lambda_i = 0 get p_i = 0. The scale of the second output,
    sum_{j > n_s} |lambda_j| / (s - n_s), is computed without dividing by a tiny p (pitfall 3).
  """
  a = jnp.abs(magnitudes).reshape(-1)
  # fewer than s atoms are clipped to 1, so only the top ceil(s) need ranking (lax.top_k)
  k = min(a.size, math.ceil(budget))
  top, top_index = lax.top_k(a, k)
  total = jnp.sum(a)
  tails = total - jnp.concatenate([jnp.zeros(1, a.dtype), jnp.cumsum(top)[:-1]])
  left = budget - jnp.arange(k, dtype=a.dtype)  # s - i: the budget left at rank i
  balanced = top * left <= tails
  clipped = jnp.where(jnp.any(balanced), jnp.argmax(balanced), k)  # n_s
  tail = jnp.where(clipped > 0, total - jnp.cumsum(top)[jnp.maximum(clipped - 1, 0)], total)
  tail = jnp.maximum(tail, 0.0)
  rest = jnp.maximum(budget - clipped, 0.0)
  safe_tail = jnp.where(tail > 0, tail, 1.0)
  is_top = jnp.zeros(a.shape, bool).at[top_index].set(jnp.arange(k) < clipped)
  p = jnp.where(is_top, 1.0, jnp.where(tail > 0, a * rest / safe_tail, 0.0))
  p = jnp.where(a > 0, jnp.minimum(p, 1.0), 0.0)
  scale = jnp.where(is_top, a, jnp.where(rest > 0, tail / jnp.maximum(rest, 1e-30), 0.0))
  return p, scale


def _sample(coefficients: jax.Array, budget: float, rng: jax.Array) -> jax.Array:
  """sum_i (t_i / p_i) lambda_i as coefficients: lambda_i / p_i where kept, else 0."""
  p, scale = sampling_probabilities(coefficients, budget)
  kept = jax.random.uniform(rng, coefficients.shape, coefficients.dtype) < p
  return jnp.where(kept, jnp.sign(coefficients) * scale, 0.0)


def spectral_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """The matrix a layer's gradient is taken as (S0 L1171): see the module docstring."""
  if len(shape) <= 1:
    return 1, max(1, math.prod(shape))
  if len(shape) == 4:
    k1, k2, x, y = shape
    if (x * y) % 2 == 0:
      return x * y // 2, 2 * k1 * k2
    return x * y, k1 * k2
  return shape[0], math.prod(shape[1:])


def _to_matrix(x: jax.Array) -> jax.Array:
  rows, cols = spectral_matrix_shape(x.shape)
  if x.ndim == 4:  # flax HWIO -> [x, y, k, k] as the thesis's PyTorch layout
    x = jnp.transpose(x, (2, 3, 0, 1))
  return x.reshape(rows, cols)


def _from_matrix(m: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  if len(shape) == 4:
    k1, k2, x, y = shape
    return jnp.transpose(m.reshape(x, y, k1, k2), (2, 3, 0, 1))
  return m.reshape(shape)


@dataclasses.dataclass(frozen=True)
class Atomo(Compressor):
  """ATOMO (Alg. 2) with an expected `budget` of atoms per tensor, entry-wise or spectral.

  Attributes:
    budget: s, expected atoms kept per tensor; s >= the number of atoms sends the tensor as is.
    basis: "entries" (the standard basis) or "spectral" (SVD per layer).
  """

  budget: float = 1.0
  basis: str = "entries"
  unbiased: bool = dataclasses.field(default=True, init=False)  # always: not a contraction

  def __post_init__(self):
    check_at_least("budget", self.budget, 1e-6)
    check_choice("basis", self.basis, BASES)

  def num_atoms(self, shape: tuple[int, ...]) -> int:
    if self.basis == "entries":
      return max(1, math.prod(shape))
    return min(spectral_matrix_shape(shape))

  def __call__(self, x: jax.Array, rng: jax.Array) -> jax.Array:
    if self.budget >= self.num_atoms(x.shape):  # every p_i = 1: the tensor itself
      return x
    work = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if self.basis == "entries":
      out = _sample(work.reshape(-1), self.budget, rng).reshape(x.shape)
    else:
      u, sigma, vt = jnp.linalg.svd(_to_matrix(work), full_matrices=False)
      kept = _sample(sigma, self.budget, rng)
      out = _from_matrix((u * kept[None, :]) @ vt, x.shape)
    return out.astype(x.dtype)

  def shape_bits(self, shape: tuple[int, ...]) -> float:
    """Bits of the expected message for a tensor of `shape`."""
    atoms = min(self.budget, self.num_atoms(shape))
    if self.basis == "entries":
      return (2 * FLOAT_BITS * atoms if atoms < math.prod(shape) else
              FLOAT_BITS * math.prod(shape))
    rows, cols = spectral_matrix_shape(shape)
    if self.budget >= min(rows, cols):
      return FLOAT_BITS * rows * cols
    return FLOAT_BITS * atoms * (rows + cols + 1)

  def message_bits(self, size):
    return self.shape_bits((size,))

  def tree_bits(self, tree):
    return sum(self.shape_bits(tuple(leaf.shape)) for leaf in jax.tree.leaves(tree))

  def delta(self, size):
    return None


@dataclasses.dataclass(frozen=True)
class LqQuantization(Compressor):
  """l_q quantization (Thm. 10): ||g||_q sgn(g_i) Bernoulli(|g_i| / ||g||_q); unbiased.

  Attributes:
    q: the norm, >= 1 or math.inf (2: 1-bit QSGD, inf: TernGrad).
  """

  q: float = 2.0
  unbiased: bool = dataclasses.field(default=True, init=False)  # always: not a contraction

  def __post_init__(self):
    if not (self.q == math.inf or (isinstance(self.q, (int, float)) and self.q >= 1)):
      raise ArgumentError("q", f"{self.q!r}", "a number >= 1, or math.inf")

  def compress(self, flat, rng):
    norm = jnp.linalg.norm(flat, ord=self.q)
    safe = jnp.where(norm > 0, norm, 1.0)
    kept = jax.random.uniform(rng, flat.shape, flat.dtype) < jnp.abs(flat) / safe
    return jnp.where(kept, norm * jnp.sign(flat), 0.0)

  def message_bits(self, size):
    return 2 * size + FLOAT_BITS

  def delta(self, size):
    return None


def one_bit_qsgd() -> LqQuantization:
  """1-bit QSGD: l_2 quantization."""
  return LqQuantization(2.0)


def terngrad() -> LqQuantization:
  """TernGrad: l_inf quantization."""
  return LqQuantization(math.inf)


def qsgd(bits: int) -> QSGD:
  """Multi-level QSGD with 2^(bits-1) levels, unbiased; b d + 32 bits per tensor."""
  return QSGD(bits, unbiased=True)


def aggregate(compressor: Compressor, grads, rng: jax.Array, how: str = "decompress"):
  """The mean over the workers of every worker's compressed gradient, from inside a step.

  Args:
    compressor: any `jaxdist.compression.Compressor`, applied per tensor.
    grads: this worker's gradient.
    rng: this worker's key (different on every worker).
    how: "decompress" (decode, then all-reduce the dense estimates) or "gather" (all-gather
      the decoded messages and average them on every worker, as a parameter server does).
  """
  check_choice("how", how, AGGREGATIONS)
  estimate = compressor.tree(grads, rng)
  if how == "decompress":
    return collectives.mean(estimate)
  return jax.tree.map(lambda x: jnp.mean(x, axis=0), collectives.gather(estimate))


def check_aggregation(how: str) -> None:
  check_choice("aggregation", how, AGGREGATIONS)
