"""Where the runner gets the workers' batches: a data source gives, on the host, the batches of
some workers for consecutive steps, `batches(first_step, num_steps, workers) -> pytree` of numpy
arrays laid out `[num_steps, len(workers), ...]`.

* `from_arrays(arrays, indices)`: gather rows of in-memory arrays; `indices` is a `Sampler`
  (built-in partitions, with or without replacement, or the user's split) or any function
  `(step, worker) -> example indices`;
* `from_function(fn)`: `fn(step, worker) -> batch` (a pytree of arrays);
* `from_iterator(iterable)`: each item is one step's batches of all workers, every leaf laid out
  `[num_workers, ...]` (e.g. a list, or a generator). Steps are consumed in order; on resume an
  iterable is iterated again from its start and fast-forwarded (a one-shot iterator cannot
  resume).

Sources built from arrays or functions depend only on (step, worker), which is what makes a
resumed run bit-identical to an unbroken one; each process of a multi-process run asks only for
the workers it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from jaxdist.data.partition import Sampler
from jaxdist.errors import ArgumentError

PyTree = Any


class Data(Protocol):
  """A data source; `num_workers` is None when the source does not fix it."""

  num_workers: int | None

  def batches(self, first_step: int, num_steps: int, workers: Sequence[int]) -> PyTree: ...


class ArrayData:
  """Rows of `arrays` (a dict or pytree of equal-length arrays) picked by `indices`."""

  def __init__(self, arrays: PyTree, indices: Sampler | Callable[[int, int], Any]):
    leaves = jax.tree.leaves(arrays)
    if not leaves:
      raise ArgumentError("arrays", "holds no arrays", "a dict of equal-length arrays")
    sizes = {len(x) for x in leaves}
    if len(sizes) != 1:
      raise ArgumentError("arrays", f"lengths differ: {sorted(sizes)}",
                          "arrays with the same number of examples")
    if not (isinstance(indices, Sampler) or callable(indices)):
      raise ArgumentError("indices", f"{indices!r} is neither a Sampler nor a function",
                          "jaxdist.data.Sampler(...) or a function (step, worker) -> indices")
    self.arrays = jax.tree.map(np.asarray, arrays)
    self.indices = indices
    self.num_workers = indices.num_workers if isinstance(indices, Sampler) else None

  def batches(self, first_step, num_steps, workers):
    if isinstance(self.indices, Sampler):
      index = self.indices.indices(first_step, num_steps, workers)
    else:
      index = np.stack([np.stack([np.asarray(self.indices(step, int(w))) for w in workers])
                        for step in range(first_step, first_step + num_steps)])
    return jax.tree.map(lambda x: x[index], self.arrays)


class FunctionData:
  """`fn(step, worker) -> batch`, stacked."""

  num_workers = None

  def __init__(self, fn: Callable[[int, int], PyTree]):
    if not callable(fn):
      raise ArgumentError("fn", f"{fn!r} is not a function", "fn(step, worker) -> batch")
    self.fn = fn

  def batches(self, first_step, num_steps, workers):
    steps = [[self.fn(step, int(w)) for w in workers]
             for step in range(first_step, first_step + num_steps)]
    return jax.tree.map(lambda *xs: np.stack(xs).reshape(
        (num_steps, len(workers)) + np.shape(xs[0])), *[b for row in steps for b in row])


class IteratorData:
  """Items of `iterable`, each the batches of all workers for one step."""

  num_workers = None

  def __init__(self, iterable: Iterable[PyTree]):
    if not isinstance(iterable, Iterable):
      raise ArgumentError("data", f"{iterable!r} is not iterable",
                          "an iterable of per-worker batches, from_arrays(...), "
                          "from_function(...)")
    self.iterable, self._iterator, self._position = iterable, None, 0

  def _restart(self) -> None:
    iterator = iter(self.iterable)
    if iterator is self.iterable and self._iterator is not None:
      raise ArgumentError("data", f"a one-shot iterator cannot go back to step "
                          f"{self._position}", "a re-iterable source (a list, a dataset object) "
                          "or from_function / from_arrays")
    self._iterator, self._position = iterator, 0

  def batches(self, first_step, num_steps, workers):
    if self._iterator is None or first_step < self._position:
      self._restart()
    items = []
    try:
      while self._position < first_step + num_steps:
        item = next(self._iterator)
        self._position += 1
        if self._position > first_step:
          items.append(item)
    except StopIteration:
      raise ArgumentError("data", f"the iterator ended after {self._position} steps, before "
                          f"step {first_step + num_steps}", "at least as many batches as "
                          "steps") from None
    workers = np.asarray(workers)

    def stack(*leaves):
      leaves = [np.asarray(x) for x in leaves]
      if any(x.ndim == 0 or len(x) <= workers.max() for x in leaves):
        raise ArgumentError("data", f"an item holds batches of {len(leaves[0])} workers, the run "
                            f"has {workers.max() + 1} or more", "items whose leaves are laid "
                            "out [num_workers, ...]")
      return np.stack([x[workers] for x in leaves])

    return jax.tree.map(stack, *items)


def from_arrays(arrays: PyTree, indices: Sampler | Callable[[int, int], Any]) -> ArrayData:
  """Batches gathered from in-memory arrays by a `Sampler` or `(step, worker) -> indices`."""
  return ArrayData(arrays, indices)


def from_function(fn: Callable[[int, int], PyTree]) -> FunctionData:
  """Batches from `fn(step, worker) -> batch`."""
  return FunctionData(fn)


def from_iterator(iterable: Iterable[PyTree]) -> IteratorData:
  """Batches from an iterable whose items hold all workers' batches of one step."""
  return IteratorData(iterable)


def sampled(arrays: PyTree, *, num_workers: int, batch_size: int,
            partition: str | Sequence[Sequence[int]] = "iid", seed: int = 0,
            replacement: bool = False, labels: str = "label", **dirichlet) -> ArrayData:
  """`from_arrays` with a built-in `Sampler` over `arrays` (a dict with a `labels` entry when the
  partition is Dirichlet); see `Sampler` for the arguments."""
  size = len(jax.tree.leaves(arrays)[0])
  split_by = arrays[labels] if partition == "dirichlet" else size
  sampler = Sampler(split_by, num_workers, batch_size, partition, seed=seed,
                    replacement=replacement, **dirichlet)
  return ArrayData(arrays, sampler)


def as_data(data: Any) -> Data:
  """A data source from what a user passed: a source, or an iterable of per-worker batches."""
  if hasattr(data, "batches"):
    return data
  if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
    return IteratorData(data)
  raise ArgumentError("data", f"{type(data).__name__} is not a data source",
                      "jaxdist.data.from_arrays(...), from_function(...), from_iterator(...), "
                      "sampled(...), or an iterable of per-worker batches")
