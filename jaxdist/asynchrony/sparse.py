"""Sparse objectives for Hogwild! ([S3 L1194-1267]; Niu, Recht, Re, Wright 2011 [ext]) and their
sparsity statistics.

The objective is f(x) = sum_e f_e(x_e): every term e touches only the coordinates e, and x_e is that
sub-vector. Examples are rows of a padded sparse matrix (`SparseData`: `indices` and `values`,
`[n, Omega]`, with a `mask` for the padding), so a term reads and writes |e| coordinates only.

- `SparseSVM`: sum_a max(1 - y_a x^T z_a, 0) + lambda ||x||^2 with the regulariser spread over the
  touched coordinates, f_e = hinge_e + lambda sum_{v in e} x_v^2 / d_v, d_v the number of examples
  touching v (the paper's form), so that every f_e stays sparse and sum_e f_e is the objective.
- `SparseLogistic`: log(1 + exp(-y_a x^T z_a)), with the same optional spread regulariser.
- `Quadratic`: (L/2) ||x||^2, one dense term: the delayed-gradient model of the spec's §10b.

`sparsity(data)` gives the paper's Omega = max_e |e|, Delta = max_v #{e : v in e} / |E| and
rho = max_e #{e' : e' meets e} / |E| (the slides give them in words [S3 L1256-1267]).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from jaxdist.errors import ArgumentError, check_at_least


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseData:
  """n examples of at most Omega features each: `indices`, `values`, `mask` `[n, Omega]` (padding
  has mask False and value 0), labels `y` `[n]` in {-1, +1}, `dim` features."""
  indices: jax.Array
  values: jax.Array
  mask: jax.Array
  y: jax.Array
  dim: int = dataclasses.field(metadata={"static": True})

  @property
  def num_examples(self) -> int:
    return self.indices.shape[0]

  def incidence(self) -> scipy.sparse.csr_matrix:
    """The n x dim 0/1 matrix of which example touches which coordinate."""
    mask = np.asarray(self.mask)
    rows = np.repeat(np.arange(self.num_examples), mask.shape[1])[mask.ravel()]
    cols = np.asarray(self.indices).ravel()[mask.ravel()]
    return scipy.sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                                   shape=(self.num_examples, self.dim))


def random_sparse(num_examples: int, dim: int, nonzeros: int, seed: int = 0,
                  noise: float = 0.0) -> SparseData:
  """Linearly separable (up to `noise` flipped labels) data: every example has `nonzeros` random
  coordinates with N(0, 1) values, y = sign(w* . z); `nonzeros == dim` is dense."""
  check_at_least("num_examples", num_examples, 1, integer=True)
  check_at_least("dim", dim, 1, integer=True)
  check_at_least("nonzeros", nonzeros, 1, integer=True)
  if nonzeros > dim:
    raise ArgumentError("nonzeros", f"{nonzeros} is more than dim ({dim})", f"1 .. {dim}")
  rng = np.random.default_rng(seed)
  if nonzeros == dim:
    indices = np.broadcast_to(np.arange(dim), (num_examples, dim)).copy()
  else:
    indices = np.stack([rng.choice(dim, nonzeros, replace=False) for _ in range(num_examples)])
  values = rng.normal(size=indices.shape).astype(np.float32)
  w = rng.normal(size=dim)
  y = np.sign((values * w[indices]).sum(1) + 1e-12)
  y = np.where(rng.random(num_examples) < noise, -y, y).astype(np.float32)
  return SparseData(jnp.asarray(indices, jnp.int32), jnp.asarray(values),
                    jnp.ones(indices.shape, bool), jnp.asarray(y), dim)


def sparsity(data: SparseData) -> dict[str, float]:
  """Omega, Delta and rho of Niu et al. (the exact definitions of the slides' words)."""
  incidence = data.incidence()
  n = data.num_examples
  omega = int(incidence.getnnz(axis=1).max())
  delta = float(incidence.getnnz(axis=0).max() / n)
  counts = incidence.getnnz(axis=0).astype(np.int64)
  if (counts**2).sum() < n * n // 8:  # sparse: the conflict graph e ~ e' is small
    meets = int((incidence @ incidence.T).getnnz(axis=1).max())
  else:  # dense: count the meeting examples in chunks instead of storing the graph
    meets = 0
    for start in range(0, n, 512):
      block = incidence[start:start + 512].toarray().T  # [dim, 512]
      meets = max(meets, int(((incidence @ block) > 0).sum(axis=0).max()))
  rho = float(meets / n)
  return {"omega": omega, "delta": delta, "rho": rho}


class SparseObjective:
  """f = (1/n) sum_e f_e over `data`; subclasses define the margin loss `term(margin)`.

  A pytree (the data are its leaves), so jitted runs take it as an argument rather than baking
  the data into the program."""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

  def _flatten(self):
    return (self.data, self.spread), (self.regularization,)

  @classmethod
  def _unflatten(cls, aux, children):
    new = cls.__new__(cls)
    new.data, new.spread = children
    new.regularization = aux[0]
    new.dim, new.num_examples = new.data.dim, new.data.indices.shape[0]
    return new

  def __init__(self, data: SparseData, regularization: float = 0.0):
    if not isinstance(data, SparseData):
      raise ArgumentError("data", f"{type(data).__name__} is not SparseData",
                          "jaxdist.asynchrony.SparseData (random_sparse makes one)")
    check_at_least("regularization", regularization, 0)
    self.data, self.regularization = data, regularization
    self.dim, self.num_examples = data.dim, data.num_examples
    counts = np.asarray(data.incidence().getnnz(axis=0), np.float32)
    self.spread = jnp.asarray(1.0 / np.maximum(counts, 1.0))  # 1 / d_v

  def term(self, margin: jax.Array) -> jax.Array:
    raise NotImplementedError

  def support(self, e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The coordinates example e touches, and which of them are real (not padding)."""
    return self.data.indices[e], self.data.mask[e]

  def example_loss(self, x_e: jax.Array, e: jax.Array) -> jax.Array:
    """f_e on its own coordinates x_e."""
    idx, mask = self.support(e)
    margin = self.data.y[e] * jnp.sum(self.data.values[e] * x_e)
    spread = jnp.where(mask, self.spread[idx] * x_e**2, 0.0)
    return self.term(margin) + self.regularization * jnp.sum(spread)

  def loss(self, x: jax.Array) -> jax.Array:
    """The objective's mean over the examples."""
    examples = jnp.arange(self.num_examples)
    return jnp.mean(jax.vmap(lambda e: self.example_loss(x[self.support(e)[0]], e))(examples))


class SparseSVM(SparseObjective):
  """Hinge loss with the spread regulariser: the sparse SVM of the slides [S3 L1236-1252]."""

  def term(self, margin):
    return jnp.maximum(1.0 - margin, 0.0)


class SparseLogistic(SparseObjective):
  """Logistic loss log(1 + exp(-margin)), with an optional spread regulariser."""

  def term(self, margin):
    return jnp.logaddexp(0.0, -margin)


class SparseLeastSquares(SparseObjective):
  """Least squares on the labels, (1/2)(x^T z - y)^2 = (1/2)(1 - margin)^2 for y in {-1, +1}:
  smooth with unbounded gradients, so a too-large delayed step diverges."""

  def term(self, margin):
    return 0.5 * (1.0 - margin) ** 2


@jax.tree_util.register_pytree_node_class
class Quadratic:
  """(1/2) sum_i c_i x_i^2 as one dense term: x_{t+1} = x_t - gamma c x_{t - tau} under delay.

  `curvature` is L (one coordinate, or `dim` of them) or a vector of c_i: with a whole-vector
  fixed delay the coordinates evolve apart, so one run tries many values of gamma c at once.
  """

  def __init__(self, curvature: float | Any = 1.0, dim: int = 1):
    c = np.asarray(curvature, np.float32)
    if c.ndim > 1 or (c < 0).any() or not np.isfinite(c).all():
      raise ArgumentError("curvature", f"{curvature!r} is not a curvature", "numbers >= 0, "
                          "one or a vector")
    check_at_least("dim", dim, 1, integer=True)
    self.dim = c.size if c.ndim == 1 else dim
    self.curvature, self.num_examples = jnp.broadcast_to(jnp.asarray(c), (self.dim,)), 1

  def tree_flatten(self):
    return (self.curvature,), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    new = cls.__new__(cls)
    (new.curvature,) = children
    new.dim, new.num_examples = new.curvature.shape[0], 1
    return new

  def support(self, e):
    del e
    return jnp.arange(self.dim), jnp.ones(self.dim, bool)

  def example_loss(self, x_e, e):
    del e
    return 0.5 * jnp.sum(self.curvature * x_e**2)

  def loss(self, x):
    return self.example_loss(x, 0)


@jax.jit
def objective_value(objective, x: jax.Array) -> jax.Array:
  """`objective.loss(x)`, jitted with the objective as an argument (its data not baked in)."""
  return objective.loss(x)


def example_gradient(objective, x_e: jax.Array, e: jax.Array) -> jax.Array:
  """G_e on the support of e (zero on padding)."""
  _, mask = objective.support(e)
  return jnp.where(mask, jax.grad(objective.example_loss)(x_e, e), 0.0)
