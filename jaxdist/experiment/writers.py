"""Metrics to the workdir: JSON lines (`metrics.jsonl`) and TensorBoard events (tensorboardX)."""

from __future__ import annotations

import json
import os

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


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
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run, closed in close())
    self._tensorboard = SummaryWriter(os.path.join(self.workdir, "tensorboard"),
                                      purge_step=first_step)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    if self._file is None:
      self._open(step)
    self._file.write(json.dumps({"step": step, **scalars}) + "\n")
    self._file.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """The records of `metrics.jsonl` in `workdir` (empty if there is none)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
