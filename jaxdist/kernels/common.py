"""What the kernel methods share: partitions as workers on the worker axis, the report every
method returns, and the communication counts of Tables 2.6/2.7.

Partitions are workers: a per-partition solve is written for one worker and run for all of them
by `jaxdist.core.workers` (vmapped on one device, or with shard_map over devices), with the
collectives (`gather`) as the only way to reach the others. Communication is counted in words
(one number) and messages, with the usual tree collectives among P nodes: an all-reduce of w
words is 2(P - 1) messages of w words (reduce, then broadcast), a broadcast P - 1 messages.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxdist.core import layouts
from jaxdist.core import workers as workers_lib

SIMULATED = layouts.Simulated()  # the default layout: every worker vmapped on one device


def worker_grid(layout: Any, num_workers: int) -> workers_lib.Workers:
  """P workers on `layout`; `Sharded()` with every device uses as many devices as divide P."""
  layouts.check_layout(layout)
  if isinstance(layout, layouts.Sharded) and layout.num_devices == 0:
    layout = layouts.Sharded(math.gcd(num_workers, len(jax.devices())))
  return layout.workers((num_workers,), ("workers",))


def on_workers(workers: workers_lib.Workers, fn: Callable, per_worker: tuple,
               shared: tuple = ()) -> Any:
  """`fn(*per_worker_slices, *shared)` for every worker; per-worker outputs stacked `[P, ...]`."""
  in_axes = (0,) * len(per_worker) + (None,) * len(shared)
  args = (*per_worker, *shared)
  placed = jax.device_put(args, workers.shardings(in_axes, args))
  return _compiled(workers, fn, in_axes)(*placed)


_CACHE: dict = {}


def _compiled(workers, fn, in_axes):
  mesh = workers.mesh
  devices = None if mesh is None else (tuple(d.id for d in mesh.devices.flat), mesh.axis_names)
  key = (devices, workers.shape, fn, in_axes)  # equal meshes share one compiled program
  if key not in _CACHE:
    _CACHE[key] = jax.jit(workers.map(fn, in_axes=in_axes, out_axes=0))
  return _CACHE[key]


def allreduce(words: float, p: int) -> tuple[float, int]:
  """(words, messages) of an all-reduce of `words` among p nodes."""
  return 2 * (p - 1) * words, 2 * (p - 1)


def broadcast(words: float, p: int) -> tuple[float, int]:
  return (p - 1) * words, p - 1


@dataclasses.dataclass
class Report:
  """One method's run: what it was, on which partition, how well, how fast, what it sent."""

  method: str
  partitioner: str
  num_workers: int
  score: float  # test accuracy (SVM) or test MSE (KRR)
  train_seconds: float
  predict_seconds: float
  words: float = 0.0  # communicated in training and prediction (`extra`: training alone)
  messages: int = 0
  sizes: tuple = ()  # rows per worker (per partition at the first level)
  extra: dict = dataclasses.field(default_factory=dict)
  predictions: np.ndarray | None = dataclasses.field(default=None, repr=False)

  def record(self) -> dict:
    """A flat dict of scalars (for metrics files and tables)."""
    out = {"score": self.score, "train_seconds": self.train_seconds,
           "predict_seconds": self.predict_seconds, "comm/words": self.words,
           "comm/messages": self.messages, "num_workers": self.num_workers,
           "partition/min_size": int(min(self.sizes)) if self.sizes else 0,
           "partition/max_size": int(max(self.sizes)) if self.sizes else 0}
    out.update({k: v for k, v in self.extra.items() if np.isscalar(v)})
    return out


def timed(fn: Callable, *args, **kwargs) -> tuple[Any, float]:
  """fn(...) with its wall time, outputs ready."""
  started = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - started


def accuracy(labels: np.ndarray, decision: np.ndarray) -> float:
  return float(np.mean(np.where(np.asarray(decision) >= 0, 1.0, -1.0) == np.asarray(labels)))
