"""Functional checkpoints with orbax: the whole run state plus a little JSON bookkeeping.

The state pytree holds everything a run needs to continue (every worker's model, optimizer and
BatchNorm state, counters, the random key); batches derive from (seed, step, worker), so the step
is the data position.

Integrity: every checkpoint carries a fingerprint of each array of the state (a sum of its bits,
each 32-bit word weighted by an odd number of its position, modulo 2^32: any flipped bit changes
it, and it is the same whatever the layout). A restore checks it. A newest checkpoint that
cannot be read or does not match is reported in one line and moved to `damaged/` once an older
one restores; if none restores, the run stops with one line and nothing is moved. Nothing is
saved before a restore has succeeded.

`DirectoryLock` gives a directory to one run at a time (an exclusive `flock`, which the OS
releases when the process dies, so a killed run never blocks its own resume).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax import lax

from jaxdist.core import distributed
from jaxdist.errors import UserError

DAMAGED = "damaged"


class DirectoryLock:
  """An exclusive lock on `directory` for this process (one lock file per process index)."""

  def __init__(self, directory: str, what: str = "directory"):
    self.directory, self.what = os.path.abspath(directory), what
    self._file = None

  def acquire(self) -> None:
    os.makedirs(self.directory, exist_ok=True)
    path = os.path.join(self.directory, f".lock.{jax.process_index()}")
    self._file = open(path, "a")  # noqa: SIM115 (held for the run, closed in release())
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self._file.close()
      self._file = None
      raise UserError(f"{self.what}: {self.directory} is in use by another run (it holds "
                      f"{os.path.basename(path)}); wait for it to end, or use another "
                      f"{self.what}") from None

  def release(self) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self) -> DirectoryLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _words(x: jax.Array) -> jax.Array:
  """The bits of `x` as uint32 words."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  size = x.dtype.itemsize
  if size >= 4:
    return lax.bitcast_convert_type(x, jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16}[size]
  return lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprints(tree: Any) -> list[jax.Array]:
  def leaf(x):
    words = _words(x).reshape(-1)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(2654435761) | jnp.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)

  return [leaf(x) for x in jax.tree.leaves(tree)]


def fingerprints(tree: Any) -> list[int]:
  """One 32-bit fingerprint per array of `tree` (every process gets the same numbers)."""
  return [int(v) for v in jax.device_get(_fingerprints(tree))]


class Checkpoints:
  """Checkpoints of one run in `directory`, keeping the newest `keep`."""

  def __init__(self, directory: str, keep: int, say=print):
    self.directory, self.keep, self.say = os.path.abspath(directory), keep, say
    self._lock = DirectoryLock(self.directory, "checkpoint_dir")
    self._lock.acquire()
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True)
    return ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any) -> tuple[int, Any, dict]:
    """Restores the newest checkpoint that is intact onto the shardings of `abstract_state`."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    failures = []
    for step in steps:
      try:
        state, meta = self._restore(step, abstract_state)
      except Exception as e:  # orbax raises many types for unreadable or mismatched files
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        failures.append((step, f"{type(e).__name__}: {cause[:200]}"))
        if len(failures) < len(steps):
          self.say(f"the checkpoint at step {step} is damaged ({failures[-1][1]}); trying the "
                   "one before it")
        continue
      self._quarantine(failures)
      return step, state, meta
    listed = "; ".join(f"step {s}: {c}" for s, c in failures)
    raise UserError(
        f"checkpoint: no checkpoint in {self.directory} can be restored ({listed}); they were "
        "left untouched: move them out to start again, or start in a new directory")

  def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    state, meta = restored.state, restored.meta
    jax.tree.map(_check_shape, abstract_state, state)
    expected = meta.get("fingerprints")
    if expected is None:
      raise ValueError("the checkpoint carries no fingerprints")
    if fingerprints(state) != expected:
      raise ValueError("its arrays do not match their fingerprints (changed on disk)")
    return state, meta

  def _quarantine(self, failures: list[tuple[int, str]]) -> None:
    """Moves the newer checkpoints that failed to `damaged/`, once an older one restored."""
    if failures:
      distributed.barrier("jaxdist_checkpoint_quarantine")
      if distributed.is_primary():
        os.makedirs(os.path.join(self.directory, DAMAGED), exist_ok=True)
        for step, _ in failures:
          target = os.path.join(self.directory, DAMAGED, str(step))
          if os.path.exists(target):
            shutil.rmtree(target)
          shutil.move(os.path.join(self.directory, str(step)), target)
      distributed.barrier("jaxdist_checkpoint_quarantined")
      self._manager.close()
      self._manager = self._open()
      moved = ", ".join(str(s) for s, _ in failures)
      self.say(f"moved the damaged checkpoint(s) of step {moved} to "
               f"{os.path.join(self.directory, DAMAGED)}")

  def save(self, step: int, state: Any, meta: dict) -> None:
    meta = {**meta, "fingerprints": fingerprints(state)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def close(self) -> None:
    try:
      self._manager.wait_until_finished()
      self._manager.close()
    finally:
      self._lock.release()


def _check_shape(expected, restored):
  if expected.shape != restored.shape or expected.dtype != restored.dtype:
    raise ValueError(f"saved array {restored.shape} {restored.dtype} where the run has "
                     f"{expected.shape} {expected.dtype}")
