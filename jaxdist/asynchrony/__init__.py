"""Asynchrony and stragglers (COMP 545 lecture 8, "distributing optimization in large-scale
settings"): simulated and real asynchronous SGD, Hogwild!, parameter servers, backup workers,
one-shot averaging, coordinate parallelism.

- `compute_time`: per-worker compute-time models (`Constant`, `Exponential`, `LogNormal`,
  `Straggler`).
- `simulator`: asynchronous SGD with a parameter server on a seeded discrete-event clock
  (`async_ps`; sum or mean, Adagrad, Downpour's fetch and push periods).
- `stale_sgd`: imposed staleness (`Fixed`, `Bounded`, `Drawn`) with `WholeVector` or `TornReads`;
  `hogwild` on the sparse objectives of `sparse` (with Omega, Delta, rho); `cyclades`.
- `threaded`: a real asynchronous runner, worker threads on their own devices.
- `backup`: synchronous SGD with backup workers, the plain synchronous parameter server.
- `oneshot`: one-shot model averaging and prediction averaging.
- `coordinate`: coordinate (model) parallel gradients, block coordinate descent.
"""

from jaxdist.asynchrony import (
  backup,
  compute_time,
  coordinate,
  cyclades,
  oneshot,
  simulator,
  sparse,
  stale_sgd,
  threaded,
)
from jaxdist.asynchrony.backup import BackupSGD, backup_sgd, expected_wait, sync_ps
from jaxdist.asynchrony.compute_time import ComputeTime, Constant, Exponential, LogNormal, Straggler
from jaxdist.asynchrony.coordinate import (
  block_coordinate_descent,
  block_gradients,
  coordinate_parallel_gd,
)
from jaxdist.asynchrony.cyclades import Cyclades
from jaxdist.asynchrony.oneshot import OneShotAveraging, one_shot_averaging, prediction_average
from jaxdist.asynchrony.simulator import (
  AsyncParameterServer,
  AsyncState,
  async_ps,
  sampler,
  staleness_summary,
)
from jaxdist.asynchrony.sparse import (
  Quadratic,
  SparseData,
  SparseLeastSquares,
  SparseLogistic,
  SparseSVM,
  objective_value,
  random_sparse,
  sparsity,
)
from jaxdist.asynchrony.stale_sgd import (
  Bounded,
  Drawn,
  Fixed,
  StaleSGD,
  StaleState,
  TornReads,
  WholeVector,
  hogwild,
)
from jaxdist.asynchrony.threaded import ThreadedAsyncSGD, ThreadedResult

__all__ = [
  "AsyncParameterServer", "AsyncState", "BackupSGD", "Bounded", "ComputeTime", "Constant",
  "Cyclades", "Drawn", "Exponential", "Fixed", "LogNormal", "OneShotAveraging", "Quadratic",
  "SparseData", "SparseLeastSquares", "SparseLogistic", "SparseSVM", "StaleSGD", "StaleState",
  "Straggler",
  "ThreadedAsyncSGD", "ThreadedResult", "TornReads", "WholeVector", "async_ps", "backup",
  "backup_sgd", "block_coordinate_descent", "block_gradients", "compute_time", "coordinate",
  "coordinate_parallel_gd", "cyclades", "expected_wait", "hogwild", "objective_value",
  "one_shot_averaging", "oneshot", "prediction_average", "random_sparse", "sampler",
  "simulator", "sparse", "sparsity", "stale_sgd", "staleness_summary", "sync_ps", "threaded",
]
