"""The `search` family end to end: a tiny search run from a config writes its table, best
config, plot and metrics; stopped and run again, it ends with the identical results."""

import contextlib
import itertools
import json
import os

import pytest

from jaxdist.errors import ConfigError
from jaxdist.experiment import run, validate
from jaxdist.experiment import search as search_family


def _config(data_dir):
  config = search_family.default()
  config.search.update(max_iter=3, aggressiveness=3.0, steps_per_call=2)
  config.space = dict(learning_rate="log_uniform(0.01, 1.0)", momentum="uniform(0.0, 0.9)")
  config.data.update(name="digits", data_dir=data_dir, validation=300)
  config.model.hidden = (16,)
  return config


def _read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return f.read()


def test_a_search_from_a_config(data_dir, tmp_path, monkeypatch):
  config = _config(data_dir)
  whole = str(tmp_path / "whole")
  best = run(config, whole)
  assert not best["preempted"] and 0 <= best["test_accuracy"] <= 1
  for name in ("results.json", "results.csv", "best.json", "scores.png", "metrics.jsonl",
               "config.json"):
    assert os.path.exists(os.path.join(whole, name)), name
  results = json.loads(_read(whole, "results.json"))
  assert len(results["trials"]) == results["metadata"]["n_models"] == 5  # 3@1 -> 1@3, 2@3
  header = _read(whole, "results.csv").splitlines()[0]
  assert header.startswith("bracket,trial,learning_rate,momentum,calls,score")
  assert json.loads(_read(whole, "best.json"))["score"] == best["score"]

  # stopped after its first unit (as SIGTERM would), then the same command again
  polls = itertools.count()

  @contextlib.contextmanager
  def stop_soon():
    yield type("Stop", (), {"is_set": staticmethod(lambda: next(polls) >= 1)})()

  broken = str(tmp_path / "broken")
  monkeypatch.setattr(search_family, "stop_on_sigterm", stop_soon)
  assert run(config, broken)["preempted"]
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(broken, "results.json"))
  assert run(config, broken) == best
  for name in ("results.json", "best.json", "metrics.jsonl"):
    assert _read(broken, name) == _read(whole, name)


@pytest.mark.parametrize("field, value, message", [
    ("space", dict(lr="uniform(0, 1)"), "space.lr: not a tunable hyperparameter"),
    ("space", dict(batch_size="uniform(8, 16)"), "space.batch_size: batch_size changes shapes"),
    ("space", dict(momentum="gauss(0, 1)"), "space.momentum: cannot read 'gauss(0, 1)'"),
    ("search.aggressiveness", 1.0, "search.aggressiveness: 1.0 keeps every model"),
    ("search.method", "bayes", "search.method: unknown value 'bayes'"),
    ("search.max_iters", 9, "search.max_iters: no such field in a search config"),
])
def test_bad_fields_are_named(field, value, message):
  config = search_family.default()
  section, _, key = field.partition(".")
  if key:
    config[section][key] = value
  else:
    config[section] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config)
