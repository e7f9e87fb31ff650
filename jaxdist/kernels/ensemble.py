"""Independent local SVMs with nearest-centre routing: CP-SVM, FCFS-SVM, BKM-SVM, CA-SVM
([You20] ch. 2, Alg. 3-5), and the Random-Assign and Sub-Sampling ablations.

They differ only in the partitioner (`jaxdist.kernels.partition`), which every report names:

    cp_svm    k-means (k = P), rows redistributed to their cluster; load-imbalanced
    fcfs_svm  Alg. 3, P random seeds, first come first served with capacity ceil(m/P)
    bkm_svm   Alg. 4, k-means balanced by moving farthest members
    ca_svm    Alg. 5: no partitioning at all, each worker keeps the rows it holds ("as
              placed"), its centre is their mean; no communication in training

Training is one SMO per worker, run for all workers at once on the worker axis. Prediction
(Alg. 5 lines 9-14): every worker computes its distance d_j = ||x - CT_j|| to each test point,
one argmin reduction over the workers picks the nearest centre, and that worker's model
predicts. `routing="random"` sends each test point to a random model instead (Random-Assign);
`sub_sampling` trains one model on a random 1/P of the rows.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist.core import collectives
from jaxdist.errors import check_choice
from jaxdist.kernels import common, smo
from jaxdist.kernels import partition as partition_lib
from jaxdist.kernels.kernels import GAUSSIAN, Kernel

ROUTINGS = ("nearest", "random")


@functools.cache
def train_fn(kernel: Kernel, C: float, tol: float, max_iter: int):
  """One worker's SMO on its padded rows, optionally warm-started."""
  def train(x, y, mask, alpha):
    result = smo.solve(kernel, x, y, mask, C=C, tol=tol, max_iter=max_iter, alpha=alpha)
    return result.alpha, result.b, result.iterations, smo.dual_objective(result, y, mask)
  return train


@functools.cache
def _predict_fn(kernel: Kernel, routing: str):
  def predict(x, y, mask, alpha, b, centre, x_test, route):
    if routing == "nearest":  # Alg. 5: d_j to this worker's centre, argmin over the workers
      distance = jnp.sum((x_test - centre[None, :])**2, axis=-1)
      route = jnp.argmin(collectives.gather(distance), axis=0)
    mine = smo.decision(kernel, x, y, jnp.where(mask, alpha, 0), b, x_test)
    everyone = collectives.gather(mine)  # the winner's value reaches the asker
    return jnp.take_along_axis(everyone, route[None, :], axis=0)[0]
  return predict


class Ensemble:
  """P trained local SVMs stacked on the worker axis, with their routing centres."""

  def __init__(self, kernel, workers, x, y, mask, alpha, b, centres):
    self.kernel, self.workers = kernel, workers
    self.x, self.y, self.mask, self.alpha, self.b, self.centres = x, y, mask, alpha, b, centres

  def decision(self, x_test: Any, routing: str = "nearest", seed: int = 0) -> jax.Array:
    check_choice("routing", routing, ROUTINGS)
    x_test = jnp.asarray(x_test, self.x.dtype)
    p = self.centres.shape[0]
    route = jnp.asarray(np.random.default_rng(seed).integers(0, p, len(x_test)), jnp.int32)
    out = common.on_workers(self.workers, _predict_fn(self.kernel, routing),
                            (self.x, self.y, self.mask, self.alpha, self.b, self.centres),
                            (x_test, route))
    return out[0]


def train(x, y, part: partition_lib.Partition, *, kernel: Kernel, C: float, tol: float,
          max_iter: int, layout: Any, dtype=None) -> tuple[Ensemble, np.ndarray]:
  """One SMO per worker of `part`; returns the ensemble and the SMO iterations per worker."""
  dtype = dtype or jnp.asarray(np.zeros(1, np.asarray(x).dtype)).dtype
  xp, yp, mask, _ = partition_lib.pack(part, np.asarray(x, dtype), np.asarray(y, dtype))
  workers = common.worker_grid(layout, part.num_workers)
  alpha0 = np.zeros_like(yp)
  alpha, b, iterations, _ = common.on_workers(
      workers, train_fn(kernel, float(C), float(tol), int(max_iter)), (xp, yp, mask, alpha0))
  ensemble = Ensemble(kernel, workers, *jax.device_put((xp, yp, mask)), alpha, b,
                      jax.device_put(part.centres.astype(dtype)))
  return ensemble, np.asarray(iterations)


def _comm_training(part: partition_lib.Partition, n: int, method: str) -> tuple[float, int]:
  """Partitioning (k-means all-reduces or broadcast seeds) plus redistribution of rows."""
  p = part.num_workers
  if method == "ca_svm" or p == 1:
    return 0.0, 0
  words, messages = part.moved() * (n + 1), part.moves()
  for _ in range(part.kmeans_iterations):
    w, msg = common.allreduce(p * (n + 1), p)
    words, messages = words + w, messages + msg
  if part.name == "fcfs":
    w, msg = common.broadcast(p * n, p)
    words, messages = words + w, messages + msg
  return float(words), int(messages)


def partitioned_svm(x, y, x_test, y_test=None, *, partitioner: str = "as_placed",
                    num_workers: int = 8, kernel: Kernel = GAUSSIAN, C: float = 1.0,
                    tol: float = 1e-3, max_iter: int = 100_000, routing: str = "nearest",
                    layout: Any = common.SIMULATED, seed: int = 0, method: str = ""
                    ) -> common.Report:
  """Partition with `partitioner`, train one SVM per worker, route test points (see module)."""
  check_choice("routing", routing, ROUTINGS)
  started = time.perf_counter()
  part = partition_lib.make(partitioner, np.asarray(x), num_workers, seed)
  partition_seconds = time.perf_counter() - started
  (ensemble, iterations), solve_seconds = common.timed(
      train, x, y, part, kernel=kernel, C=C, tol=tol, max_iter=max_iter, layout=layout)
  decision, predict_seconds = common.timed(ensemble.decision, x_test, routing, seed)
  method = method or f"partitioned_svm[{partitioner}]"
  words, messages = _comm_training(part, np.asarray(x).shape[1], method)
  train_words, train_messages = words, messages
  if num_workers > 1:  # one argmin reduce per test point (distance, index)
    w, msg = common.allreduce(2, num_workers)
    words, messages = words + w * len(x_test), messages + msg * len(x_test)
  decision = np.asarray(decision)
  return common.Report(
      method=method, partitioner=part.name, num_workers=num_workers,
      score=common.accuracy(y_test, decision) if y_test is not None else float("nan"),
      train_seconds=partition_seconds + solve_seconds, predict_seconds=predict_seconds,
      words=words, messages=messages, sizes=tuple(int(s) for s in part.sizes),
      extra={"partition_seconds": partition_seconds, "routing": routing,
             "comm/train_words": train_words, "comm/train_messages": train_messages,
             "smo/iterations_max": int(iterations.max()),
             "smo/iterations_sum": int(iterations.sum())},
      predictions=decision)


def ca_svm(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """CA-SVM (Alg. 5): the rows as placed, no communication in training."""
  return partitioned_svm(x, y, x_test, y_test, partitioner="as_placed", method="ca_svm",
                         **kwargs)


def cp_svm(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """CP-SVM: k-means with k = P, one SVM per cluster."""
  return partitioned_svm(x, y, x_test, y_test, partitioner="kmeans", method="cp_svm", **kwargs)


def fcfs_svm(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """FCFS-SVM: Alg. 3's balanced first-come-first-served partition."""
  return partitioned_svm(x, y, x_test, y_test, partitioner="fcfs", method="fcfs_svm", **kwargs)


def bkm_svm(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """BKM-SVM: Alg. 4's balanced k-means."""
  return partitioned_svm(x, y, x_test, y_test, partitioner="bkm", method="bkm_svm", **kwargs)


def random_assign(x, y, x_test, y_test=None, partitioner: str = "as_placed",
                  **kwargs) -> common.Report:
  """The Random-Assign ablation: CA-SVM's models, each test point sent to a random one."""
  return partitioned_svm(x, y, x_test, y_test, partitioner=partitioner, routing="random",
                         method="random_assign", **kwargs)


def sub_sampling(x, y, x_test, y_test=None, *, num_workers: int = 8, kernel: Kernel = GAUSSIAN,
                 C: float = 1.0, tol: float = 1e-3, max_iter: int = 100_000,
                 layout: Any = common.SIMULATED, seed: int = 0) -> common.Report:
  """The Sub-Sampling ablation: one SVM on a random 1/P of the rows ("even" partition, part 0)."""
  part = partition_lib.make("even", np.asarray(x), num_workers, seed)
  keep = part.assignment == 0
  one = partition_lib.Partition("even[1/P]", np.zeros(int(keep.sum()), np.int64),
                                part.centres[:1])
  (ensemble, iterations), train_seconds = common.timed(
      train, np.asarray(x)[keep], np.asarray(y)[keep], one, kernel=kernel, C=C, tol=tol,
      max_iter=max_iter, layout=layout)
  decision, predict_seconds = common.timed(ensemble.decision, x_test)
  decision = np.asarray(decision)
  return common.Report(
      method="sub_sampling", partitioner="even[1/P]", num_workers=num_workers,
      score=common.accuracy(y_test, decision) if y_test is not None else float("nan"),
      train_seconds=train_seconds, predict_seconds=predict_seconds,
      sizes=(int(keep.sum()),), extra={"smo/iterations_max": int(iterations.max())},
      predictions=decision)
