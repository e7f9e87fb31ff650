"""Experiment families: what kind of experiment a config describes.

A config without a `family` field, or with `family = "training"`, trains workers with one of the
library's algorithms (`jaxdist.experiment.build`, `jaxdist.experiment.runs`). Other families
(federated rounds, a hyperparameter search, ...) live each in one module of this package with

  validate(config) -> None        raises ConfigError naming the first bad field
  run(config, workdir) -> dict    the last record, with "preempted": bool

and `jaxdist.experiment.run` / `validate` dispatch to it. `run` is called with the workdir
checked, locked and holding no other run's config.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import ml_collections

from jaxdist.errors import ConfigError

TRAINING = "training"
# family name -> module with validate(config) and run(config, workdir)
FAMILIES: dict[str, str] = {
    TRAINING: "jaxdist.experiment.runs",
    "search": "jaxdist.experiment.search",
    "kernels": "jaxdist.experiment.kernels",
    "federated": "jaxdist.experiment.federated",
    "asynchrony": "jaxdist.experiment.asynchrony",
    "batching": "jaxdist.experiment.batching",
}


def family(config: ml_collections.ConfigDict) -> str:
  """The config's family, checked."""
  name = config.get("family", TRAINING)
  if name not in FAMILIES:
    raise ConfigError("family", f"unknown value {name!r}", tuple(FAMILIES))
  return name


def module(config: ml_collections.ConfigDict) -> ModuleType | None:
  """The family's module, or None for worker training."""
  name = family(config)
  return None if name == TRAINING else importlib.import_module(FAMILIES[name])
