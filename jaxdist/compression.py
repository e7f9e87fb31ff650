"""Compression operators for CHOCO-SGD ([Lin22] Def. 4.4.1 and App. 13.3).

A compressor C maps one tensor x with d entries to a cheaper message. It is a delta-compressor
when E||C(x) - x||^2 <= (1 - delta) ||x||^2 for a constant delta in (0, 1] (Def. 4.4.1):

* identity: x; delta = 1; 32 d bits.
* top_k: the k = max(1, floor(a d)) largest-magnitude entries; delta = k/d; 64 k bits (values and
  indices).
* random_k: k entries at positions drawn from a seed shared with the receiver, so only the values
  travel; delta = k/d; 32 k bits. The unbiased form scales them by d/k and is no delta-compressor.
* sign ("Sign+Norm"): (||x||_1 / d) sgn(x); its delta ||x||_1^2 / (d ||x||_2^2) depends on x;
  d + 32 bits.
* qsgd with b bits and s = 2^(b-1) levels: ||x||_2 sgn(x) floor(s |x| / ||x||_2 + u) / s with
  u ~ U[0, 1]^d, unbiased; the biased form used by CHOCO divides it by
  tau = 1 + min(d/s^2, sqrt(d)/s) and has delta = 1/tau; b d + 32 bits.

Operators see one tensor, flattened; `Compressor.tree` applies one per leaf (per layer). Every
operator is jit- and vmap-able: k is static, computed from the shape.
"""

import dataclasses
import math
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxdist.errors import ConfigError

PyTree = Any
COMPRESSORS = ("identity", "top_k", "random_k", "sign", "qsgd")
UNBIASED_FORMS = ("random_k", "qsgd")
FLOAT_BITS = 32  # one value or one index on the wire
BITS_RANGE = (2, 16)


@dataclasses.dataclass(frozen=True)
class Compressor:
  """One of `COMPRESSORS`; `fraction` a is for top_k and random_k, `bits` b for qsgd, and
  `unbiased` picks the unbiased form of random_k or qsgd."""

  name: str
  fraction: float = 0.01
  bits: int = 4
  unbiased: bool = False

  def __post_init__(self):
    if self.name not in COMPRESSORS:
      raise ConfigError("algo.compressor", f"unknown compressor {self.name!r}", COMPRESSORS)
    if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
      raise ConfigError("algo.compress_fraction", f"{self.fraction!r} is not a fraction",
                        "a number in (0, 1]")
    low, high = BITS_RANGE
    if not (isinstance(self.bits, int) and low <= self.bits <= high):
      raise ConfigError("algo.compress_bits", f"{self.bits!r} bits per entry",
                        f"an integer in {low}..{high}")
    if self.unbiased and self.name not in UNBIASED_FORMS:
      raise ConfigError("algo.compress_unbiased", f"{self.name} has no unbiased form",
                        f"False unless algo.compressor is one of {UNBIASED_FORMS}")

  @property
  def is_contraction(self) -> bool:
    """Whether CHOCO can use it: a constant delta, or sign with its data-dependent one."""
    return not self.unbiased

  def __call__(self, x: jax.Array, rng: jax.Array) -> jax.Array:
    """C(x), of x's shape and dtype; deterministic operators ignore `rng`."""
    if self.name == "identity":
      return x
    d = x.size
    flat = x.reshape(d).astype(jnp.promote_types(x.dtype, jnp.float32))
    if self.name == "top_k":
      _, kept = lax.top_k(jnp.abs(flat), self._num_kept(d))
      out = jnp.zeros_like(flat).at[kept].set(flat[kept])
    elif self.name == "random_k":
      kept = jax.random.choice(rng, d, (self._num_kept(d),), replace=False)
      scale = d / self._num_kept(d) if self.unbiased else 1.0
      out = jnp.zeros_like(flat).at[kept].set(scale * flat[kept])
    elif self.name == "sign":
      out = jnp.mean(jnp.abs(flat)) * jnp.sign(flat)
    else:
      out = self._qsgd(flat, rng)
    return out.astype(x.dtype).reshape(x.shape)

  def _qsgd(self, flat: jax.Array, rng: jax.Array) -> jax.Array:
    """Stochastic rounding of |x| / ||x||_2 to s levels ([Lin22] App. 13.3)."""
    levels = self._levels()
    norm = jnp.linalg.norm(flat)
    safe_norm = jnp.where(norm > 0, norm, 1.0)  # the zero vector maps to 0
    u = jax.random.uniform(rng, flat.shape, flat.dtype)
    # float rounding can put |x| / ||x|| a little above 1; the message holds levels 0..s
    level = jnp.minimum(jnp.floor(levels * jnp.abs(flat) / safe_norm + u), levels)
    out = norm * jnp.where(flat >= 0, 1.0, -1.0) * level / levels
    return out if self.unbiased else out / self._qsgd_tau(flat.size)

  def message_bits(self, size: int) -> int:
    """Bits sent for one tensor of `size` entries, values as fp32."""
    if self.name == "identity":
      return FLOAT_BITS * size
    if self.name == "top_k":
      return 2 * FLOAT_BITS * self._num_kept(size)
    if self.name == "random_k":
      return FLOAT_BITS * self._num_kept(size)
    if self.name == "sign":
      return size + FLOAT_BITS
    return self.bits * size + FLOAT_BITS

  def delta(self, size: int) -> float | None:
    """The constant delta of Def. 4.4.1 for a tensor of `size` entries; None for sign (its delta
    depends on x) and for the unbiased forms."""
    if self.unbiased or self.name == "sign":
      return None
    if self.name == "identity":
      return 1.0
    if self.name == "qsgd":
      return 1 / self._qsgd_tau(size)
    return self._num_kept(size) / size

  def tree(self, tree: PyTree, rng: jax.Array) -> PyTree:
    """C applied to every leaf, with a key folded from `rng` and the leaf's index."""
    leaves, treedef = jax.tree.flatten(tree)
    compressed = [self(leaf, jax.random.fold_in(rng, i)) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, compressed)

  def tree_bits(self, tree: PyTree) -> int:
    """Bits sent for a tree of arrays or ShapeDtypeStructs, one message per leaf."""
    return sum(self.message_bits(leaf.size) for leaf in jax.tree.leaves(tree))

  def _num_kept(self, size: int) -> int:
    """k = max(1, floor(a d)), with a taken as written (0.29 of 100 is 29, not 28.999...)."""
    return min(size, max(1, math.floor(Fraction(str(float(self.fraction))) * size)))

  def _levels(self) -> int:
    return 2**(self.bits - 1)

  def _qsgd_tau(self, size: int) -> float:
    """tau = 1 + min(d/s^2, sqrt(d)/s), which bounds E||Q(x)||^2 / ||x||^2 ([Lin22] App. 13.3)."""
    levels = self._levels()
    return 1 + min(size / levels**2, math.sqrt(size) / levels)
