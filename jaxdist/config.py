"""The configuration: every section with its defaults, and one check of all values before a run.

Config files (`configs/*.py`) start from `default()` and change what their experiment needs;
`python -m launch --config FILE --config.section.field=value` overrides single fields.
"""

import math

import ml_collections
from ml_collections import config_dict

from jaxdist import algorithms, datasets, models, partition, recipes, workers
from jaxdist.errors import ConfigError

EVAL_MODELS = ("average", "workers")


def default() -> ml_collections.ConfigDict:
  """All fields, with the thesis's recipe as defaults where it has one ([Lin22] App. 11.1)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.algo = dict(
      name="local_sgd",  # minibatch_sgd | local_sgd
      local_steps=4,  # H: local steps between averaging (local_sgd)
  )
  c.workers = dict(
      num_workers=8,  # K
      backend="simulated",  # simulated: vmap on one device | shard_map: over a device mesh
      num_devices=0,  # shard_map: devices in the mesh, 0 = all visible
  )
  c.data = dict(
      name="mnist1d",  # mnist1d | digits (offline) | mnist | cifar10 (prepared in data_dir)
      data_dir="",  # tfds data_dir; empty = tfds's default
      batch_size=32,  # per worker
      partition="iid",  # iid (re-shuffled every epoch) | iid_fixed | dirichlet
      dirichlet_alpha=1.0,
      dirichlet_scheme="per_class",  # per_class (authors' code) | per_client (thesis prose)
      augment="none",  # none | crop_flip (images)
  )
  c.model = dict(
      name="mlp",  # logistic_regression | mlp | cnn | resnet20
      hidden=(256, 256),  # mlp
      features=(32, 64),  # cnn: strided convolutions
      dense=128,  # cnn: hidden dense layer
      width=16,  # resnet20: filters of the first stage
  )
  c.optim = dict(
      optimizer="sgd",
      base_lr=0.1,  # learning rate at base_batch
      base_batch=128,
      lr_scaling="linear",  # linear | sqrt | none: scaling with the global batch K*B
      warmup_epochs=0.0,
      warmup_start_lr=config_dict.placeholder(float),  # None: start from base_lr
      schedule="step",  # step | constant | cosine
      decay_at=(0.5, 0.75),  # step: fractions of all samples
      decay_factor=0.1,
      momentum=0.9,
      nesterov=True,
      weight_decay=1e-4,
      decay_norm_and_bias=False,
  )
  c.train = dict(
      num_epochs=30.0,  # passes over the training set by all workers together
      num_steps=0,  # if > 0, used instead of num_epochs
      log_every=50,  # steps per jitted call and per progress line
  )
  c.eval = dict(
      every_steps=0,  # multiple of train.log_every; 0 = at the end only
      model="average",  # average: the averaged model | workers: mean over the workers' models
      batch_size=500,
  )
  c.checkpoint = dict(
      every_steps=0,  # multiple of train.log_every; 0 = at the end (and on SIGTERM) only
      keep=2,
  )
  return c


def _choice(config, field: str, allowed) -> None:
  value = _get(config, field)
  if value not in allowed:
    raise ConfigError(field, f"unknown value {value!r}", allowed)


def _at_least(config, field: str, low) -> None:
  value = _get(config, field)
  if not value >= low:
    raise ConfigError(field, f"must be >= {low}, got {value}", f">= {low}")


def _get(config, field: str):
  for part in field.split("."):
    config = config[part]
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot be used."""
  _choice(config, "algo.name", algorithms.ALGORITHMS)
  _at_least(config, "algo.local_steps", 1)
  _at_least(config, "workers.num_workers", 1)
  _choice(config, "workers.backend", workers.BACKENDS)
  _at_least(config, "workers.num_devices", 0)
  _choice(config, "data.name", datasets.DATASETS)
  _at_least(config, "data.batch_size", 1)
  _choice(config, "data.partition", partition.PARTITIONS)
  _choice(config, "data.dirichlet_scheme", partition.DIRICHLET_SCHEMES)
  _choice(config, "data.augment", datasets.AUGMENTATIONS)
  if not config.data.dirichlet_alpha > 0:
    raise ConfigError("data.dirichlet_alpha", f"must be > 0, got {config.data.dirichlet_alpha}",
                      "> 0")
  _choice(config, "model.name", models.MODELS)
  _choice(config, "optim.optimizer", recipes.OPTIMIZERS)
  _choice(config, "optim.lr_scaling", recipes.LR_SCALINGS)
  _choice(config, "optim.schedule", recipes.SCHEDULES)
  for field in ("optim.base_lr", "optim.base_batch", "optim.momentum", "optim.weight_decay",
                "optim.warmup_epochs", "optim.decay_factor"):
    _at_least(config, field, 0)
  if config.optim.base_batch == 0:
    raise ConfigError("optim.base_batch", "must be >= 1, got 0", ">= 1")
  if config.train.num_steps < 0 or config.train.num_epochs < 0 or not (
      config.train.num_steps > 0 or config.train.num_epochs > 0):
    raise ConfigError("train.num_steps", "one of train.num_steps and train.num_epochs must be "
                      f"> 0, got {config.train.num_steps} and {config.train.num_epochs}",
                      "num_steps > 0, or num_steps = 0 and num_epochs > 0")
  _at_least(config, "train.log_every", 1)
  for field in ("eval.every_steps", "checkpoint.every_steps"):
    every = _get(config, field)
    if every < 0 or every % config.train.log_every:
      raise ConfigError(field, f"{every} is not a multiple of train.log_every "
                        f"({config.train.log_every})",
                        f"0 or multiples of {config.train.log_every}")
  _choice(config, "eval.model", EVAL_MODELS)
  _at_least(config, "eval.batch_size", 1)
  _at_least(config, "checkpoint.keep", 1)


def total_steps(config: ml_collections.ConfigDict, train_size: int) -> int:
  """Training steps of the run: train.num_steps, or num_epochs over the global batch."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  global_batch = config.workers.num_workers * config.data.batch_size
  return max(1, math.ceil(config.train.num_epochs * train_size / global_batch))
