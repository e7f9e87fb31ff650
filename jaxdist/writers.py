"""Metrics to the workdir: JSON lines (`metrics.jsonl`) and TensorBoard events (tensorboardX)."""

import json
import os

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends `{"step": s, name: value, ...}` records; on resume drops records after `resume_step`,
  which an interrupted run wrote after its last checkpoint. A writer that is not `enabled` (on
  every process but the first) writes nothing."""

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, METRICS_FILE)
    kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    self._file = open(self.path, "a")
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                      purge_step=resume_step + 1)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    self._file.write(json.dumps({"step": step, **scalars}) + "\n")
    self._file.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    if not self.enabled:
      return
    self._file.close()
    self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """The records of `metrics.jsonl` in `workdir` (empty if there is none)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
