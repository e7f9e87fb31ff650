"""Partitioners: which worker holds which training row, and the centres that route test points.

Every partitioned method takes its partitioner as an explicit argument and reports it, because
the results depend on it ([You20] §5.3 pitfall 1: an i.i.d. split makes CA-SVM an ensemble of
sub-sample models with nearly arbitrary routing; data that arrive clustered make it CP-SVM).

    as_placed  each worker keeps the rows it holds: contiguous blocks in the order given; centre
               = mean of the local rows (CA-SVM, Alg. 5)
    even       a random permutation split evenly (Cascade, DC-KRR); centre = local mean
    kmeans     k-means with k = P (CP-SVM, DC-SVM, KKRR); sizes follow the clusters
    fcfs       Alg. 3: P random samples are the centres; the stream of samples, each to the
               nearest centre that still has fewer than ceil(m/P); centres recomputed if asked
    bkm        Alg. 4: k-means, then every over-full cluster sends its farthest member to the
               nearest under-full centre, one sample at a time, until all hold <= ceil(m/P)
    kbalance   Alg. 9: k-means centres, then the stream as in FCFS with capacity ceil(m/P)

The greedy passes are sequential by nature and run on the host in numpy; the solves on the
partitions are what runs on the worker axis (`pack` pads them to a common size with a mask).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from jaxdist.errors import ArgumentError, check_at_least, check_choice

PARTITIONERS = ("as_placed", "even", "kmeans", "fcfs", "bkm", "kbalance")


@dataclasses.dataclass(frozen=True)
class Partition:
  """`assignment[i]`: the worker of row i; `centres[p]`: worker p's routing centre."""

  name: str
  assignment: np.ndarray
  centres: np.ndarray
  kmeans_iterations: int = 0  # Lloyd iterations spent (each an all-reduce of the centres)

  @property
  def num_workers(self) -> int:
    return self.centres.shape[0]

  @property
  def sizes(self) -> np.ndarray:
    return np.bincount(self.assignment, minlength=self.num_workers)

  def moved(self) -> int:
    """Rows that leave the worker they were placed on (contiguous blocks) to get here."""
    placed = _blocks(len(self.assignment), self.num_workers)
    return int(np.sum(placed != self.assignment))

  def moves(self) -> int:
    """(source, destination) pairs with rows to send: the messages of the redistribution."""
    placed = _blocks(len(self.assignment), self.num_workers)
    pairs = {(int(a), int(b)) for a, b in zip(placed, self.assignment) if a != b}
    return len(pairs)


def _blocks(m: int, p: int) -> np.ndarray:
  return np.repeat(np.arange(p), [len(b) for b in np.array_split(np.arange(m), p)])


def _means(x: np.ndarray, assignment: np.ndarray, p: int) -> np.ndarray:
  centres = np.zeros((p, x.shape[1]), x.dtype)
  for j in range(p):
    rows = x[assignment == j]
    if len(rows):
      centres[j] = rows.mean(0)
  return centres


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
  return ((x[:, None, :] - centres[None, :, :])**2).sum(-1)


def _kmeans(x, p, seed):
  with threadpool_limits(1):  # its thread pool costs more than it saves at these sizes
    km = KMeans(n_clusters=p, n_init=1, random_state=seed).fit(x)
  return km.labels_.astype(np.int64), km.cluster_centers_.astype(x.dtype), int(km.n_iter_)


def _stream(x, centres, capacity, order):
  """Each sample of the stream to the nearest centre that is not full (Alg. 3 / Alg. 9)."""
  p = centres.shape[0]
  ranking = np.argsort(_squared_distances(x, centres), axis=1)
  counts, assignment = np.zeros(p, np.int64), np.empty(len(x), np.int64)
  for i in order:
    for j in ranking[i]:
      if counts[j] < capacity:
        assignment[i], counts[j] = j, counts[j] + 1
        break
  return assignment


def as_placed(x: np.ndarray, num_workers: int) -> Partition:
  assignment = _blocks(len(x), num_workers)
  return Partition("as_placed", assignment, _means(x, assignment, num_workers))


def even(x: np.ndarray, num_workers: int, seed: int = 0) -> Partition:
  assignment = np.empty(len(x), np.int64)
  assignment[np.random.default_rng(seed).permutation(len(x))] = _blocks(len(x), num_workers)
  return Partition("even", assignment, _means(x, assignment, num_workers))


def kmeans(x: np.ndarray, num_workers: int, seed: int = 0) -> Partition:
  assignment, centres, iterations = _kmeans(x, num_workers, seed)
  return Partition("kmeans", assignment, centres, iterations)


def fcfs(x: np.ndarray, num_workers: int, seed: int = 0, recompute: bool = False,
         shuffle: bool = False) -> Partition:
  """Alg. 3. The stream is the rows in their order (the thesis's) unless `shuffle`."""
  rng = np.random.default_rng(seed)
  centres = x[rng.choice(len(x), num_workers, replace=False)]
  order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
  assignment = _stream(x, centres, math.ceil(len(x) / num_workers), order)
  if recompute:
    centres = _means(x, assignment, num_workers)
  return Partition("fcfs", assignment, centres)


def bkm(x: np.ndarray, num_workers: int, seed: int = 0, recompute: bool = False) -> Partition:
  """Alg. 4: balanced k-means by moving farthest members of over-full clusters."""
  assignment, centres, iterations = _kmeans(x, num_workers, seed)
  capacity = math.ceil(len(x) / num_workers)
  distances = _squared_distances(x, centres)  # the O(m P) table of the algorithm
  counts = np.bincount(assignment, minlength=num_workers)
  for j in range(num_workers):
    members = np.flatnonzero(assignment == j)
    members = members[np.argsort(-distances[members, j])]  # farthest first
    for i in members[:max(0, counts[j] - capacity)]:
      open_ = np.flatnonzero(counts < capacity)
      target = open_[np.argmin(distances[i, open_])]
      assignment[i], counts[j], counts[target] = target, counts[j] - 1, counts[target] + 1
  if recompute:
    centres = _means(x, assignment, num_workers)
  return Partition("bkm", assignment, centres, iterations)


def kbalance(x: np.ndarray, num_workers: int, seed: int = 0, recompute: bool = False,
             shuffle: bool = False) -> Partition:
  """Alg. 9 (K-balance): k-means centres, then the capacity-bounded stream."""
  _, centres, iterations = _kmeans(x, num_workers, seed)
  order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
  assignment = _stream(x, centres, math.ceil(len(x) / num_workers), order)
  if recompute:
    centres = _means(x, assignment, num_workers)
  return Partition("kbalance", assignment, centres, iterations)


def make(name: str, x: np.ndarray, num_workers: int, seed: int = 0) -> Partition:
  """The partitioner `name` of PARTITIONERS on rows x."""
  check_choice("partitioner", name, PARTITIONERS)
  check_at_least("num_workers", num_workers, 1, integer=True)
  if num_workers > len(x):
    raise ArgumentError("num_workers", f"{num_workers} workers for {len(x)} rows",
                        f"1..{len(x)}")
  x = np.asarray(x)
  if name == "as_placed":
    return as_placed(x, num_workers)
  return {"even": even, "kmeans": kmeans, "fcfs": fcfs, "bkm": bkm,
          "kbalance": kbalance}[name](x, num_workers, seed)


def pack(partition: Partition, *arrays: np.ndarray, multiple: int = 8):
  """Rows of each array grouped by worker, `[P, cap, ...]` padded with zeros to a common size (a
  multiple of `multiple`), with `mask [P, cap]` and the original row `index [P, cap]` (-1: pad)."""
  p = partition.num_workers
  cap = max(1, int(partition.sizes.max()))
  cap = math.ceil(cap / multiple) * multiple
  index = np.full((p, cap), -1, np.int64)
  for j in range(p):
    rows = np.flatnonzero(partition.assignment == j)
    index[j, :len(rows)] = rows
  mask = index >= 0
  packed = []
  for a in arrays:
    a = np.asarray(a)
    out = np.zeros((p, cap) + a.shape[1:], a.dtype)
    out[mask] = a[index[mask]]
    packed.append(out)
  return (*packed, mask, index)
