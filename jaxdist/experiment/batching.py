"""The "batching" family: mini-batch SGD under a batch-size rule ([Sievert] §3.1-3.3).

A config with `family = "batching"` (see `configs/batching/`) trains one model with
`jaxdist.batching.AdaptiveBatchSGD`: a rule (`rule.name`: constant | oracle | gradient_norm |
radadamp | radadamp_lr | geodamp | geodamp_lr | linear), a fixed grid of workers of which
ceil(B / examples_per_worker) are active, an optional compressor of every worker's gradient
(`compression.name`: none | atomo | atomo_spectral | qsgd_1bit | terngrad | qsgd), and a time
model of each update (`time_model.architecture`: centralized | ring). Every record (one per
`train.updates_per_chunk` updates) holds model updates, examples, epochs, batch, workers, the
learning rate, modelled and measured time per update, and the test accuracy; metrics go to
metrics.jsonl, checkpoints to workdir/checkpoints, and a rerun resumes bit-exactly.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdist import batching, models, optim
from jaxdist.batching import variable_workers
from jaxdist.communication import atomo
from jaxdist.core.layouts import Sharded, Simulated
from jaxdist.data import datasets
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import runs
from jaxdist.experiment.writers import MetricWriter
from jaxdist.objectives import classification

RULES = ("constant", "oracle", "gradient_norm", "radadamp", "radadamp_lr", "geodamp",
         "geodamp_lr", "linear")
COMPRESSORS = ("none", "atomo", "atomo_spectral", "qsgd_1bit", "terngrad", "qsgd")
MODELS = ("mlp", "cnn", "logistic_regression", "wrn16_4")
ARCHITECTURES = ("centralized", "ring")
NETWORKS = {"moderate": variable_workers.MODERATE, "high": variable_workers.HIGH}


def default() -> ml_collections.ConfigDict:
  """Every field of the family, with the plain method as the default."""
  c = ml_collections.ConfigDict()
  c.family = "batching"
  c.seed = 0
  c.rule = dict(name="constant", initial_batch=128, max_batch=1024, rho=0.999,
                regularization=1e-3, factor=5.0, delay=10.0, milestones=(), slope=1.0,
                optimum=0.0)
  c.data = dict(name="digits", data_dir="")
  c.model = dict(name="mlp", hidden=(256,), features=(32, 64), dense=128)
  c.optim = dict(learning_rate=0.05, momentum=0.0, nesterov=False, weight_decay=0.0)
  c.workers = dict(num_workers=1, examples_per_worker=128, max_workers=0, backend="simulated")
  c.compression = dict(name="none", budget=2.0, bits=4, aggregation="decompress")
  c.time_model = dict(architecture="ring", network="moderate", per_example=1e-4,
                      per_update=0.0, overhead_per_worker=0.0)
  c.train = dict(num_epochs=10.0, micro_batch=64, updates_per_chunk=50, max_updates=10**9)
  return c


def _rule(c: ml_collections.ConfigDict):
  r = c.rule
  cap = math.inf if r.max_batch <= 0 else int(r.max_batch)
  common = {"initial_batch": r.initial_batch, "max_batch": cap}
  made = {
      "constant": lambda: batching.Constant(**common),
      "oracle": lambda: batching.Oracle(**common, optimum=r.optimum),
      "gradient_norm": lambda: batching.GradientNorm(**common),
      "radadamp": lambda: batching.RadaDamp(**common, rho=r.rho,
                                            regularization=r.regularization),
      "geodamp": lambda: batching.GeoDamp(**common, factor=r.factor, delay=r.delay,
                                          milestones=tuple(r.milestones)),
      "linear": lambda: batching.Linear(**common, slope=r.slope),
  }
  name = r.name
  if name not in RULES:
    raise ConfigError("rule.name", f"unknown value {name!r}", RULES)
  if name.endswith("_lr"):
    return batching.LearningRateTwin(made[name[:-3]]())
  return made[name]()


def _compressor(c: ml_collections.ConfigDict):
  name = c.compression.name
  if name not in COMPRESSORS:
    raise ConfigError("compression.name", f"unknown value {name!r}", COMPRESSORS)
  return {"none": lambda: None,
          "atomo": lambda: atomo.Atomo(c.compression.budget),
          "atomo_spectral": lambda: atomo.Atomo(c.compression.budget, "spectral"),
          "qsgd_1bit": atomo.one_bit_qsgd, "terngrad": atomo.terngrad,
          "qsgd": lambda: atomo.qsgd(c.compression.bits)}[name]()


# library argument -> config field, for the errors of the library
FIELDS = {"initial_batch": "rule.initial_batch", "max_batch": "rule.max_batch", "rho": "rule.rho",
          "regularization": "rule.regularization", "factor": "rule.factor",
          "delay": "rule.delay", "milestones": "rule.milestones", "budget": "compression.budget",
          "bits": "compression.bits", "aggregation": "compression.aggregation",
          "micro_batch": "train.micro_batch", "num_workers": "workers.num_workers",
          "examples_per_worker": "workers.examples_per_worker",
          "max_workers": "workers.max_workers", "bandwidth": "time_model.network",
          "num_epochs": "train.num_epochs", "updates_per_chunk": "train.updates_per_chunk",
          "learning_rate": "optim.learning_rate", "momentum": "optim.momentum",
          "weight_decay": "optim.weight_decay"}


def _named(fn):
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except ArgumentError as e:
      raise ConfigError(FIELDS.get(e.argument, e.argument), e.problem, e.allowed) from None
  return wrapped


@_named
def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field of a batching config; raises ConfigError naming the first bad one."""
  known = default()
  for section, fields in config.items():
    if section not in known:
      raise ConfigError(section, "no such section in a batching config", tuple(known))
    if isinstance(fields, ml_collections.ConfigDict):
      for field in fields:
        if field not in known[section]:
          raise ConfigError(f"{section}.{field}", f"no such field in {section}",
                            tuple(known[section]))
  if config.data.name not in datasets.DATASETS:
    raise ConfigError("data.name", f"unknown value {config.data.name!r}", datasets.DATASETS)
  if config.model.name not in MODELS:
    raise ConfigError("model.name", f"unknown value {config.model.name!r}", MODELS)
  if config.time_model.architecture not in ARCHITECTURES:
    raise ConfigError("time_model.architecture", f"unknown value "
                      f"{config.time_model.architecture!r}", ARCHITECTURES)
  if config.time_model.network not in NETWORKS:
    raise ConfigError("time_model.network", f"unknown value {config.time_model.network!r}",
                      tuple(NETWORKS))
  if config.workers.backend not in ("simulated", "shard_map"):
    raise ConfigError("workers.backend", f"unknown value {config.workers.backend!r}",
                      ("simulated", "shard_map"))
  for field in ("rule.max_batch", "workers.max_workers", "optim.weight_decay",
                "time_model.per_example", "time_model.per_update",
                "time_model.overhead_per_worker"):
    section, key = field.split(".")
    if not config[section][key] >= 0:
      raise ConfigError(field, f"must be >= 0, got {config[section][key]}", ">= 0")
  rule = _rule(config)
  _compressor(config)
  atomo.check_aggregation(config.compression.aggregation)
  if math.isinf(rule.max_batch) and config.rule.name != "constant":
    raise ConfigError("rule.max_batch", "0 (no cap) leaves the program without a capacity",
                      "an integer >= rule.initial_batch")
  for field in ("train.num_epochs", "train.micro_batch", "train.updates_per_chunk",
                "train.max_updates", "workers.num_workers", "workers.examples_per_worker",
                "optim.learning_rate"):
    section, key = field.split(".")
    if not config[section][key] > 0:
      raise ConfigError(field, f"must be > 0, got {config[section][key]}", "> 0")
  if not 0 <= config.optim.momentum < 1:
    raise ConfigError("optim.momentum", f"{config.optim.momentum} is not in [0, 1)",
                      "0 <= momentum < 1")


def build(config: ml_collections.ConfigDict):
  """(trainer, (params, model_state), evaluate(params, model_state) -> dict) from a validated
  config."""
  dataset = datasets.load(config.data.name, config.data.data_dir)
  model = models.build(config.model.name, dataset.input_shape, dataset.num_classes,
                       hidden=tuple(config.model.hidden), features=tuple(config.model.features),
                       dense=config.model.dense)
  task = classification(model, datasets.preprocessor(dataset, "none"))
  params, model_state = model.init(jax.random.PRNGKey(config.seed))
  o, w, t = config.optim, config.workers, config.time_model
  tx = functools.partial(optim.sgd, momentum=o.momentum, nesterov=o.nesterov,
                         weight_decay=o.weight_decay) if o.momentum or o.weight_decay else None
  num_bytes = 4 * sum(x.size for x in jax.tree.leaves(params))
  compute = variable_workers.Compute(t.per_example, t.per_update, t.overhead_per_worker)
  time_fn = (variable_workers.centralized_update_time if t.architecture == "centralized" else
             variable_workers.ring_allreduce_update_time)
  kwargs = {} if tx is None else {"optimizer": tx}
  trainer = _named(batching.AdaptiveBatchSGD)(
      task.loss, {"input": dataset.train["input"].astype(np.float32),
                  "label": dataset.train["label"].astype(np.int32)}, _rule(config),
      learning_rate=o.learning_rate, max_batch=max(config.rule.max_batch,
                                                   config.rule.initial_batch),
      micro_batch=config.train.micro_batch, num_workers=w.num_workers,
      examples_per_worker=w.examples_per_worker, max_workers=w.max_workers or None,
      layout=Sharded() if w.backend == "shard_map" else Simulated(),
      compressor=_compressor(config), aggregation=config.compression.aggregation,
      update_time=functools.partial(time_fn, model_bytes=num_bytes,
                                    network=NETWORKS[t.network], compute=compute),
      seed=config.seed, **kwargs)
  test = {"input": jnp.asarray(dataset.test["input"], jnp.float32),
          "label": jnp.asarray(dataset.test["label"], jnp.int32)}
  test["mask"] = jnp.ones(len(test["label"]), jnp.float32)

  @jax.jit
  def evaluate(params, model_state):
    sums = task.evaluate(params, model_state, test)
    return {"test/accuracy": sums["accuracy"] / sums["count"],
            "test/loss": sums["loss"] / sums["count"]}

  return trainer, (params, model_state), lambda p, s: {k: float(v) for k, v in
                                                       evaluate(p, s).items()}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as `config` says in `workdir` (locked by the caller), resuming from its checkpoints."""
  trainer, (params, model_state), evaluate = build(config)
  writer = MetricWriter(workdir)

  def on_record(record):
    runs.claim_workdir(workdir, config)
    writer.write(int(record["updates"]), record)
    print(f"update {int(record['updates'])}: epoch {record['epoch']:.2f}, batch "
          f"{record['batch']:.0f}, workers {record['workers']:.1f}, loss {record['loss']:.4f}, "
          f"test accuracy {record['test/accuracy']:.4f}", file=sys.stdout, flush=True)

  with runs.stop_on_sigterm() as stop:
    try:
      out = trainer.fit(params, model_state, num_epochs=config.train.num_epochs,
                        max_updates=config.train.max_updates,
                        updates_per_chunk=config.train.updates_per_chunk,
                        checkpoint_dir=os.path.join(workdir, "checkpoints"), on_record=on_record,
                        eval_fn=evaluate, should_stop=stop.is_set)
    finally:
      writer.close()
  last = out["history"][-1] if out["history"] else {}
  return {**last, "preempted": out["preempted"]}
