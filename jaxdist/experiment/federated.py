"""The federated experiment family ([Lin22] ch. 8): rounds of FedAvg, FedProx, FedAvgM, FedAdam
or FedDF on K clients from a Dirichlet or i.i.d. split, from a config with `family="federated"`.

    python -m launch --config configs/federated/cifar10_resnet8.py:algo=feddf --workdir runs/f

The fields (`default()`): `algo` (the method and its server side), `clients` (K, C, the split,
local training), `data`, `model`, `train` (rounds), `eval`, `workers`, `checkpoint`. The
training set is cut once (seeded) into the clients' data, a labeled validation split held out
for FedDF's early stopping and drop-worst, and, with `algo.distill_data=split`, unlabeled
distillation inputs. A round is one step of the library's runner: metrics.jsonl has one record
per `train.log_every` rounds (server test accuracy, the cohort's mean local accuracy, bits down
and up per client, distillation steps), checkpoints resume bit for bit, and `plot` draws the test
accuracy against rounds.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdist import federated, models
from jaxdist.core import distributed
from jaxdist.core.layouts import Sharded, Simulated
from jaxdist.data import datasets, partition
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import runs
from jaxdist.experiment.build import fields
from jaxdist.experiment.runs import flatten, rewrite_metrics
from jaxdist.experiment.writers import read_metrics
from jaxdist.models import MODELS
from jaxdist.objectives import tasks
from jaxdist.training.runner import ON_NONFINITE, Runner

ALGORITHMS = ("fedavg", "fedprox", "fedavgm", "fedadam", "feddf", "mimelite")
STATISTICS = ("averaged", "per_client", "reset")
PARTITIONS = ("iid", "dirichlet")
DISTILL_DATA = ("split", "noise")
BACKENDS = ("simulated", "shard_map")

FIELDS = {  # library argument -> config field
    "batch_size": "clients.batch_size", "local_epochs": "clients.local_epochs",
    "local_steps": "clients.local_steps", "learning_rate": "clients.learning_rate",
    "num_clients": "clients.num_clients", "fraction": "clients.fraction",
    "cohort_size": "clients.fraction", "proximal_mu": "algo.proximal_mu",
    "server_momentum": "algo.server_momentum", "server_learning_rate": "algo.server_lr",
    "momentum": "algo.mime_momentum",
    "distill_steps": "algo.distill_steps", "distill_batch_size": "algo.distill_batch_size",
    "distill_learning_rate": "algo.distill_lr", "patience": "algo.patience",
    "validate_every": "algo.validate_every", "distill_init": "algo.distill_init",
    "temperature": "algo.temperature", "drop_worst": "algo.drop_worst",
    "steps_per_chunk": "train.log_every", "num_steps": "train.num_rounds",
    "checkpoint_every": "checkpoint.every_rounds", "eval_every": "eval.every_rounds",
    "keep": "checkpoint.keep", "eval_batch_size": "eval.batch_size",
    "num_devices": "workers.num_devices", "num_workers": "clients.fraction",
    "dataset": "data.name", "data_dir": "data.data_dir", "model": "model.name",
    "hidden": "model.hidden", "features": "model.features", "dense": "model.dense",
    "width": "model.width",
}


def default() -> ml_collections.ConfigDict:
  """Every field of a federated run, defaults the plain methods ([Lin22] L2256-2260)."""
  c = ml_collections.ConfigDict()
  c.family = "federated"
  c.seed = 0
  c.algo = dict(
      name="fedavg",  # fedavg | fedprox | fedavgm | fedadam | feddf | mimelite
      proximal_mu=0.01,  # fedprox: mu of (mu/2)||x - x_server||^2
      server_momentum=0.9,  # fedavgm: beta
      server_lr=1.0,  # fedavgm, fedadam: the server rate
      mime_momentum=0.9,  # mimelite: beta of U and V (Alg. 21)
      statistics="averaged",  # BatchNorm statistics: averaged | per_client | reset
      distill_steps=10_000,  # feddf: the step budget N
      distill_batch_size=128,
      distill_lr=1e-3,  # feddf: Adam, cosine-annealed over the budget
      patience=1_000,  # feddf: early stopping on the validation split
      validate_every=100,
      drop_worst=False,  # feddf: drop client models at random-guess validation accuracy
      distill_init="average",  # average (the round's FedAvg model) | previous (fused model)
      distill_data="split",  # split: held-out training inputs, unlabeled | noise: uniform
      temperature=1.0,
  )
  c.clients = dict(
      num_clients=20,  # K
      fraction=0.4,  # C: clients per round = round(C * K)
      partition="dirichlet",  # iid | dirichlet
      dirichlet_alpha=1.0,
      dirichlet_scheme="per_class",  # per_class (authors' code) | per_client (thesis prose)
      local_epochs=1,  # E
      local_steps=0,  # > 0: this many local steps instead of epochs
      batch_size=64,
      learning_rate=0.1,  # constant, plain SGD (no momentum, no weight decay)
  )
  c.data = dict(
      name="mnist1d",
      data_dir="",
      validation_fraction=0.1,  # of the training set, held out (labeled) for FedDF
      distill_fraction=0.1,  # of the training set, held out unlabeled (distill_data=split)
  )
  c.model = dict(name="mlp", hidden=(256, 256), features=(32, 64), dense=128, width=16)
  c.train = dict(num_rounds=100, log_every=5, on_nonfinite="stop")  # log_every: rounds per jit
  c.eval = dict(every_rounds=5, batch_size=500)  # a multiple of train.log_every
  c.workers = dict(backend="simulated", num_devices=0)
  c.checkpoint = dict(every_rounds=0, keep=2)
  return c


def _choice(config, field: str, allowed) -> None:
  section, key = field.split(".")
  if config[section][key] not in allowed:
    raise ConfigError(field, f"unknown value {config[section][key]!r}", allowed)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot be used."""
  known = flatten(default())
  for field in flatten(config):
    if field not in known:
      raise ConfigError(field, "no such field in a federated config", sorted(known))
  for field, allowed in (("algo.name", ALGORITHMS), ("algo.statistics", STATISTICS),
                         ("algo.distill_data", DISTILL_DATA),
                         ("clients.partition", PARTITIONS),
                         ("clients.dirichlet_scheme", partition.DIRICHLET_SCHEMES),
                         ("data.name", datasets.DATASETS), ("model.name", MODELS),
                         ("train.on_nonfinite", ON_NONFINITE), ("workers.backend", BACKENDS)):
    _choice(config, field, allowed)
  held_out = config.data.validation_fraction + config.data.distill_fraction
  for name in ("validation_fraction", "distill_fraction"):
    if not 0 <= config.data[name] < 1 or held_out >= 0.9:
      raise ConfigError(f"data.{name}", f"{config.data[name]} leaves too little to train on",
                        "fractions >= 0 that sum to < 0.9")
  if config.eval.every_rounds % max(config.train.log_every, 1):
    raise ConfigError("eval.every_rounds", "not a multiple of train.log_every",
                      f"multiples of {config.train.log_every}")
  with fields(FIELDS):
    federated.cohort_size(config.clients.num_clients, config.clients.fraction)
    fake = np.zeros((4, 3), np.float32)
    algorithm(config, lambda *a: None, lambda *a: None, fake, {"input": fake,
                                                                "label": np.zeros(4)})
    if config.clients.dirichlet_alpha <= 0:
      raise ArgumentError("dirichlet_alpha", "must be > 0", "> 0")
    if config.train.num_rounds < 1:
      raise ArgumentError("num_steps", f"must be >= 1, got {config.train.num_rounds}", ">= 1")
    Runner(_probe(), _ProbeData(), num_workers=1, steps_per_chunk=config.train.log_every,
           layout=_layout(config))


class _ProbeData:  # a stand-in source, to check the runner's arguments without data
  num_workers = 1

  def batches(self, *args):
    return {}


def _probe():
  return federated.fedavg(lambda *a: None, learning_rate=0.1, batch_size=1)


def _layout(config):
  return (Simulated() if config.workers.backend == "simulated" else
          Sharded(config.workers.num_devices))


def algorithm(config: ml_collections.ConfigDict, loss_fn, logits_fn, distill_inputs,
              validation) -> federated.FederatedAveraging:
  """The config's method, from the library's constructors."""
  a, c = config.algo, config.clients
  statistics = {"averaged": federated.Averaged(), "reset": federated.Reset(),
                "per_client": federated.PerClient(c.num_clients)}[a.statistics]
  common = dict(learning_rate=c.learning_rate, batch_size=c.batch_size, epochs=c.local_epochs,
                local_steps=c.local_steps or None, statistics=statistics)
  if a.name == "fedprox":
    return federated.fedprox(loss_fn, mu=a.proximal_mu, **common)
  if a.name == "fedavgm":
    return federated.fedavgm(loss_fn, server_momentum=a.server_momentum,
                             server_learning_rate=a.server_lr, **common)
  if a.name == "mimelite":
    return federated.mimelite(loss_fn, momentum=a.mime_momentum, **common)
  if a.name == "fedadam":
    return federated.fedavg(loss_fn, server_optimizer=federated.server.fedadam(a.server_lr),
                            **common)
  if a.name == "feddf":
    num_classes = int(np.max(validation["label"])) + 1 if len(validation["label"]) else 10
    validation = validation if len(validation["label"]) else None  # no early stopping
    return federated.feddf(
        loss_fn, logits_fn=logits_fn, distill_inputs=distill_inputs,
        distill_steps=a.distill_steps, distill_batch_size=a.distill_batch_size,
        distill_learning_rate=a.distill_lr, validation=validation, patience=a.patience,
        validate_every=a.validate_every, drop_worst=1.1 / num_classes if a.drop_worst else None,
        distill_init=a.distill_init, temperature=a.temperature, **common)
  return federated.fedavg(loss_fn, **common)


class FederatedExperiment:
  """What a federated config describes, built: splits, clients, model, method, runner."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    with fields(FIELDS):
      dataset = datasets.load(config.data.name, config.data.data_dir)
      model = models.build(config.model.name, dataset.input_shape, dataset.num_classes,
                           hidden=tuple(config.model.hidden),
                           features=tuple(config.model.features), dense=config.model.dense,
                           width=config.model.width)
    self.dataset, self.model = dataset, model
    preprocess = datasets.preprocessor(dataset, "none")
    self.task = tasks.classification(model, preprocess)
    train, validation, distill = self._splits(dataset.train)
    if config.algo.distill_data == "noise":
      low, high = float(dataset.train["input"].min()), float(dataset.train["input"].max())
      distill = federated.uniform_noise(dataset.input_shape, max(len(distill), 128), low, high,
                                        config.seed)

    def logits_fn(params, model_state, inputs):
      x = preprocess(inputs, jax.random.PRNGKey(0), False)
      return model.apply(params, model_state, x, False)[0]

    c = config.clients
    rng = np.random.default_rng([config.seed, 8])
    with fields(FIELDS):
      if c.partition == "dirichlet":
        split = (partition.dirichlet_per_class if c.dirichlet_scheme == "per_class" else
                 partition.dirichlet_per_client)(train["label"], c.num_clients,
                                                 c.dirichlet_alpha, rng)
      else:
        split = np.array_split(rng.permutation(len(train["label"])), c.num_clients)
      self.clients = federated.ClientData(
          train, split, cohort_size=federated.cohort_size(c.num_clients, c.fraction),
          seed=config.seed)
      self.algorithm = algorithm(config, self.task.loss, logits_fn, distill, validation)
      self.runner = Runner(self.algorithm, self.clients, layout=_layout(config),
                           seed=config.seed, steps_per_chunk=config.train.log_every,
                           on_nonfinite=config.train.on_nonfinite)

  def _splits(self, arrays):
    size = len(arrays["label"])
    order = np.random.default_rng([self.config.seed, 7]).permutation(size)
    num_validation = int(self.config.data.validation_fraction * size)
    num_distill = int(self.config.data.distill_fraction * size)
    validation = {k: v[order[:num_validation]] for k, v in arrays.items()}
    distill = arrays["input"][order[num_validation:num_validation + num_distill]]
    train = {k: v[order[num_validation + num_distill:]] for k, v in arrays.items()}
    return train, validation, distill

  def initial_model(self):
    return self.model.init(jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 1))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the rounds, resuming from the newest checkpoint in `workdir`."""
  experiment = FederatedExperiment(config)
  params, model_state = experiment.initial_model()
  result = runs.fit_in_workdir(config, workdir, functools.partial(
      experiment.runner.fit, params, model_state, num_steps=config.train.num_rounds,
      checkpoint_dir=os.path.join(workdir, "checkpoints"),
      checkpoint_every=config.checkpoint.every_rounds, keep=config.checkpoint.keep,
      eval_fn=experiment.task.evaluate, eval_data=experiment.dataset.test,
      eval_every=config.eval.every_rounds, eval_batch_size=config.eval.batch_size,
      record_extras=lambda step: {"round": step}), FIELDS)
  last = {**result.final, "step": result.step}
  if result.preempted:
    return {**last, "preempted": True}
  runs.claim_workdir(workdir, config)
  if distributed.is_primary():
    models.save(os.path.join(workdir, "model.npz.tmp"), *result.deployed())
    os.replace(os.path.join(workdir, "model.npz.tmp"), os.path.join(workdir, "model.npz"))
    rewrite_metrics(workdir, result.history)
    print(f"done: round {result.step}, server test accuracy "
          f"{last.get('test/accuracy', float('nan')):.4f}", flush=True)
  return {**last, "preempted": False}


def rounds_to(records: list[dict], target: float) -> int | None:
  """The first round whose server test accuracy reaches `target` (None: never)."""
  return next((r["step"] for r in records if r.get("test/accuracy", -1) >= target), None)


def plot(workdirs: list[str], out: str) -> None:
  """Server test accuracy against rounds, one line per workdir."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 3.6))
  for workdir in workdirs:
    points = [(r["step"], r["test/accuracy"]) for r in read_metrics(workdir)
              if "test/accuracy" in r]
    if points:
      ax.plot(*zip(*points), marker="o", label=os.path.basename(os.path.normpath(workdir)))
  ax.set(xlabel="round", ylabel="server test accuracy")
  ax.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=120)
