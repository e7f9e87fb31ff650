"""A run from a config: the experiment built, its workdir checked and locked, the library's runner
driven with metrics written, checkpoints in the workdir, SIGTERM answered with a checkpoint.

A run claims its workdir (writes `config.json`) only once its first chunk has trained, so a run
that fails before (a bad value found while compiling, say) leaves nothing that blocks the
corrected config. Every run that reaches its end writes its outputs (`model.npz`, `masks.npz`,
`config.json`) from the final state, atomically: a rerun of a complete run restores what a kill
or a damaged file took away.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdist import models
from jaxdist.core import distributed
from jaxdist.errors import UserError
from jaxdist.experiment import families
from jaxdist.experiment.build import RUN_FIELDS, Experiment, fields, validate
from jaxdist.experiment.writers import (
  METRICS_FILE,
  MetricWriter,
  finite_or_none,
  read_metrics,
  write_atomically,
)
from jaxdist.objectives import masking
from jaxdist.training.checkpoint import DirectoryLock

CONFIG_FILE = "config.json"
# Fields that may differ when a run is resumed: they change what is logged or saved, not the run.
RESUMABLE_FIELDS = ("train.log_every", "eval.every_steps", "eval.batch_size",
                    "checkpoint.every_steps", "checkpoint.keep", "data.data_dir",
                    "workers.backend", "workers.num_devices", "train.on_nonfinite")


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """`{"section.field": value}` for every field (tuples as lists, as JSON has them)."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return flat


def _check_writable(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir: cannot write to {workdir} ({e.strerror}); choose a directory "
                    "you can write to") from None


def _check_saved_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """If the workdir holds a run, it must be this run."""
  saved_path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(saved_path):
    return
  try:
    with open(saved_path) as f:
      saved = json.load(f)
    if not isinstance(saved, dict):
      raise ValueError("not a JSON object")
  except (OSError, ValueError) as e:
    raise UserError(f"workdir: {saved_path} is damaged ({type(e).__name__}: "
                    f"{str(e)[:100]}); restore it, or move it away if this config is the "
                    "run's") from None
  current = flatten(config)
  for field in sorted(set(saved) | set(current)):
    if field not in RESUMABLE_FIELDS and saved.get(field) != current.get(field):
      raise UserError(
          f"workdir: {workdir} holds a run with {field}={saved.get(field)!r} but the config has "
          f"{field}={current.get(field)!r}; use a new --workdir, or the same config to resume "
          f"(fields that may change on resume: {', '.join(RESUMABLE_FIELDS)})")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
  """An event that SIGTERM sets while the block runs (in the main thread), for `should_stop`."""
  stop = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  if in_main_thread:
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
  try:
    yield stop
  finally:
    if in_main_thread:
      signal.signal(signal.SIGTERM, previous_handler)


def claim_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes config.json once (process 0): the workdir now holds this run."""
  if distributed.is_primary() and not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    write_atomically(os.path.join(workdir, CONFIG_FILE), json.dumps(flatten(config), indent=1))


def _say(message: str) -> None:
  """For the user, from process 0 only."""
  if distributed.is_primary():
    print(message, flush=True)


def save_model(experiment: Experiment, state: Any, workdir: str) -> None:
  """Writes the averaged model as a plain one (masks applied) to workdir/model.npz, and for
  learned masks the packed binary masks, a task's whole cost, to workdir/masks.npz."""
  params, model_state = experiment.runner.deployed(state)  # every process takes part
  if not distributed.is_primary():
    return
  path = os.path.join(workdir, "model.npz")
  models.save(path + ".tmp", *experiment.deployed_weights(params, model_state))
  os.replace(path + ".tmp", path)
  if experiment.config.masking.name == "learned":
    path = os.path.join(workdir, "masks.npz")
    with open(path + ".tmp", "wb") as f:
      np.savez(f, **masking.export_masks(params))
    os.replace(path + ".tmp", path)


def rewrite_metrics(workdir: str, history: list[dict]) -> None:
  """Writes metrics.jsonl again from the run's own records (kept in its checkpoints) when the
  file lacks some of them: deleted, truncated, or torn by a kill."""
  steps = [r["step"] for r in read_metrics(workdir, tolerant=True)]
  if steps != [r["step"] for r in history]:
    write_atomically(os.path.join(workdir, METRICS_FILE), "".join(
        json.dumps({k: finite_or_none(v) for k, v in r.items()}, allow_nan=False) + "\n"
        for r in history))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as `config` says, resuming from the newest checkpoint in `workdir` if there is one.

  Returns the last record and the step, with `"preempted": True` if SIGTERM stopped the run
  before its end.
  """
  validate(config)
  other = families.module(config)
  workdir = os.path.abspath(workdir)
  _check_writable(workdir)
  with DirectoryLock(workdir, "workdir"):
    _check_saved_config(workdir, config)
    return _run(config, workdir) if other is None else other.run(config, workdir)


def fit_in_workdir(config: ml_collections.ConfigDict, workdir: str, fit, mapping=RUN_FIELDS):
  """`fit(on_record=..., should_stop=..., progress=...)` (a runner's fit with the rest of its
  arguments bound) with its records written to the workdir's metrics, config.json claimed at
  the first record, SIGTERM answered by stopping at the next chunk with a checkpoint, and the
  argument errors of `mapping` named as config fields."""
  writer = MetricWriter(workdir, enabled=distributed.is_primary())

  def on_record(record):
    claim_workdir(workdir, config)
    writer.write(record["step"], {k: v for k, v in record.items() if k != "step"})

  with stop_on_sigterm() as stop, fields(mapping):
    try:
      return fit(progress="lines" if not sys.stdout.isatty() else True, on_record=on_record,
                 should_stop=stop.is_set)
    finally:
      writer.close()


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  experiment = Experiment(config, validated=True)  # by run(), before the workdir was touched
  params, model_state = experiment.initial_model()
  result = fit_in_workdir(config, workdir, functools.partial(
      experiment.runner.fit, params, model_state, num_steps=experiment.total_steps,
      checkpoint_dir=os.path.join(workdir, "checkpoints"),
      checkpoint_every=config.checkpoint.every_steps, keep=config.checkpoint.keep,
      record_extras=experiment.record_extras, **experiment.evaluation()))
  last = {**result.final, "step": result.step}
  if result.preempted:
    _say(f"stopped by SIGTERM at step {result.step}; checkpoint saved; run the same command to "
         "resume")
    return {**last, "preempted": True}
  claim_workdir(workdir, config)
  save_model(experiment, result.state, workdir)
  if distributed.is_primary():
    rewrite_metrics(workdir, result.history)
  if "test/accuracy" in last:
    _say(f"done: step {result.step}, test accuracy {last['test/accuracy']:.4f}")
  return {**last, "preempted": False}
