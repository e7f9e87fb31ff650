"""Metrics to the workdir: JSON lines (`metrics.jsonl`) and TensorBoard events (tensorboardX).

Every record is strict JSON: a value that is not finite is written as null. Files that are
rewritten (the metrics when a resumed run drops what an interrupted one wrote after its last
checkpoint, `config.json`) are replaced atomically: written beside, synced, renamed.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from tensorboardX import SummaryWriter

from jaxdist.errors import UserError

METRICS_FILE = "metrics.jsonl"


def finite_or_none(value: Any) -> Any:
  """`value`, or None for a float that is not finite (JSON has no NaN)."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_atomically(path: str, text: str) -> None:
  """Replaces `path` by `text` so that a reader sees the old file or the new one, never a part."""
  temporary = f"{path}.tmp"
  with open(temporary, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)


class MetricWriter:
  """Appends `{"step": s, name: value, ...}` records. The first record it writes, at step s,
  drops the records at steps >= s that an interrupted run wrote after its last checkpoint. A
  writer that is not `enabled` (on every process but the first) writes nothing."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir, self.enabled = workdir, enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._file = self._tensorboard = None

  def _open(self, first_step: int) -> None:
    kept = [r for r in read_metrics(self.workdir) if r["step"] < first_step]
    write_atomically(self.path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
    self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run, closed in close())
    self._tensorboard = SummaryWriter(os.path.join(self.workdir, "tensorboard"),
                                      purge_step=first_step)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    if self._file is None:
      self._open(step)
    record = {"step": step, **{k: finite_or_none(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record, allow_nan=False) + "\n")
    self._file.flush()
    for name, value in scalars.items():
      if record[name] is not None:
        self._tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._tensorboard.close()


def read_metrics(workdir: str, tolerant: bool = False) -> list[dict]:
  """The records of `metrics.jsonl` in `workdir` (empty if there is none). A torn last line,
  which a run killed while writing it leaves, is dropped; a damaged line before it is an error,
  or with `tolerant` the end of what is read."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, errors="replace") as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
  records = []
  for number, line in enumerate(lines, 1):
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise ValueError("not a record with a step")
    except ValueError:
      if number == len(lines) or tolerant:
        break  # torn by a kill while writing: the resumed run writes it again
      raise UserError(f"workdir: {path} line {number} is not a metrics record; move the file "
                      "away to resume without the earlier records") from None
    records.append(record)
  return records
