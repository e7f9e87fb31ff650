"""Cascade SVM and its k-means relatives ([You20] ch. 2, L459, L481-488, L543-566, Table 2.5).

log2(P) + 1 levels. Level 0 trains one SVM per worker; at every next level the neighbour pairs
(2i, 2i + 1) merge: what flows down is the support vectors with their alphas as the warm start
(`flow="support"`), or every row with its alpha (`flow="all"`). The last level is one SVM, the
final model. Presets:

    cascade    even random partition, support vectors flow      (Graf et al.)
    dc_svm     k-means partition, all rows flow (the last level is the whole data; Hsieh et al.)
    dc_filter  k-means partition, support vectors flow

The levels run on the worker axis (P, P/2, ..., 1 workers). Eq. 2.13's time-weighted
parallelism sum_l t_l P_l / sum_l t_l is reported from measured level times and from a cost
model t_l = max over the level's SVMs of (SMO iterations x rows), since simulated workers
share one device.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxdist.core.layouts import Simulated
from jaxdist.errors import ArgumentError, check_choice
from jaxdist.kernels import common, ensemble
from jaxdist.kernels import partition as partition_lib
from jaxdist.kernels.kernels import GAUSSIAN, Kernel

FLOWS = ("support", "all")


def cascade(x, y, x_test, y_test=None, *, num_workers: int = 8, kernel: Kernel = GAUSSIAN,
            C: float = 1.0, tol: float = 1e-3, max_iter: int = 100_000,
            partitioner: str = "even", flow: str = "support", layout: Any = common.SIMULATED,
            seed: int = 0, method: str = "cascade") -> common.Report:
  """A cascade of SVMs over log2(P) + 1 levels (see the module docstring)."""
  check_choice("flow", flow, FLOWS)
  if num_workers & (num_workers - 1):
    raise ArgumentError("num_workers", f"{num_workers} is not a power of two", "1, 2, 4, 8, ...")
  x, y = np.asarray(x), np.asarray(y)
  dtype = jnp.asarray(np.zeros(1, x.dtype)).dtype
  x, y = x.astype(dtype), y.astype(dtype)
  n = x.shape[1]
  started = time.perf_counter()
  part = partition_lib.make(partitioner, x, num_workers, seed)
  words, messages = ensemble._comm_training(part, n, method)
  groups = [np.flatnonzero(part.assignment == j) for j in range(num_workers)]
  alpha_of = np.zeros(len(y), dtype)
  train = ensemble.train_fn(kernel, float(C), float(tol), int(max_iter))
  levels = []
  while True:
    p = len(groups)
    level = partition_lib.Partition(part.name, np.concatenate(
        [np.full(len(g), j) for j, g in enumerate(groups)]), np.zeros((p, n), dtype))
    rows = np.concatenate(groups)
    xp, yp, a0, mask, index = partition_lib.pack(level, x[rows], y[rows], alpha_of[rows])
    level_started = time.perf_counter()
    alpha, b, iterations, _ = common.on_workers(
        common.worker_grid(layout, p), train, (xp, yp, mask, a0))
    alpha, iterations = np.asarray(alpha), np.asarray(iterations)
    seconds = time.perf_counter() - level_started
    sizes = mask.sum(1)
    levels.append(dict(workers=p, seconds=seconds, cost=float(np.max(iterations * sizes)),
                       sizes=sizes.tolist(), iterations=iterations.tolist()))
    for j in range(p):
      alpha_of[rows[index[j, mask[j]]]] = alpha[j, mask[j]]
    if p == 1:
      break
    flowing = [g if flow == "all" else g[alpha_of[g] > 0] for g in groups]
    for j in range(1, p, 2):  # worker 2i + 1 sends its rows (x, y, alpha) to 2i
      words += len(flowing[j]) * (n + 2)
      messages += 1
    groups = [np.concatenate([flowing[j], flowing[j + 1]]) for j in range(0, p, 2)]
  train_seconds = time.perf_counter() - started
  final = np.concatenate(groups)
  model_x, model_y, model_alpha = x[final], y[final], alpha_of[final]
  one = partition_lib.Partition(part.name, np.zeros(len(final), np.int64), np.zeros((1, n), dtype))
  xp, yp, ap, mask, _ = partition_lib.pack(one, model_x, model_y, model_alpha)
  final_model = ensemble.Ensemble(kernel, common.worker_grid(Simulated(), 1), jnp.asarray(xp),
                                  jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(ap),
                                  jnp.asarray(b), jnp.zeros((1, n), dtype))
  decision, predict_seconds = common.timed(final_model.decision, x_test)
  decision = np.asarray(decision)
  total = sum(lv["seconds"] for lv in levels)
  cost = sum(lv["cost"] for lv in levels)
  return common.Report(
      method=method, partitioner=part.name, num_workers=num_workers,
      score=common.accuracy(y_test, decision) if y_test is not None else float("nan"),
      train_seconds=train_seconds, predict_seconds=predict_seconds, words=float(words),
      messages=int(messages), sizes=tuple(int(s) for s in part.sizes),
      extra={"levels": levels, "num_levels": len(levels), "comm/train_words": float(words),
             "comm/train_messages": int(messages),
             "parallelism/measured": sum(lv["seconds"] * lv["workers"] for lv in levels) / total,
             "parallelism/cost_model": sum(lv["cost"] * lv["workers"] for lv in levels) / cost,
             "support_vectors": int(np.sum(model_alpha > 0)),
             "bottom_level_share": levels[-1]["cost"] / cost if math.isfinite(cost) else 0.0},
      predictions=decision)


def dc_svm(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """DC-SVM: k-means partition, every row flows down with its alpha."""
  return cascade(x, y, x_test, y_test, partitioner="kmeans", flow="all", method="dc_svm",
                 **kwargs)


def dc_filter(x, y, x_test, y_test=None, **kwargs) -> common.Report:
  """DC-Filter: k-means partition, Cascade's filtering (support vectors flow)."""
  return cascade(x, y, x_test, y_test, partitioner="kmeans", flow="support",
                 method="dc_filter", **kwargs)
