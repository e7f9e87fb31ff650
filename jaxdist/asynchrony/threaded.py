"""A real asynchronous runner on one machine: worker threads, each driving a jitted gradient step
on its own device against a shared parameter store, with no barrier ([S3 L987-1013]; the
counterpart of `simulator`).

Every worker repeats: read the store's model and version, compute a gradient on its device, push
it. The store applies each push on arrival to its current model, x <- x - gamma g (or gamma g / P
with `reduction="mean"`), under a short lock that makes one push atomic; reads take no lock. The
staleness of a push is the number of pushes the store applied between its read and its own: it is
measured, not imposed, and depends on the operating system's scheduling, the devices and the
machine's load.

NOT bit-reproducible, by nature: which worker reads which version is decided by the threads'
timing. Test properties (convergence on a convex problem, staleness >= 0 and bounded by the
pushes in flight), never exact numbers; the seeded `simulator` is the reproducible model.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxdist.asynchrony.simulator import REDUCTIONS, check_data
from jaxdist.errors import ArgumentError, check_at_least, check_choice


@dataclasses.dataclass
class ThreadedResult:
  params: Any  # the store's final model (numpy)
  staleness: np.ndarray  # every push's measured staleness, in the order applied
  workers: np.ndarray  # which worker made each push
  seconds: float

  @property
  def updates_per_second(self) -> float:
    return self.staleness.size / self.seconds


class _Store:
  """The shared parameters: numpy leaves, a version, a lock held only while a push is applied."""

  def __init__(self, params: Any, step: float):
    self.leaves, self.treedef = jax.tree.flatten(jax.tree.map(np.array, params))
    self.step, self.version, self._lock = step, 0, threading.Lock()
    self.log: list[tuple[int, int]] = []

  def read(self) -> tuple[int, Any]:
    version = self.version
    return version, jax.tree.unflatten(self.treedef, [leaf.copy() for leaf in self.leaves])

  def push(self, grads: Any, read_version: int, worker: int) -> None:
    with self._lock:
      for leaf, g in zip(self.leaves, jax.tree.leaves(grads), strict=True):
        leaf -= self.step * np.asarray(g, leaf.dtype)
      self.log.append((self.version - read_version, worker))
      self.version += 1


class ThreadedAsyncSGD:
  """Asynchronous SGD by threads, one per device.

  Args:
    loss_fn: `loss_fn(params, batch) -> scalar loss`.
    learning_rate: gamma, the step per push.
    data: `data(index, worker) -> batch` (a jax function; the index is the push's number).
    devices: one worker per device (default: every visible device).
    reduction: `"sum"` (every push at gamma) or `"mean"` (gamma / P).
  """

  def __init__(self, loss_fn: Callable, learning_rate: float, data: Callable, *,
               devices: list | None = None, reduction: str = "sum"):
    if not callable(loss_fn):
      raise ArgumentError("loss_fn", f"{loss_fn!r} is not a function",
                          "loss_fn(params, batch) -> scalar")
    check_at_least("learning_rate", learning_rate, 0)
    check_data(data)
    check_choice("reduction", reduction, REDUCTIONS)
    self.devices = list(devices) if devices is not None else jax.devices()
    if not self.devices:
      raise ArgumentError("devices", "empty", "one or more jax devices")
    self.learning_rate, self.reduction = learning_rate, reduction
    self._grad = jax.jit(lambda p, i, w: jax.grad(loss_fn)(p, data(i, w)))

  def run(self, params: Any, num_updates: int, first_index: int = 0) -> ThreadedResult:
    """Runs until the store has applied `num_updates` pushes in all; the pushes draw batches
    `first_index`, `first_index + 1`, ... (continue a run with the number it has done)."""
    check_at_least("num_updates", num_updates, 1, integer=True)
    check_at_least("first_index", first_index, 0, integer=True)
    workers = len(self.devices)
    step = self.learning_rate / workers if self.reduction == "mean" else self.learning_rate
    store = _Store(params, step)
    issued, issue_lock = [first_index], threading.Lock()
    errors: list[BaseException] = []

    def worker(w: int, device) -> None:
      try:
        while True:
          with issue_lock:
            if issued[0] >= first_index + num_updates:
              return
            index = issued[0]
            issued[0] += 1
          version, model = store.read()
          grads = self._grad(jax.device_put(model, device), jax.device_put(index, device),
                             jax.device_put(w, device))
          store.push(jax.device_get(grads), version, w)
      except BaseException as e:  # re-raised by run, in the caller's thread
        errors.append(e)

    for w, device in enumerate(self.devices):  # compile on every device before the clock starts
      jax.block_until_ready(self._grad(jax.device_put(params, device), jax.device_put(0, device),
                                       jax.device_put(w, device)))
    threads = [threading.Thread(target=worker, args=(w, d), daemon=True)
               for w, d in enumerate(self.devices)]
    start = time.perf_counter()
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    seconds = time.perf_counter() - start
    if errors:
      raise errors[0]
    log = np.asarray(store.log, np.int64).reshape(-1, 2)
    return ThreadedResult(jax.tree.unflatten(store.treedef, store.leaves), log[:, 0], log[:, 1],
                          seconds)
