"""The asynchrony experiment family end to end: tiny configs run, resume bit-exactly, and name
their bad fields."""

import json
import os
import shutil

import ml_collections
import pytest

import jaxdist.experiment
from jaxdist.errors import ConfigError
from jaxdist.experiment import asynchrony as family
from jaxdist.experiment import overrides
from jaxdist.experiment.writers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny(data_dir, **algo):
  config = family.default()
  config.algo.update(num_workers=4, **algo)
  config.data.update(data_dir=data_dir, num_examples=200, dim=40, nonzeros=3)
  config.train.update(num_steps=4, log_every=2)
  config.checkpoint.every_steps = 2
  return config


def test_async_ps_runs_and_resumes_bit_exactly(tmp_path, data_dir):
  config = tiny(data_dir, name="async_ps", compute_time="lognormal")
  cut = str(tmp_path / "run")
  whole = jaxdist.experiment.run(config, cut)
  assert whole["step"] == 4 and not whole["preempted"] and whole["updates"] > 4
  shutil.rmtree(os.path.join(cut, "checkpoints", "4"))  # as if killed after the first chunk
  resumed = jaxdist.experiment.run(config, cut)
  assert resumed == whole
  assert [r["step"] for r in read_metrics(cut)] == [2, 4]
  with open(os.path.join(cut, "config.json")) as f:
    assert json.load(f)["algo.name"] == "async_ps"


@pytest.mark.parametrize("name", ["hogwild", "cyclades", "backup_sgd", "one_shot", "threaded",
                                  "bcd"])
def test_every_algorithm_runs(tmp_path, data_dir, name):
  config = tiny(data_dir, name=name, num_backup=1 if name == "backup_sgd" else 0,
                cyclades_batch=8)
  last = jaxdist.experiment.run(config, str(tmp_path / name))
  assert last["step"] == 4 and not last["preempted"]
  if name in ("hogwild", "cyclades"):
    assert read_metrics(str(tmp_path / name))[0]["omega"] == 3
  if name == "one_shot":
    assert 0 < last["ensemble/accuracy"] <= 1
  if name == "threaded":
    assert last["staleness/max"] >= 0 and last["test/accuracy"] > 0


def test_bad_fields_are_named():
  config = overrides.load(os.path.join(ROOT, "configs", "asynchrony", "async_ps.py") + ":cpu")
  config.algo.reduction = "avg"
  with pytest.raises(ConfigError, match=r"algo.reduction: unknown value 'avg'"):
    jaxdist.experiment.validate(config)
  config = family.default()
  config.algo.fetch_every = 3
  config.algo.push_every = 2
  with pytest.raises(ConfigError, match=r"algo.fetch_every: 3 is not a multiple"):
    jaxdist.experiment.validate(config)
  with pytest.raises(ConfigError, match=r"algo.tauu: no such field"):
    jaxdist.experiment.validate(ml_collections.ConfigDict({**family.default().to_dict(),
                                                           "algo": {"tauu": 1}}))


@pytest.mark.parametrize("name, fields, message", [
    ("bcd", {"data.dim": 10, "algo.num_workers": 3}, r"^algo.num_workers: 3 blocks do not divide"),
    ("cyclades", {"algo.cyclades_batch": 10**6}, r"^algo.cyclades_batch: 1000000 is more than"),
])
def test_sizes_the_library_would_refuse_are_named_as_fields(name, fields, message):
  config = family.default()
  config.algo.name = name
  for field, value in fields.items():
    section, key = field.split(".")
    config[section][key] = value
  with pytest.raises(ConfigError, match=message):
    jaxdist.experiment.validate(config)
