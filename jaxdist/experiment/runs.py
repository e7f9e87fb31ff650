"""A run from a config: the experiment built, its workdir checked, the library's runner driven
with metrics written, checkpoints in the workdir, SIGTERM answered with a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdist import models
from jaxdist.core import distributed
from jaxdist.errors import UserError
from jaxdist.experiment.build import RUN_FIELDS, Experiment, fields, validate
from jaxdist.experiment.writers import MetricWriter
from jaxdist.objectives import masking

# Fields that may differ when a run is resumed: they change what is logged or saved, not the run.
RESUMABLE_FIELDS = ("train.log_every", "eval.every_steps", "eval.batch_size",
                    "checkpoint.every_steps", "checkpoint.keep", "data.data_dir",
                    "workers.backend", "workers.num_devices")


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """`{"section.field": value}` for every field (tuples as lists, as JSON has them)."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return flat


def _check_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """The workdir must be writable and, if it holds a run, hold this run."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir: cannot write to {workdir} ({e.strerror}); choose a directory "
                    "you can write to") from None
  saved_path = os.path.join(workdir, "config.json")
  if not os.path.exists(saved_path):
    return
  with open(saved_path) as f:
    saved = json.load(f)
  current = flatten(config)
  for field in sorted(set(saved) | set(current)):
    if field not in RESUMABLE_FIELDS and saved.get(field) != current.get(field):
      raise UserError(
          f"workdir: {workdir} holds a run with {field}={saved.get(field)!r} but the config has "
          f"{field}={current.get(field)!r}; use a new --workdir, or the same config to resume "
          f"(fields that may change on resume: {', '.join(RESUMABLE_FIELDS)})")


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
  models.save(os.path.join(workdir, "model.npz"),
              *experiment.deployed_weights(params, model_state))
  if experiment.config.masking.name == "learned":
    with open(os.path.join(workdir, "masks.npz"), "wb") as f:
      np.savez(f, **masking.export_masks(params))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as `config` says, resuming from the newest checkpoint in `workdir` if there is one.

  Returns the last record and the step, with `"preempted": True` if SIGTERM stopped the run
  before its end.
  """
  validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir, config)
  experiment = Experiment(config)
  params, model_state = experiment.initial_model()
  if distributed.is_primary():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(flatten(config), f, indent=1)
  writer = MetricWriter(workdir, enabled=distributed.is_primary())
  stop = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  if in_main_thread:
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
  try:
    with fields(RUN_FIELDS):
      result = experiment.runner.fit(
          params, model_state, num_steps=experiment.total_steps,
          checkpoint_dir=os.path.join(workdir, "checkpoints"),
          checkpoint_every=config.checkpoint.every_steps, keep=config.checkpoint.keep,
          progress="lines" if not sys.stdout.isatty() else True,
          on_record=lambda record: writer.write(record["step"], {
              k: v for k, v in record.items() if k != "step"}),
          record_extras=experiment.record_extras, should_stop=stop.is_set,
          **experiment.evaluation())
  finally:
    writer.close()
    if in_main_thread:
      signal.signal(signal.SIGTERM, previous_handler)
  last = {**result.final, "step": result.step}
  if result.preempted:
    _say(f"stopped by SIGTERM at step {result.step}; checkpoint saved; run the same command to "
         "resume")
    return {**last, "preempted": True}
  missing = not os.path.exists(os.path.join(workdir, "model.npz"))
  if result.step > result.started or missing:
    save_model(experiment, result.state, workdir)
  if "test/accuracy" in last:
    _say(f"done: step {result.step}, test accuracy {last['test/accuracy']:.4f}")
  return {**last, "preempted": False}
