"""CYCLADES-style conflict-free parallel SGD ([S3 L1494]; Pan et al. 2016 [ext]).

Per batch of sampled examples: build the conflict graph (examples that share a coordinate),
take its connected components, and give whole components to cores (largest first, to the least
loaded). Cores then run SGD on their own examples with no lock and no conflict: no two cores touch
a coordinate in common, so the batch's result equals the serial run of core 0's examples, then
core 1's, ... exactly (`serial_order`), bit for bit.

The schedule (which example goes to which core, in what order) is computed once on the host from
a seed (`schedule`); the run is one jitted scan over batches, the cores vmapped inside it, each a
scan over its examples on its own copy of the model; a coordinate of the merged model is taken
from the one core that touched it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from jax import lax

from jaxdist.asynchrony.sparse import SparseObjective, example_gradient
from jaxdist.errors import ArgumentError, check_at_least


def schedule(objective: SparseObjective, *, batch_size: int, num_cores: int, num_batches: int,
             seed: int = 0) -> np.ndarray:
  """`[num_batches, num_cores, L]` example ids (-1 pads): each batch's conflict-graph components,
  whole, on the cores."""
  check_at_least("batch_size", batch_size, 1, integer=True)
  check_at_least("num_cores", num_cores, 1, integer=True)
  check_at_least("num_batches", num_batches, 1, integer=True)
  if batch_size > objective.num_examples:
    raise ArgumentError("batch_size", f"{batch_size} is more than the {objective.num_examples} "
                        "examples", f"1 .. {objective.num_examples}")
  rng = np.random.default_rng(seed)
  incidence = objective.data.incidence()
  batches = []
  for _ in range(num_batches):
    examples = rng.choice(objective.num_examples, batch_size, replace=False)
    rows = incidence[examples]
    _, component = scipy.sparse.csgraph.connected_components(rows @ rows.T, directed=False)
    sizes = np.bincount(component)
    cores = [[] for _ in range(num_cores)]
    for c in np.argsort(-sizes, kind="stable"):
      least = min(range(num_cores), key=lambda k: len(cores[k]))
      cores[least].extend(examples[component == c].tolist())
    batches.append(cores)
  length = max(len(core) for cores in batches for core in cores)
  out = np.full((num_batches, num_cores, length), -1, np.int32)
  for b, cores in enumerate(batches):
    for k, core in enumerate(cores):
      out[b, k, :len(core)] = core
  return out


def serial_order(plan: np.ndarray) -> np.ndarray:
  """The serial order the plan's result equals: per batch, core 0's examples, then core 1's, ..."""
  flat = np.asarray(plan).reshape(-1)
  return flat[flat >= 0]


class Cyclades:
  """Conflict-free parallel SGD on a sparse objective.

  Args:
    objective: a `SparseSVM` or `SparseLogistic`.
    learning_rate: gamma.
  """

  def __init__(self, objective: SparseObjective, learning_rate: float):
    if not isinstance(objective, SparseObjective):
      raise ArgumentError("objective", f"{type(objective).__name__} is not a sparse objective",
                          "SparseSVM, SparseLogistic")
    check_at_least("learning_rate", learning_rate, 0)
    self.objective, self.learning_rate = objective, learning_rate
    self._run = jax.jit(self._batches)  # the objective is an argument: its data are not baked in

  def _core(self, objective, x, examples):
    """One core's examples in order, on its own copy; and the coordinates it touched."""
    def step(x, e):
      idx, mask = objective.support(jnp.maximum(e, 0))
      grad = example_gradient(objective, x[idx], jnp.maximum(e, 0))
      x = x.at[idx].add(jnp.where(e >= 0, -self.learning_rate * grad, 0.0))
      return x, (idx, mask & (e >= 0))

    x, (idx, touched) = lax.scan(step, x, examples)
    owned = jnp.zeros(x.shape, jnp.int32).at[idx.ravel()].max(touched.ravel().astype(jnp.int32))
    return x, owned

  def _batch(self, objective, x, cores):
    copies, owned = jax.vmap(self._core, in_axes=(None, None, 0))(objective, x, cores)  # cores
    owner = jnp.argmax(owned, axis=0)
    merged = jnp.take_along_axis(copies, owner[None], axis=0)[0]
    return jnp.where(owned.any(0), merged, x), None

  def _batches(self, objective, x, plan):
    return lax.scan(functools.partial(self._batch, objective), x, plan)[0]

  def run(self, x0: jax.Array, plan: np.ndarray) -> jax.Array:
    """The model after every batch of `plan` (from `schedule`)."""
    return self._run(self.objective, jnp.asarray(x0, jnp.float32), jnp.asarray(plan, jnp.int32))
