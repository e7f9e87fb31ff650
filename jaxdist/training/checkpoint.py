"""Functional checkpoints with orbax: the whole run state plus a little JSON bookkeeping.

The state pytree holds everything a run needs to continue (every worker's model, optimizer and
BatchNorm state, counters, the random key); batches derive from (seed, step, worker), so the step
is the data position. A checkpoint that cannot be read stops the run with one clear error and is
left as it is; nothing is saved before a restore has succeeded.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxdist.errors import UserError


class Checkpoints:
  """Checkpoints of one run in `directory`, keeping the newest `keep`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any) -> tuple[int, Any, dict]:
    """Restores the newest checkpoint onto the shardings of `abstract_state`."""
    step = self._manager.latest_step()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      state, meta = restored.state, restored.meta
      jax.tree.map(_check_shape, abstract_state, state)
    except Exception as e:  # orbax raises many types for unreadable or mismatched files
      cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise UserError(
          f"checkpoint: the checkpoint at {os.path.join(self.directory, str(step))} cannot be "
          f"restored ({type(e).__name__}: {cause[:300]}); it was left untouched: move it out of "
          f"{self.directory} to resume from an earlier one, or start in a new directory"
      ) from None
    return step, state, meta

  def save(self, step: int, state: Any, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))), force=True)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _check_shape(expected, restored):
  if expected.shape != restored.shape or expected.dtype != restored.dtype:
    raise ValueError(f"saved array {restored.shape} {restored.dtype} where the run has "
                     f"{expected.shape} {expected.dtype}")
