"""Which examples each worker trains on, and batches that depend only on (seed, step, worker).

Partitions ([Lin22] App. 11.1 and, for Dirichlet, ch. 8-9 with App. 17.3.2 and 18.1.2):
* `iid`: the training set is re-shuffled globally every epoch and split into K equal disjoint parts
  (the thesis's datacenter setting);
* `iid_fixed`: one random split into K equal parts, fixed for the run;
* `dirichlet`: a fixed label-skewed split. `per_class` is the authors' code: for every class,
  proportions over workers ~ Dir(alpha), with balancing (see `dirichlet_per_class`); `per_client`
  is the thesis prose: each worker's class mix q ~ Dir(alpha * uniform), N/K examples drawn from
  it. Both give every worker N/K examples.

Within a fixed shard a worker re-shuffles its own examples every pass over them.
"""

import functools
from typing import Sequence

import numpy as np

from jaxdist.errors import ConfigError

PARTITIONS = ("iid", "iid_fixed", "dirichlet")
DIRICHLET_SCHEMES = ("per_class", "per_client")

# Independent random streams derived from the one seed.
_SPLIT, _EPOCH, _SHARD_EPOCH = 1, 2, 3


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
  raise ConfigError(
      "data.dirichlet_alpha",
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
  """Training-example indices for any (step, worker), a pure function of the seed."""

  def __init__(self, labels: np.ndarray, num_workers: int, batch_size: int, partition: str,
               seed: int, dirichlet_alpha: float = 1.0, dirichlet_scheme: str = "per_class"):
    if partition not in PARTITIONS:
      raise ConfigError("data.partition", f"unknown partition {partition!r}", PARTITIONS)
    self.num_examples, self.num_workers = len(labels), num_workers
    self.batch_size, self.partition, self.seed = batch_size, partition, seed
    rng = np.random.default_rng([seed, _SPLIT])
    if partition == "iid":
      self.shards = None
      sizes = [self.num_examples // num_workers] * num_workers
    elif partition == "iid_fixed":
      self.shards = np.array_split(rng.permutation(self.num_examples), num_workers)
      sizes = [len(s) for s in self.shards]
    else:
      if not dirichlet_alpha > 0:
        raise ConfigError("data.dirichlet_alpha", f"must be > 0, got {dirichlet_alpha}", "> 0")
      if dirichlet_scheme not in DIRICHLET_SCHEMES:
        raise ConfigError("data.dirichlet_scheme", f"unknown scheme {dirichlet_scheme!r}",
                          DIRICHLET_SCHEMES)
      split = dirichlet_per_class if dirichlet_scheme == "per_class" else dirichlet_per_client
      self.shards = split(np.asarray(labels), num_workers, dirichlet_alpha, rng)
      sizes = [len(s) for s in self.shards]
    if batch_size < 1 or batch_size > min(sizes):
      raise ConfigError(
          "data.batch_size",
          f"{batch_size} does not fit the smallest worker's share ({min(sizes)} of "
          f"{self.num_examples} examples over {num_workers} workers)", f"1..{min(sizes)}")
    self._steps_per_pass = [size // batch_size for size in sizes]
    self._global_order = functools.lru_cache(maxsize=2)(self._global_order_uncached)
    self._shard_order = functools.lru_cache(maxsize=4 * num_workers)(self._shard_order_uncached)

  def _global_order_uncached(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, _EPOCH, epoch]).permutation(self.num_examples)

  def _shard_order_uncached(self, worker: int, epoch: int) -> np.ndarray:
    shard = self.shards[worker]
    return shard[np.random.default_rng([self.seed, _SHARD_EPOCH, worker, epoch])
                 .permutation(len(shard))]

  def batch(self, step: int, worker: int) -> np.ndarray:
    """Indices of the `batch_size` examples `worker` trains on at `step`."""
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
