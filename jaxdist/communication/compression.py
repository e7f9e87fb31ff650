"""Compression operators for compressed gossip ([Lin22] Def. 4.4.1 and App. 13.3).

A compressor C maps one tensor x with d entries to a cheaper message. It is a delta-compressor
when E||C(x) - x||^2 <= (1 - delta) ||x||^2 for a constant delta in (0, 1] (Def. 4.4.1):

* `Identity()`: x; delta = 1; 32 d bits.
* `TopK(fraction, index_bits=None)`: the k = max(1, floor(a d)) largest-magnitude entries;
  delta = k/d; k (32 + ceil(log2 d)) bits: each value as fp32 and its index in ceil(log2 d) bits,
  or in 32 bits with `index_bits=32` (how the thesis counts them, 2 * 32 k).
* `RandomK(fraction, unbiased=False)`: k entries at positions drawn from a seed shared with the
  receiver, so only the values travel; delta = k/d; 32 k bits. The unbiased form scales them by
  d/k and is no delta-compressor.
* `Sign()` ("Sign+Norm"): (||x||_1 / d) sgn(x); its delta ||x||_1^2 / (d ||x||_2^2) depends on x;
  d + 32 bits.
* `QSGD(bits, unbiased=False)` with s = 2^(b-1) levels: ||x||_2 sgn(x) floor(s |x| / ||x||_2 + u)
  / s with u ~ U[0, 1]^d, unbiased; the biased form used by CHOCO divides it by
  tau = 1 + min(d/s^2, sqrt(d)/s) and has delta = 1/tau; b d + 32 bits.

Operators see one tensor, flattened; `Compressor.tree` applies one per leaf (per layer). Every
operator is jit- and vmap-able: k is static, computed from the shape. The randomness of qsgd and
random_k is a counter-based hash of (key, position) (`uniform`): one fused elementwise pass, where
jax.random's threefry costs a loop of its own per call on XLA:CPU (CHOCO qsgd on a convex
problem: 3x faster per epoch).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.errors import ArgumentError

PyTree = Any
FLOAT_BITS = 32  # one value on the wire (and a scale or a norm)
BITS_RANGE = (2, 16)
SMALL_K = 8  # up to this k, top-k is k passes of max (exact in every dtype, no sort)


class Compressor:
  """C(x) on one tensor, its message size and its delta; `tree` applies it per leaf."""

  unbiased: bool = False

  @property
  def is_contraction(self) -> bool:
    """Whether CHOCO can use it: a constant delta, or sign with its data-dependent one."""
    return not self.unbiased

  def __call__(self, x: jax.Array, rng: jax.Array) -> jax.Array:
    """C(x), of x's shape and dtype; deterministic operators ignore `rng`."""
    flat = x.reshape(x.size).astype(jnp.promote_types(x.dtype, jnp.float32))
    return self.compress(flat, rng).astype(x.dtype).reshape(x.shape)

  def compress(self, flat: jax.Array, rng: jax.Array) -> jax.Array:
    raise NotImplementedError

  def message_bits(self, size: int) -> int:
    """Bits sent for one tensor of `size` entries, values as fp32."""
    raise NotImplementedError

  def delta(self, size: int) -> float | None:
    """The constant delta of Def. 4.4.1 for a tensor of `size` entries; None where it depends on
    x (sign) or does not exist (the unbiased forms)."""
    raise NotImplementedError

  def tree(self, tree: PyTree, rng: jax.Array) -> PyTree:
    """C applied to every leaf, with a key folded from `rng` and the leaf's index."""
    leaves, treedef = jax.tree.flatten(tree)
    compressed = [self(leaf, self.leaf_key(rng, i)) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, compressed)

  def leaf_key(self, rng: jax.Array, index: int) -> jax.Array:
    """The key of leaf `index`: jax.random.fold_in; operators drawing through `uniform` hash
    the index into the key's data instead (no threefry call)."""
    if self.hashed:
      words = jax.random.key_data(rng).reshape(-1).astype(jnp.uint32)
      return jnp.stack([_mix32(words[0] ^ jnp.uint32(index * 0x9E3779B9 % 2**32)), words[-1]])
    return jax.random.fold_in(rng, index)

  hashed: bool = False  # draws its randomness through `uniform`

  def tree_bits(self, tree: PyTree) -> int:
    """Bits sent for a tree of arrays or ShapeDtypeStructs, one message per leaf."""
    return sum(self.message_bits(leaf.size) for leaf in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class Identity(Compressor):
  """No compression: exact gossip."""

  def __call__(self, x, rng):
    return x

  def message_bits(self, size):
    return FLOAT_BITS * size

  def delta(self, size):
    return 1.0


def _check_fraction(fraction: Any) -> None:
  if isinstance(fraction, bool) or not (isinstance(fraction, (int, float)) and
                                        0 < fraction <= 1):
    raise ArgumentError("fraction", f"{fraction!r} is not a fraction", "a number in (0, 1]")


def _num_kept(fraction: float, size: int) -> int:
  """k = max(1, floor(a d)), with a taken as written (0.29 of 100 is 29, not 28.999...)."""
  return min(size, max(1, math.floor(Fraction(str(float(fraction))) * size)))


def _mix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def uniform(rng: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
  """`size` draws of U[0, 1) on a 2^-24 grid, from a hash of the key's data and the position."""
  words = jax.random.key_data(rng).reshape(-1).astype(jnp.uint32)
  position = jnp.arange(size, dtype=jnp.uint32)
  h = _mix32(_mix32(position * jnp.uint32(0x9E3779B9) + words[0]) ^ words[-1])
  return (h >> 8).astype(dtype) * (2.0**-24)


def index_width(size: int) -> int:
  """Bits that name one of `size` positions: ceil(log2 size)."""
  return max(0, math.ceil(math.log2(size))) if size > 1 else 0


def _max_passes(magnitude: jax.Array, k: int) -> tuple[list[jax.Array], jax.Array]:
  """k passes of max: the positions of the k largest (ties to the lowest) and their mask."""
  position = jnp.arange(magnitude.size)
  kept, remaining, mask = [], magnitude, jnp.zeros(magnitude.shape, bool)
  for _ in range(k):
    i = jnp.min(jnp.where(remaining == jnp.max(remaining), position, magnitude.size))
    kept.append(i)
    mask = mask | (position == i)
    remaining = jnp.where(position == i, -jnp.inf, remaining)
  return kept, mask


def keep_top(flat: jax.Array, magnitude: jax.Array, k: int, scale: float = 1.0) -> jax.Array:
  """scale * flat at the k largest entries of `magnitude` (as `top_indices`), zero elsewhere.

  Small k selects with a mask (no scatter), so a training loop of small steps stays one
  compiled function on XLA:CPU (a loop holding a scatter never is; `jaxdist.core.cpu`).
  """
  if k <= SMALL_K:
    return jnp.where(_max_passes(magnitude, k)[1], scale * flat, 0.0).astype(flat.dtype)
  kept = top_indices(magnitude, k)
  return jnp.zeros_like(flat).at[kept].set(scale * flat[kept])


def top_indices(magnitude: jax.Array, k: int) -> jax.Array:
  """Indices of the k largest entries of a flat array of magnitudes.

  Small k: k passes of max, exact in any dtype (ties to the lowest position). Otherwise
  `lax.top_k`, whose float64 form is a full sort on XLA:CPU (about 25x slower than the float32
  TopK kernel; 29x at d = 200, k = 2): float64 magnitudes are preselected on their float32
  roundings (the k + max(k, 64) largest; rounding is monotone), then the k largest of those
  candidates are taken exactly. The indices are the float64 top-k unless more than max(k, 64)
  entries tie with the k-th largest within float32 rounding (relative 6e-8);
  then the tie is broken by position among the candidates.
  """
  if k <= SMALL_K:  # a max and a compare a pass: no sort, no (slow) variadic argmax reduce
    return jnp.stack(_max_passes(magnitude, k)[0])
  preselected = k + max(k, 64)
  if magnitude.dtype.itemsize <= 4 or preselected >= magnitude.size:
    return lax.top_k(magnitude, k)[1]
  _, candidates = lax.top_k(magnitude.astype(jnp.float32), preselected)
  _, best = lax.top_k(magnitude[candidates], k)
  return candidates[best]


@dataclasses.dataclass(frozen=True)
class TopK(Compressor):
  """The max(1, floor(fraction * d)) largest-magnitude entries; values and indices travel.

  Bits: k * (32 + ceil(log2 d)) per tensor of d entries, an index in ceil(log2 d) bits;
  `index_bits=32` counts 32 bits an index instead (the thesis's 2 * 32 k, Table 4.1).
  """

  fraction: float = 0.01
  index_bits: int | None = None

  def __post_init__(self):
    _check_fraction(self.fraction)
    if self.index_bits is not None and self.index_bits != 32:
      raise ArgumentError("index_bits", f"{self.index_bits!r}",
                          "None (ceil(log2 d) bits an index) or 32")

  def compress(self, flat, rng):
    return keep_top(flat, jnp.abs(flat), _num_kept(self.fraction, flat.size))

  def message_bits(self, size):
    index = index_width(size) if self.index_bits is None else self.index_bits
    return (FLOAT_BITS + index) * _num_kept(self.fraction, size)

  def delta(self, size):
    return _num_kept(self.fraction, size) / size


@dataclasses.dataclass(frozen=True)
class RandomK(Compressor):
  """k random entries at positions from a seed shared with the receiver; only values travel.
  `unbiased` scales them by d/k (then it is no delta-compressor)."""

  fraction: float = 0.01
  unbiased: bool = False
  hashed = True

  def __post_init__(self):
    _check_fraction(self.fraction)

  def compress(self, flat, rng):
    k = _num_kept(self.fraction, flat.size)
    scale = flat.size / k if self.unbiased else 1.0
    # k distinct positions, uniformly at random
    return keep_top(flat, uniform(rng, flat.size), k, scale)

  def message_bits(self, size):
    return FLOAT_BITS * _num_kept(self.fraction, size)

  def delta(self, size):
    return None if self.unbiased else _num_kept(self.fraction, size) / size


@dataclasses.dataclass(frozen=True)
class Sign(Compressor):
  """(||x||_1 / d) sgn(x): one bit per entry and one fp32 scale."""

  def compress(self, flat, rng):
    return jnp.mean(jnp.abs(flat)) * jnp.sign(flat)

  def message_bits(self, size):
    return size + FLOAT_BITS

  def delta(self, size):
    return None


@dataclasses.dataclass(frozen=True)
class QSGD(Compressor):
  """Stochastic rounding of |x| / ||x||_2 to 2^(bits-1) levels ([Lin22] App. 13.3); biased
  (scaled down by tau, as CHOCO needs it) unless `unbiased`."""

  bits: int = 4
  unbiased: bool = False
  hashed = True

  def __post_init__(self):
    low, high = BITS_RANGE
    if isinstance(self.bits, bool) or not (isinstance(self.bits, int) and
                                           low <= self.bits <= high):
      raise ArgumentError("bits", f"{self.bits!r} bits per entry", f"an integer in {low}..{high}")

  @property
  def levels(self) -> int:
    return 2**(self.bits - 1)

  def tau(self, size: int) -> float:
    """tau = 1 + min(d/s^2, sqrt(d)/s), which bounds E||Q(x)||^2 / ||x||^2."""
    return 1 + min(size / self.levels**2, math.sqrt(size) / self.levels)

  def compress(self, flat, rng):
    norm = jnp.linalg.norm(flat)
    safe_norm = jnp.where(norm > 0, norm, 1.0)  # the zero vector maps to 0
    u = uniform(rng, flat.size, flat.dtype)
    # float rounding can put |x| / ||x|| a little above 1; the message holds levels 0..s
    level = jnp.minimum(jnp.floor(self.levels * jnp.abs(flat) / safe_norm + u), self.levels)
    out = norm * jnp.where(flat >= 0, 1.0, -1.0) * level / self.levels
    return out if self.unbiased else out / self.tau(flat.size)

  def message_bits(self, size):
    return self.bits * size + FLOAT_BITS

  def delta(self, size):
    return None if self.unbiased else 1 / self.tau(size)
