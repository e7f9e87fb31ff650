"""The batching family end to end: a tiny config runs through jaxdist.experiment.run, writes its
metrics and resumes; bad fields are named."""

from __future__ import annotations

import json
import os

import pytest

from jaxdist.errors import ConfigError
from jaxdist.experiment import batching as family
from jaxdist.experiment import run, validate


def tiny(data_dir):
  c = family.default()
  c.data.update(name="digits", data_dir=data_dir)
  c.model.hidden = (16,)
  c.rule.update(name="radadamp", initial_batch=8, max_batch=64, rho=0.9)
  c.workers.update(num_workers=2, examples_per_worker=16)
  c.train.update(num_epochs=0.3, micro_batch=16, updates_per_chunk=40)
  return c


def test_a_tiny_run_writes_metrics_and_resumes(data_dir, tmp_path):
  config = tiny(data_dir)
  last = run(config, str(tmp_path))
  assert not last["preempted"] and last["epoch"] >= 0.3
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert {"updates", "examples", "batch", "workers", "time/modelled",
          "time/measured_per_update", "test/accuracy"} <= set(records[-1])
  assert records[-1]["test/accuracy"] > 0.3
  again = run(config, str(tmp_path))  # complete: restored, nothing trained
  assert again["updates"] == last["updates"]


def test_bad_fields_are_named(data_dir):
  config = tiny(data_dir)
  config.rule.name = "adadamp"
  with pytest.raises(ConfigError, match=r"rule\.name"):
    validate(config)
  config = tiny(data_dir)
  config.rule.rho = 1.5
  with pytest.raises(ConfigError, match=r"rule\.rho"):
    validate(config)
  config = tiny(data_dir)
  config.compression.name = "atomo"
  config.compression.budget = -1.0
  with pytest.raises(ConfigError, match=r"compression\.budget"):
    validate(config)


@pytest.mark.parametrize("field, value, message", [
    ("workers.max_workers", -3, r"^workers.max_workers: must be >= 0, got -3"),
    ("workers.examples_per_worker", 0, r"^workers.examples_per_worker: must be > 0"),
    ("rule.max_batch", -5, r"^rule.max_batch: must be >= 0, got -5"),
    ("time_model.per_example", -1.0, r"^time_model.per_example: must be >= 0"),
    ("train.max_updates", -1, r"^train.max_updates: must be > 0"),
    ("optim.momentum", 1.5, r"^optim.momentum: 1.5 is not in \[0, 1\)"),
])
def test_bad_sizes_and_rates_are_named(data_dir, field, value, message):
  config = tiny(data_dir)
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=message):
    validate(config)
