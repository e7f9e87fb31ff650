"""Which examples each worker trains on, and batches that depend only on (seed, step, worker).

Partitions ([Lin22] App. 11.1 and, for Dirichlet, ch. 8-9 with App. 17.3.2 and 18.1.2):
* `iid`: the training set is re-shuffled globally every epoch and split into K equal disjoint parts
  (the thesis's datacenter setting);
* `iid_fixed`: one random split into K equal parts, fixed for the run;
* `dirichlet`: a fixed label-skewed split. `per_class` is the authors' code: for every class,
  proportions over workers ~ Dir(alpha), with balancing (see `dirichlet_per_class`); `per_client`
  is the thesis prose: each worker's class mix q ~ Dir(alpha * uniform), N/K examples drawn from
  it. Both give every worker N/K examples;
* a list of K index arrays: the user's own split, fixed for the run (shards may differ in size).

Within a fixed shard a worker re-shuffles its own examples every pass over them. With
`replacement=True` every batch is drawn uniformly with replacement instead: from the whole set
(`iid`) or from the worker's shard.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from jaxdist.errors import ArgumentError, check_at_least, check_choice

PARTITIONS = ("iid", "iid_fixed", "dirichlet")
DIRICHLET_SCHEMES = ("per_class", "per_client")

# Independent random streams derived from the one seed.
_SPLIT, _EPOCH, _SHARD_EPOCH, _WITH_REPLACEMENT = 1, 2, 3, 4


def dirichlet_per_class(labels: np.ndarray, num_workers: int, alpha: float,
                        rng: np.random.Generator, group_size: int = 10, min_fraction: float = 0.5,
                        max_tries: int = 1000) -> list[np.ndarray]:
  """The authors' per-class Dirichlet split (quasi-global-momentum's `partition_data.py`).

  The shuffled examples are cut into groups of `group_size` workers' worth; inside a group each
  class is spread over the group's workers with proportions ~ Dir(alpha), workers that already hold
  their share get none, and the group is redrawn until every worker holds `min_fraction` of its
  share. The workers' lists are then concatenated and cut into K equal parts.
  """
  order = rng.permutation(len(labels))
  num_groups = -(-num_workers // group_size)
  per_group = [min(group_size, num_workers - g * group_size) for g in range(num_groups)]
  bounds = [g * int(group_size / num_workers * len(labels)) for g in range(num_groups)]
  members_of_group = np.split(order, bounds[1:])
  lists = []
  for members, workers in zip(members_of_group, per_group):
    lists += _dirichlet_group(members, labels[members], workers, alpha, rng, min_fraction,
                              max_tries)
  size = len(labels) // num_workers
  joined = np.concatenate(lists)
  return [np.sort(joined[k * size:(k + 1) * size]) for k in range(num_workers)]


def _dirichlet_group(members, labels, num_workers, alpha, rng, min_fraction, max_tries):
  share = len(members) / num_workers
  for _ in range(max_tries):
    lists = _draw_group(members, labels, num_workers, alpha, rng, share)
    if lists and min(len(worker) for worker in lists) >= int(min_fraction * share):
      return [np.asarray(worker, np.int64) for worker in lists]
  raise ArgumentError(
      "dirichlet_alpha",
      f"no per_class split of {len(members)} examples over {num_workers} workers with "
      f"alpha={alpha} gives every worker {min_fraction:.0%} of its share after {max_tries} draws",
      "a larger alpha, fewer workers, or data.dirichlet_scheme='per_client'")


def _draw_group(members, labels, num_workers, alpha, rng, share):
  """One draw; None when a class finds every open worker's proportion at zero."""
  lists = [[] for _ in range(num_workers)]
  for c in np.unique(labels):
    of_class = members[labels == c]
    proportions = rng.dirichlet(np.full(num_workers, alpha))
    proportions *= np.array([len(worker) < share for worker in lists])
    if not proportions.sum() > 0:
      return None
    cuts = (np.cumsum(proportions / proportions.sum()) * len(of_class)).astype(int)[:-1]
    for worker, part in zip(lists, np.split(of_class, cuts)):
      worker.extend(part.tolist())
  return lists


def dirichlet_per_client(labels: np.ndarray, num_workers: int, alpha: float,
                         rng: np.random.Generator) -> list[np.ndarray]:
  """Each worker draws N/K examples, without replacement, from its class mix q ~ Dir(alpha)."""
  classes = np.unique(labels)
  pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
  size = len(labels) // num_workers
  shards = []
  for _ in range(num_workers):
    mix = rng.dirichlet(np.full(len(classes), alpha))
    shard = []
    while len(shard) < size:
      available = np.array([len(p) > 0 for p in pools])
      weights = mix * available
      weights = weights / weights.sum() if weights.sum() > 0 else available / available.sum()
      counts = rng.multinomial(size - len(shard), weights)
      for pool, count in zip(pools, counts):
        shard.extend(pool[:count])
        del pool[:count]
    shards.append(np.sort(np.asarray(shard, np.int64)))
  return shards


class Sampler:
  """Training-example indices for any (step, worker), a pure function of the seed.

  Args:
    labels: the training labels (needed for `dirichlet`), or the number of training examples.
    num_workers: K.
    batch_size: examples per worker per step.
    partition: `iid`, `iid_fixed`, `dirichlet`, or a list of K index arrays (the user's split).
    seed: the seed of the split and of the batch order.
    replacement: draw every batch with replacement (from the whole set for `iid`, else from the
      worker's shard) instead of passing over the shard in a shuffled order.
    dirichlet_alpha: concentration of the Dirichlet label skew (smaller: more skewed).
    dirichlet_scheme: `per_class` (the authors' code) or `per_client` (the thesis prose).
  """

  def __init__(self, labels: np.ndarray | int, num_workers: int, batch_size: int,
               partition: str | Sequence[Sequence[int]] = "iid", *, seed: int = 0,
               replacement: bool = False, dirichlet_alpha: float = 1.0,
               dirichlet_scheme: str = "per_class"):
    check_at_least("num_workers", num_workers, 1, integer=True)
    check_at_least("batch_size", batch_size, 1, integer=True)
    num_examples = labels if isinstance(labels, (int, np.integer)) else len(labels)
    self.num_examples, self.num_workers = int(num_examples), int(num_workers)
    self.batch_size, self.seed, self.replacement = int(batch_size), seed, replacement
    rng = np.random.default_rng([seed, _SPLIT])
    if isinstance(partition, str):
      check_choice("partition", partition, PARTITIONS)
    else:
      partition = self._check_splits(partition)
    self.partition = partition if isinstance(partition, str) else "given"
    if partition == "iid":
      self.shards = None
      sizes = [self.num_examples // num_workers] * num_workers
    elif partition == "iid_fixed":
      self.shards = np.array_split(rng.permutation(self.num_examples), num_workers)
    elif partition == "dirichlet":
      if isinstance(labels, (int, np.integer)):
        raise ArgumentError("labels", "a Dirichlet split needs the labels, not their number",
                            "the array of training labels")
      check_at_least("dirichlet_alpha", dirichlet_alpha, 0)
      if not dirichlet_alpha > 0:
        raise ArgumentError("dirichlet_alpha", f"must be > 0, got {dirichlet_alpha}", "> 0")
      check_choice("dirichlet_scheme", dirichlet_scheme, DIRICHLET_SCHEMES)
      split = dirichlet_per_class if dirichlet_scheme == "per_class" else dirichlet_per_client
      self.shards = split(np.asarray(labels), num_workers, dirichlet_alpha, rng)
    else:
      self.shards = partition
    if self.shards is not None:
      sizes = [len(shard) for shard in self.shards]
    if not replacement and batch_size > min(sizes):
      raise ArgumentError(
          "batch_size",
          f"{batch_size} does not fit the smallest worker's share ({min(sizes)} of "
          f"{self.num_examples} examples over {num_workers} workers)", f"1..{min(sizes)}")
    self._steps_per_pass = [max(1, size // batch_size) for size in sizes]
    self._global_order = functools.lru_cache(maxsize=2)(self._global_order_uncached)
    self._shard_order = functools.lru_cache(maxsize=4 * num_workers)(self._shard_order_uncached)

  def _check_splits(self, splits) -> list[np.ndarray]:
    splits = [np.asarray(s, np.int64).ravel() for s in splits]
    if len(splits) != self.num_workers:
      raise ArgumentError("partition", f"{len(splits)} index arrays for {self.num_workers} "
                          "workers", "one array of example indices per worker")
    for k, shard in enumerate(splits):
      if shard.size == 0 or shard.min() < 0 or shard.max() >= self.num_examples:
        raise ArgumentError("partition", f"worker {k}'s indices are empty or outside "
                            f"0..{self.num_examples - 1}", "non-empty arrays of example indices")
    return splits

  def _global_order_uncached(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, _EPOCH, epoch]).permutation(self.num_examples)

  def _shard_order_uncached(self, worker: int, epoch: int) -> np.ndarray:
    shard = self.shards[worker]
    return shard[np.random.default_rng([self.seed, _SHARD_EPOCH, worker, epoch])
                 .permutation(len(shard))]

  def batch(self, step: int, worker: int) -> np.ndarray:
    """Indices of the `batch_size` examples `worker` trains on at `step`."""
    if self.replacement:
      rng = np.random.default_rng([self.seed, _WITH_REPLACEMENT, step, worker])
      pool = self.num_examples if self.shards is None else len(self.shards[worker])
      drawn = rng.integers(0, pool, self.batch_size)
      return drawn if self.shards is None else self.shards[worker][drawn]
    epoch, position = divmod(step, self._steps_per_pass[worker])
    start = position * self.batch_size
    if self.shards is None:
      part = self.num_examples // self.num_workers
      order = self._global_order(epoch)[worker * part:(worker + 1) * part]
    else:
      order = self._shard_order(worker, epoch)
    return order[start:start + self.batch_size]

  def indices(self, first_step: int, num_steps: int, workers: Sequence[int]) -> np.ndarray:
    """`[num_steps, len(workers), batch_size]` indices for consecutive steps."""
    return np.stack([np.stack([self.batch(step, w) for w in workers])
                     for step in range(first_step, first_step + num_steps)])
