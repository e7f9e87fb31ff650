"""A config's `family` picks the module that validates and runs it."""

import sys
import types

import ml_collections
import pytest

from jaxdist.errors import ConfigError
from jaxdist.experiment import families, run, validate


def test_unknown_family_is_named():
  with pytest.raises(ConfigError, match=r"family: unknown value 'nope' \(allowed: 'training'"):
    validate(ml_collections.ConfigDict(dict(family="nope")))


def test_a_family_validates_and_runs_its_configs(monkeypatch, tmp_path):
  calls = []
  fake = types.ModuleType("fake_family")
  fake.validate = lambda config: calls.append(("validate", config.family))
  fake.run = lambda config, workdir: calls.append(("run", workdir)) or {"preempted": False}
  monkeypatch.setitem(sys.modules, "fake_family", fake)
  monkeypatch.setitem(families.FAMILIES, "fake", "fake_family")
  config = ml_collections.ConfigDict(dict(family="fake"))
  assert run(config, str(tmp_path)) == {"preempted": False}
  assert calls == [("validate", "fake"), ("run", str(tmp_path))]
