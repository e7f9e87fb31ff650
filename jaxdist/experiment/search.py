"""The `search` family: a hyperparameter search (Hyperband, successive halving or random search)
over a jaxdist algorithm on a classification dataset, from a config.

    python -m launch --config configs/search/mnist1d_mlp.py --workdir runs/search

Config sections: `search` (method, max_iter, aggressiveness, patience, tol, steps per call,
priority, cluster), `space` (name -> "log_uniform(a, b)", "uniform(a, b)", "integer(a, b)",
"choice(v, ...)"; names among TUNABLE), `algo`, `workers`, `data`, `model`, `optim` (the values
of everything the space does not tune). A trial's score is the accuracy of its workers' averaged
model on a validation split held out of the training set.

The workdir gets `metrics.jsonl` (one record per closed rung), `results.json` / `results.csv`
(trial, hyperparameters, calls, score), `best.json` (the best configuration, its validation
score and its test accuracy), `scores.png` (score against calls, per bracket), `config.json`,
and the search's checkpoints: rerunning the same command resumes, SIGTERM checkpoints and stops.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import os
import re
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

import jaxdist
from jaxdist import search as search_lib
from jaxdist.data import datasets
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment.build import fields
from jaxdist.experiment.runs import claim_workdir, flatten, rewrite_metrics, stop_on_sigterm
from jaxdist.experiment.writers import MetricWriter, finite_or_none, write_atomically
from jaxdist.models import build as build_model
from jaxdist.objectives import tasks

METHODS = ("hyperband", "successive_halving", "random")
ALGORITHMS = ("minibatch_sgd", "local_sgd", "dsgd", "choco_sgd")
# what a space may tune: traced per trial, or static (grouping the trials by shape)
TRACED = ("learning_rate", "momentum", "weight_decay", "consensus_step")
STATIC = ("local_steps", "batch_size", "width")
TUNABLE = TRACED + STATIC
DISTRIBUTIONS = {"log_uniform": search_lib.LogUniform, "uniform": search_lib.Uniform,
                 "integer": search_lib.Integer, "choice": search_lib.Choice}
SEARCH_FIELDS = {"max_iter": "search.max_iter", "aggressiveness": "search.aggressiveness",
                 "patience": "search.patience", "tol": "search.tol",
                 "exact_log": "search.exact_log", "priority": "search.priority",
                 "checkpoint_every": "search.checkpoint_every", "n_models": "search.n_models",
                 "initial_calls": "search.initial_calls", "seed": "seed",
                 "steps_per_call": "search.steps_per_call", "num_workers": "workers.num_workers"}


def default() -> ml_collections.ConfigDict:
  """Every field of a search config, with the thesis's defaults (R = 81, eta = 3)."""
  c = ml_collections.ConfigDict()
  c.family = "search"
  c.seed = 0
  c.search = dict(
      method="hyperband",  # hyperband | successive_halving | random
      max_iter=81,  # R: partial_fit calls of the most trained model
      aggressiveness=3.0,  # eta: keep 1/eta per rung
      exact_log=False,  # integer s_max instead of Dask-ML's math.log
      patience=0,  # 0: off; -1: max_iter // aggressiveness; n >= 2: calls
      tol=1e-3,
      n_models=0,  # successive_halving, random: configurations
      initial_calls=1,  # successive_halving: r
      steps_per_call=20,  # algorithm steps in one partial_fit call
      priority="score",  # score | fifo | random
      cluster_workers=0,  # > 0: a dask.distributed LocalCluster of this many workers
      scheduler_address="",  # a running dask scheduler instead (host:port)
      checkpoint_every=1,  # units of work between checkpoints
  )
  c.space = dict(learning_rate="log_uniform(1e-3, 1.0)", momentum="uniform(0.0, 0.99)")
  c.algo = dict(name="minibatch_sgd", local_steps=1, consensus_step=0.5, compress_fraction=0.1)
  c.workers = dict(num_workers=1)
  c.data = dict(name="mnist1d", data_dir="", batch_size=32, validation=1000)
  c.model = dict(name="mlp", hidden=(256, 256))
  c.optim = dict(learning_rate=0.1, momentum=0.0, weight_decay=0.0)
  return c


def parse_space(space: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's space as distributions; ConfigError names the bad entry."""
  out = {}
  for name, text in space.items():
    field = f"space.{name}"
    if name not in TUNABLE:
      raise ConfigError(field, "not a tunable hyperparameter", TUNABLE)
    match = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", str(text))
    if not match or match[1] not in DISTRIBUTIONS:
      raise ConfigError(field, f"cannot read {text!r}",
                        "log_uniform(a, b), uniform(a, b), integer(a, b), choice(v, ...)")
    try:
      values = [json.loads(v) for v in match[2].split(",") if v.strip()]
    except ValueError:
      raise ConfigError(field, f"the arguments of {text!r} are not numbers",
                        "numbers, e.g. log_uniform(1e-3, 1.0)") from None
    static = name in STATIC
    try:
      if match[1] == "choice":
        out[name] = search_lib.Choice(values, static=static)
      else:
        if len(values) != 2:
          raise ConfigError(field, f"{match[1]} takes (low, high), got {values}", "two numbers")
        kind = DISTRIBUTIONS[match[1]]
        out[name] = kind(*values, static=static)
    except ArgumentError as e:
      raise ConfigError(field, f"{e.argument}: {e.problem}", e.allowed) from None
    if static and match[1] in ("log_uniform", "uniform"):
      raise ConfigError(field, f"{name} changes shapes: it needs whole values",
                        "integer(a, b) or choice(v, ...)")
  if not out:
    raise ConfigError("space", "empty: nothing to search", TUNABLE)
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field that cannot be used."""
  known = flatten(default())
  for field in flatten(config):
    if field not in known and not field.startswith("space."):  # the space names its own
      raise ConfigError(field, "no such field in a search config", sorted(known))
  for field, value, allowed in (
      ("search.method", config.search.method, METHODS),
      ("search.priority", config.search.priority, search_lib.priorities.POLICIES),
      ("algo.name", config.algo.name, ALGORITHMS), ("data.name", config.data.name,
                                                    datasets.DATASETS)):
    if value not in allowed:
      raise ConfigError(field, f"unknown value {value!r}", allowed)
  space = parse_space(config.space)
  for field in ("search.cluster_workers", "data.validation"):
    value = config[field.split(".")[0]][field.split(".")[1]]
    if not isinstance(value, int) or value < 0:
      raise ConfigError(field, f"must be an integer >= 0, got {value!r}", ">= 0")
  if config.algo.name in ("dsgd", "choco_sgd") and config.workers.num_workers < 2:
    raise ConfigError("workers.num_workers", f"{config.algo.name} gossips over a ring of "
                      f"workers, got {config.workers.num_workers}", ">= 2")
  with fields(SEARCH_FIELDS):
    _plan(config)
    search_lib.brackets.resolve_patience(_patience(config), config.search.max_iter,
                                         config.search.aggressiveness)
    jaxdist.errors.check_at_least("steps_per_call", config.search.steps_per_call, 1, True)
    jaxdist.errors.check_at_least("num_workers", config.workers.num_workers, 1, True)
    search_lib.spaces.sample(space, 1, config.seed)


def _patience(config) -> bool | int:
  patience = config.search.patience
  return True if patience == -1 else (False if patience == 0 else patience)


def _plan(config) -> dict:
  """The search's arguments for `hyperband`, `successive_halving` or `random_search`."""
  s = config.search
  if s.method == "hyperband":
    search_lib.hyperband_brackets(s.max_iter, s.aggressiveness, s.exact_log)
    return dict(max_iter=s.max_iter, aggressiveness=s.aggressiveness, exact_log=s.exact_log)
  jaxdist.errors.check_at_least("n_models", s.n_models, 1, integer=True)
  if s.method == "random":
    jaxdist.errors.check_at_least("max_iter", s.max_iter, 1, integer=True)
    return dict(n_models=s.n_models, max_iter=s.max_iter)
  search_lib.sha_bracket(s.n_models, s.initial_calls, s.aggressiveness, s.max_iter)
  return dict(n_models=s.n_models, initial_calls=s.initial_calls,
              aggressiveness=s.aggressiveness, max_iter=s.max_iter)


class SearchProblem:
  """The dataset, validation split and `Population` a search config describes."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.space = parse_space(config.space)
    with fields({"dataset": "data.name", "data_dir": "data.data_dir"}):
      self.dataset = datasets.load(config.data.name, config.data.data_dir)
    train = self.dataset.train
    held = config.data.validation
    if not 0 < held < len(train["label"]):
      raise ConfigError("data.validation", f"{held} of {len(train['label'])} training examples",
                        f"1..{len(train['label']) - 1}")
    self.train = {k: v[:-held] for k, v in train.items()}
    self.validation = {**{k: v[-held:] for k, v in train.items()},
                       "mask": np.ones(held, np.float32)}
    self.preprocess = datasets.preprocessor(self.dataset, "none")
    static = tuple(sorted(n for n in self.space if n in STATIC))
    self.population = search_lib.Population(
        self.build, self.init_model, self.data, self.score,
        num_workers=config.workers.num_workers, steps_per_call=config.search.steps_per_call,
        static=static)

  def _value(self, hp, name):
    if name in hp:
      return hp[name]
    section = self.config.algo if name in ("local_steps", "consensus_step") else (
        self.config.data if name == "batch_size" else self.config.optim)
    return section[name]

  @functools.cache  # noqa: B019 (a few shape groups per problem)
  def model(self, width: int | None):
    hidden = tuple(self.config.model.hidden)
    if width is not None:
      hidden = (int(width),) * len(hidden)
    with fields({"model": "model.name", "hidden": "model.hidden"}):
      return build_model(self.config.model.name, self.dataset.input_shape,
                         self.dataset.num_classes, hidden=hidden)

  def task(self, hp):
    return tasks.classification(self.model(hp.get("width")), self.preprocess)

  def init_model(self, hp, rng):
    return self.model(hp.get("width")).init(rng)

  def data(self, hp):
    return jaxdist.data.sampled(self.train, num_workers=self.config.workers.num_workers,
                                batch_size=int(self._value(hp, "batch_size")),
                                seed=self.config.seed)

  def build(self, hp):
    loss = self.task(hp).loss
    optimizer = functools.partial(jaxdist.optim.sgd, momentum=self._value(hp, "momentum"),
                                  weight_decay=self._value(hp, "weight_decay"))
    common = dict(learning_rate=self._value(hp, "learning_rate"))
    name, k = self.config.algo.name, self.config.workers.num_workers
    if name == "minibatch_sgd":
      return jaxdist.minibatch_sgd(loss, optimizer, **common)
    if name == "local_sgd":
      return jaxdist.local_sgd(loss, optimizer, local_steps=int(self._value(hp, "local_steps")),
                               **common)
    if name == "dsgd":
      return jaxdist.dsgd(loss, optimizer, topology=jaxdist.topology.ring(k),
                          measure_consensus=False, **common)
    return jaxdist.choco_sgd(loss, optimizer, topology=jaxdist.topology.ring(k),
                             compressor=jaxdist.compression.TopK(
                                 self.config.algo.compress_fraction),
                             consensus_step=self._value(hp, "consensus_step"),
                             measure_consensus=False, **common)

  def score(self, hp, params, model_state):
    sums = self.task(hp).evaluate(params, model_state, self.validation)
    return sums["accuracy"] / sums["count"]

  def test_accuracy(self, config: dict, state) -> float:
    params, model_state = self.population.deployed(config, state)
    test = {**self.dataset.test, "mask": np.ones(len(self.dataset.test["label"]), np.float32)}
    sums = jax.jit(self.task(config).evaluate)(params, model_state, test)
    return float(sums["accuracy"] / sums["count"])


def run_search(problem: SearchProblem, config: ml_collections.ConfigDict, **options):
  """Runs the config's search on `problem` (in process, or on the config's Dask cluster)."""
  method = {"hyperband": search_lib.hyperband, "random": search_lib.random_search,
            "successive_halving": search_lib.successive_halving}[config.search.method]
  s = config.search
  with contextlib.ExitStack() as stack:
    client = None
    if s.cluster_workers or s.scheduler_address:
      import distributed  # the optional cluster dependency

      if s.scheduler_address:
        client = stack.enter_context(distributed.Client(s.scheduler_address))
      else:
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=s.cluster_workers, threads_per_worker=1, processes=False,
            dashboard_address=None, silence_logs=logging.ERROR))
        client = stack.enter_context(distributed.Client(cluster))
    with fields(SEARCH_FIELDS):
      return method(problem.population, problem.space, **_plan(config), seed=config.seed,
                    patience=_patience(config), tol=s.tol, priority=s.priority,
                    checkpoint_every=s.checkpoint_every, client=client, **options)


def write_results(workdir: str, result, test_accuracy: float | None) -> None:
  """results.json, results.csv, best.json and scores.png."""
  rows = [{k: finite_or_none(v) for k, v in r.items()} for r in result.trials]
  write_atomically(os.path.join(workdir, "results.json"), json.dumps(
      {"trials": rows, "curves": result.curves, "metadata": result.metadata,
       "metadata_": result.metadata_}, indent=1, allow_nan=False))
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  write_atomically(os.path.join(workdir, "results.csv"), text.getvalue())
  best = {**{k: finite_or_none(v) for k, v in result.best.items()},
          "test_accuracy": test_accuracy}
  write_atomically(os.path.join(workdir, "best.json"), json.dumps(best, indent=1,
                                                                  allow_nan=False))
  plot_scores(result, os.path.join(workdir, "scores.png"))


def plot_scores(result, path: str) -> None:
  """Score against partial_fit calls, one panel per bracket, one line per trial."""
  import matplotlib
  import matplotlib.ticker

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ids = sorted({t["bracket"] for t in result.trials}, reverse=True)
  fig, axes = plt.subplots(1, len(ids), figsize=(3.2 * len(ids), 3), sharey=True, squeeze=False)
  for ax, bracket in zip(axes[0], ids):
    for t, curve in zip(result.trials, result.curves):
      if t["bracket"] == bracket and curve:
        calls, scores = zip(*curve)
        ax.plot(calls, scores, marker=".", lw=0.8, alpha=0.7)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title(f"bracket {bracket}")
    ax.set_xlabel("partial_fit calls")
  axes[0][0].set_ylabel("validation score")
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=110)
  plt.close(fig)
  os.replace(path + ".tmp.png", path)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the search, resuming from workdir/checkpoints; returns the best trial and
  `"preempted"`."""
  problem = SearchProblem(config)
  writer = MetricWriter(workdir)
  def on_record(record):
    claim_workdir(workdir, config)
    writer.write(record["index"], {k: v for k, v in record.items() if k != "index"})

  with stop_on_sigterm() as stop:
    try:
      result = run_search(problem, config, checkpoint_dir=os.path.join(workdir, "checkpoints"),
                          should_stop=stop.is_set, on_record=on_record,
                          progress=True)
    finally:
      writer.close()
  if result.preempted:
    print("stopped by SIGTERM; the search is checkpointed; run the same command to resume",
          flush=True)
    return {"preempted": True}
  claim_workdir(workdir, config)
  rewrite_metrics(workdir, [{"step": r["index"], **{k: v for k, v in r.items() if k != "index"}}
                            for r in result.history])
  accuracy = problem.test_accuracy(result.best["config"], result.best_state)
  write_results(workdir, result, accuracy)
  print(f"done: best {result.best['config']} (bracket {result.best['bracket']}, trial "
        f"{result.best['trial']}): validation {result.best['score']:.4f}, test {accuracy:.4f}",
        file=sys.stdout, flush=True)
  return {**result.best, "test_accuracy": accuracy, "preempted": False}
