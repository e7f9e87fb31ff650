"""The federated family end to end: a tiny config run, resumed, plotted."""

from __future__ import annotations

import json
import os

import pytest

from jaxdist.errors import ConfigError
from jaxdist.experiment import federated, run, validate
from jaxdist.experiment.writers import read_metrics


def tiny(data_dir, **algo):
  config = federated.default()
  config.data.update(name="digits", data_dir=data_dir)
  config.model.hidden = (16,)
  config.clients.update(num_clients=8, fraction=0.5, batch_size=16, dirichlet_alpha=0.5)
  config.algo.update(**{"name": "feddf", "distill_steps": 20, "validate_every": 10,
                        "patience": 20, "drop_worst": True, **algo})
  config.train.update(num_rounds=4, log_every=2)
  config.eval.every_rounds = 2
  config.checkpoint.every_rounds = 2
  return config


def test_a_federated_config_runs_resumes_and_plots(tmp_path, data_dir):
  config = tiny(data_dir, name="fedprox")  # FedDF's numbers: tests/federated/test_federated.py
  last = run(config, str(tmp_path))
  assert not last["preempted"] and last["step"] == 4
  records = read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [2, 4]
  for name in ("test/accuracy", "train/local/accuracy", "comm/bits_up", "comm/bits_down",
               "round"):
    assert name in records[-1], name
  assert records[-1]["test/accuracy"] > 0.2  # ten classes: above chance after four rounds
  assert json.loads((tmp_path / "config.json").read_text())["algo.name"] == "fedprox"
  assert os.path.exists(tmp_path / "model.npz")
  again = run(config, str(tmp_path))  # complete: resumed at the end, the same record
  assert again["test/accuracy"] == last["test/accuracy"]
  federated.plot([str(tmp_path)], str(tmp_path / "rounds.png"))
  assert os.path.getsize(tmp_path / "rounds.png") > 0
  assert federated.rounds_to(records, 0.0) == 2 and federated.rounds_to(records, 2.0) is None


@pytest.mark.parametrize("field, value, message", [
    ("algo.name", "fedsgd", r"algo.name: unknown value 'fedsgd'"),
    ("clients.fraction", 1.5, r"clients.fraction: 1.5 is not in \(0, 1\]"),
    ("algo.server_momentum", 1.0, r"algo.server_momentum: 1.0 is not in"),  # with fedavgm
    ("algo.mime_momentum", 1.0, r"algo.mime_momentum: 1.0 is not in"),  # with mimelite
    ("algo.distill_steps", -1, r"algo.distill_steps: must be >= 0"),
    ("eval.every_rounds", 3, r"eval.every_rounds: not a multiple of train.log_every"),
])
def test_bad_fields_are_named(field, value, message):
  config = tiny("", name="mimelite" if "mime" in field else
                "fedavgm" if "momentum" in field else "feddf")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=message):
    validate(config)
