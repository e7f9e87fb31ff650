"""Partitioned kernel ridge regression ([You20] ch. 3, Alg. 8-11) over a (lambda, sigma) grid.

A training "iteration" of the chapter is one (lambda, sigma) pair of the grid: every method
solves every pair, and the best pair is picked by test MSE (L1249-1270). On every worker the
squared distances of its rows are computed once, then each grid point is one Cholesky solve of
the local (K + lambda m I) alpha = y (m local) and one prediction of every test point.

    dkrr    one global solve: each worker computes its block of rows of the kernel matrix, the
            blocks assemble the whole matrix, one Cholesky per grid point solves it (on one
            device here, where the thesis distributes the factorisation with ScaLAPACK)
    dc_krr  Alg. 8: even random partition, local solves, the average of the local predictions
    kkrr    k-means partition, average           kkrr2  k-means, nearest centre's model
    bkrr    K-balance (Alg. 9), average          bkrr2  Alg. 10: K-balance, nearest centre
    kkrr3, bkrr3  Alg. 11: the model closest to the *true* label predicts: an oracle that reads
            the test labels, a lower bound, not a method one can deploy (reported as such)
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_choice
from jaxdist.kernels import common, krr
from jaxdist.kernels import partition as partition_lib
from jaxdist.kernels.kernels import from_squared_distances, squared_distances

COMBINES = ("average", "nearest", "oracle")
METHODS = {  # name -> (partitioner, combine)
    "dc_krr": ("even", "average"), "kkrr": ("kmeans", "average"),
    "kkrr2": ("kmeans", "nearest"), "kkrr3": ("kmeans", "oracle"),
    "bkrr": ("kbalance", "average"), "bkrr2": ("kbalance", "nearest"),
    "bkrr3": ("kbalance", "oracle"),
}
ORACLES = ("kkrr3", "bkrr3")


def _grid_predictions(d_train, d_test, y, mask, gammas, lambdas):
  """Predictions `[G, t]` of one solve per (gamma, lambda) grid point."""
  def one(point):
    gamma, lam = point
    alpha = krr.solve_gram(from_squared_distances(d_train, gamma), y, lam, mask)
    return from_squared_distances(d_test, gamma) @ alpha
  return lax.map(one, (gammas, lambdas))


@functools.cache
def _local_fn(combine: str):
  def local(x, y, mask, centre, x_test, y_test, gammas, lambdas):
    predictions = _grid_predictions(squared_distances(x, x), squared_distances(x_test, x), y,
                                    mask, gammas, lambdas)
    everyone = collectives.gather(predictions)  # [P, G, t]
    if combine == "average":  # Alg. 8: one reduction of the predictions
      used = collectives.gather(jnp.any(mask))
      weights = used.astype(everyone.dtype) / jnp.sum(used)
      combined = jnp.sum(everyone * weights[:, None, None], axis=0)
    else:
      if combine == "nearest":  # Alg. 10: route by the partition's centres
        distance = jnp.sum((x_test - centre[None, :])**2, axis=-1)
        route = jnp.argmin(collectives.gather(distance), axis=0)
        route = jnp.broadcast_to(route[None, :], everyone.shape[1:])
      else:  # Alg. 11: the model closest to the true label (an oracle)
        route = jnp.argmin(jnp.abs(everyone - y_test[None, None, :]), axis=0)
      combined = jnp.take_along_axis(everyone, route[None], axis=0)[0]
    return jnp.mean((combined - y_test[None, :])**2, axis=-1), combined
  return local


def _dkrr_blocks(x, x_test):
  """DKRR, on each worker: its block of rows of the kernel matrix and of the test kernel."""
  x_all = collectives.gather(x).reshape((-1, x.shape[-1]))  # every worker needs every row
  return squared_distances(x, x_all), squared_distances(x_test, x)


@jax.jit
def _dkrr_solve(blocks, test_blocks, y, mask, y_test, gammas, lambdas):
  """DKRR's one global solve per grid point, on the matrix the workers' blocks assemble."""
  rows = blocks.shape[0] * blocks.shape[1]
  d_train = blocks.reshape(rows, rows)
  d_test = jnp.moveaxis(test_blocks, 0, 1).reshape(test_blocks.shape[1], rows)
  predictions = _grid_predictions(d_train, d_test, y.reshape(-1), mask.reshape(-1), gammas,
                                  lambdas)
  return jnp.mean((predictions - y_test[None, :])**2, axis=-1)[None], predictions[None]


def grid(lambdas, sigmas) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
  """The (lambda, sigma) grid as gammas = 1 / (2 sigma^2) and lambdas, one entry per point."""
  lambdas, sigmas = np.atleast_1d(lambdas), np.atleast_1d(sigmas)
  if np.any(sigmas <= 0):
    raise ArgumentError("sigmas", f"{sigmas.tolist()} has a value <= 0", "sigma > 0")
  if np.any(lambdas < 0):
    raise ArgumentError("lambdas", f"{lambdas.tolist()} has a value < 0", "lambda >= 0")
  points = [(float(lam), float(s)) for s in sigmas for lam in lambdas]
  gammas = np.array([1.0 / (2.0 * s**2) for _, s in points])
  return gammas, np.array([lam for lam, _ in points]), points


def krr_method(x, y, x_test, y_test, *, method: str = "dc_krr", num_workers: int = 8,
               lambdas=(1e-4,), sigmas=(1.0,), partitioner: str | None = None,
               layout: Any = common.SIMULATED, seed: int = 0) -> common.Report:
  """One KRR method of the module docstring over the (lambda, sigma) grid; the report's score
  is the best test MSE, its `extra` has the whole grid and the best pair."""
  check_choice("method", method, ("dkrr", *METHODS))
  x, y = np.asarray(x), np.asarray(y)
  dtype = jnp.asarray(np.zeros(1, x.dtype)).dtype
  if method == "dkrr":
    partitioner, combine = partitioner or "as_placed", "global"
  else:
    default, combine = METHODS[method]
    partitioner = partitioner or default
  started = time.perf_counter()
  part = partition_lib.make(partitioner, x, num_workers, seed)
  xp, yp, mask, _ = partition_lib.pack(part, x.astype(dtype), y.astype(dtype), multiple=1)
  gammas, lams, points = grid(lambdas, sigmas)
  workers = common.worker_grid(layout, num_workers)
  shared = (jnp.asarray(x_test, dtype), jnp.asarray(y_test, dtype), jnp.asarray(gammas, dtype),
            jnp.asarray(lams, dtype))
  if method == "dkrr":
    def dkrr():
      blocks, test_blocks = common.on_workers(workers, _dkrr_blocks, (xp,), shared[:1])
      return _dkrr_solve(blocks, test_blocks, yp, mask, *shared[1:])
    (mse, predictions), seconds = common.timed(dkrr)
  else:
    (mse, predictions), seconds = common.timed(
        common.on_workers, workers, _local_fn(combine),
        (xp, yp, mask, part.centres.astype(dtype)), shared)
  total = time.perf_counter() - started
  mse, predictions = np.asarray(mse[0]), np.asarray(predictions[0])
  best = int(np.argmin(mse))
  n, p, t = x.shape[1], num_workers, len(x_test)
  words, messages = (part.moved() * (n + 1), part.moves()) if method != "dkrr" else (0, 0)
  for _ in range(part.kmeans_iterations):
    w, msg = common.allreduce(p * (n + 1), p)
    words, messages = words + w, messages + msg
  if method == "dkrr":  # all-gather of the rows and of the kernel's row blocks
    w, msg = common.allreduce(len(x) * n + len(x)**2 + len(points) * len(x), p)
  elif combine == "average":  # one reduction of every test prediction per grid point
    w, msg = common.allreduce(t * len(points), p)
  elif combine == "nearest":  # the routing argmin, then one sum of the squared errors
    w, msg = common.allreduce(2 * t + len(points), p)
  else:
    w, msg = common.allreduce(2 * t * len(points), p)
  return common.Report(
      method=method, partitioner=part.name, num_workers=p, score=float(mse[best]),
      train_seconds=total, predict_seconds=0.0, words=float(words + w),
      messages=int(messages + msg), sizes=tuple(int(s) for s in part.sizes),
      extra={"best_lambda": points[best][0], "best_sigma": points[best][1],
             "grid_mse": mse.tolist(), "grid": points, "iterations": len(points),
             "solve_seconds": seconds, "oracle": method in ORACLES,
             "seconds_per_iteration": seconds / len(points)},
      predictions=predictions[best])
