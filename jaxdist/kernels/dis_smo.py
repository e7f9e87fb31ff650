"""Dis-SMO ([You20] ch. 2, L527-541; Cao & Keerthi, Catanzaro): one global SMO whose rows are
split over the workers.

Each iteration is two reductions over the workers (argmin of f over I_high, argmax over
I_low) and a broadcast of the two chosen samples; every worker then updates the f of its own
rows. The solution is the single SMO's (a one-worker run is `smo.solve` exactly); what changes
is the communication: Θ(I P) tiny messages, counted here as Table 2.6 does.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxdist.core import collectives
from jaxdist.kernels import common, smo
from jaxdist.kernels import partition as partition_lib
from jaxdist.kernels.kernels import GAUSSIAN, Kernel


@functools.cache
def _train_fn(kernel: Kernel, C: float, tol: float, max_iter: int):
  def train(x, y, mask):
    result = smo.solve_distributed(kernel, x, y, mask, C=C, tol=tol, max_iter=max_iter)
    objective = collectives.gather(smo.dual_objective(result, y, mask)).sum()
    return result.alpha, result.b, result.iterations, objective
  return train


@functools.cache
def _predict_fn(kernel: Kernel):
  def predict(x, y, mask, alpha, b, x_test):
    partial = smo.decision(kernel, x, y, jnp.where(mask, alpha, 0), 0.0, x_test)
    return collectives.gather(partial).sum(0) - b  # one reduction of the partial sums
  return predict


def dis_smo(x, y, x_test, y_test=None, *, num_workers: int = 8, kernel: Kernel = GAUSSIAN,
            C: float = 1.0, tol: float = 1e-3, max_iter: int = 100_000,
            partitioner: str = "as_placed", layout: Any = common.SIMULATED, seed: int = 0
            ) -> common.Report:
  """Dis-SMO on rows split by `partitioner` (default: evenly, as placed)."""
  x, y = np.asarray(x), np.asarray(y)
  part = partition_lib.make(partitioner, x, num_workers, seed)
  dtype = jnp.asarray(np.zeros(1, x.dtype)).dtype
  xp, yp, mask, _ = partition_lib.pack(part, x.astype(dtype), y.astype(dtype))
  workers = common.worker_grid(layout, num_workers)
  (alpha, b, iterations, objective), train_seconds = common.timed(
      common.on_workers, workers, _train_fn(kernel, float(C), float(tol), int(max_iter)),
      (xp, yp, mask))
  decision, predict_seconds = common.timed(
      common.on_workers, workers, _predict_fn(kernel), (xp, yp, mask, alpha, b),
      (jnp.asarray(x_test, dtype),))
  decision = np.asarray(decision[0])
  n, p, its = x.shape[1], num_workers, int(iterations[0])
  # per iteration: two all-reduces of a (value, index) pair, two samples (n + 2 words) broadcast
  w_reduce, m_reduce = common.allreduce(2, p)
  w_bcast, m_bcast = common.broadcast(2 * (n + 2), p)
  w_pred, m_pred = common.allreduce(len(x_test), p)
  return common.Report(
      method="dis_smo", partitioner=part.name, num_workers=p,
      score=common.accuracy(y_test, decision) if y_test is not None else float("nan"),
      train_seconds=train_seconds, predict_seconds=predict_seconds,
      words=its * (2 * w_reduce + w_bcast) + w_pred,
      messages=its * (2 * m_reduce + m_bcast) + m_pred,
      sizes=tuple(int(s) for s in part.sizes),
      extra={"smo/iterations": its, "dual_objective": float(objective[0]),
             "comm/train_words": its * (2 * w_reduce + w_bcast),
             "comm/train_messages": its * (2 * m_reduce + m_bcast)},
      predictions=decision)
