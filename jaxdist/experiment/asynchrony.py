"""The asynchrony experiment family (`family = "asynchrony"`): one config field per library
argument of `jaxdist.asynchrony`, checked in `validate`, run by `run`.

`algo.name` picks the algorithm:

- `async_ps`: the discrete-event parameter-server simulator on a classification dataset; a record
  every `train.log_every` waves with the staleness (mean, max), the model time and the accuracy;
- `hogwild`: SGD with imposed staleness (`algo.staleness`, `algo.tau`, `algo.reads`) on a sparse
  SVM or logistic regression on generated data, with Omega, Delta, rho in the first record;
- `cyclades`: the conflict-free variant on the same data;
- `backup_sgd`: synchronous SGD with `algo.num_backup` backup workers (0: the plain synchronous
  parameter server), through the library's runner;
- `one_shot`: one-shot averaging, through the runner; the final record holds the averaged model's
  and the ensemble's test accuracy;
- `threaded`: the real threaded runner, one worker thread per device (`algo.num_workers` of the
  visible devices), `train.log_every` pushes per record with the measured staleness; resumes from
  its checkpoints, but not bit-exactly (thread timing decides the reads);
- `bcd`: coordinate parallelism, cyclic block coordinate descent on generated least squares
  (`data.num_examples` x `data.dim`, `algo.num_workers` blocks), `train.log_every` sweeps a record.

Every run checkpoints its whole state in workdir/checkpoints (orbax, fingerprinted) and a rerun of
the same command resumes bit-exactly; records go to metrics.jsonl.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdist import asynchrony, models
from jaxdist.asynchrony import cyclades
from jaxdist.data import datasets, sources
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import runs
from jaxdist.experiment.writers import MetricWriter
from jaxdist.objectives import tasks
from jaxdist.training import Runner
from jaxdist.training.checkpoint import Checkpoints

ALGORITHMS = ("async_ps", "hogwild", "cyclades", "backup_sgd", "one_shot", "threaded", "bcd")
COMPUTE_TIMES = ("constant", "exponential", "lognormal", "straggler")
SPARSE = ("hogwild", "cyclades")


FIELDS = {  # library argument -> config field
    "num_workers": "algo.num_workers", "num_cores": "algo.num_workers",
    "num_blocks": "algo.num_workers", "learning_rate": "algo.learning_rate",
    "local_learning_rate": "algo.local_learning_rate", "optimizer": "algo.optimizer",
    "reduction": "algo.reduction", "push_every": "algo.push_every",
    "fetch_every": "algo.fetch_every", "time": "algo.compute_time", "mean_time": "algo.time_mean",
    "offset": "algo.time_offset", "sigma": "algo.time_sigma", "slowdown": "algo.slowdown",
    "staleness": "algo.staleness", "tau": "algo.tau", "tau_max": "algo.tau", "reads": "algo.reads",
    "num_backup": "algo.num_backup", "num_examples": "data.num_examples", "dim": "data.dim",
    "nonzeros": "data.nonzeros", "objective": "data.objective",
    "regularization": "data.regularization",
}


def default() -> ml_collections.ConfigDict:
  """Every field of the family, with its default."""
  c = ml_collections.ConfigDict()
  c.family = "asynchrony"
  c.seed = 0
  c.algo = dict(
      name="async_ps",  # async_ps | hogwild | cyclades | backup_sgd | one_shot | threaded | bcd
      num_workers=8,  # P (async_ps), K = N + b (backup_sgd, one_shot), cores (cyclades)
      learning_rate=0.05,  # gamma, per gradient
      optimizer="sgd",  # async_ps: sgd | adagrad (server)
      reduction="sum",  # async_ps, backup_sgd: sum | mean
      push_every=1,  # async_ps: Downpour n_push
      fetch_every=1,  # async_ps: Downpour n_fetch (a multiple of push_every)
      local_learning_rate=0.0,  # async_ps: the worker's step on its replica between pushes
      compute_time="exponential",  # constant | exponential | lognormal | straggler
      time_mean=1.0,  # constant, exponential: the (mean) time; straggler: its base constant
      time_offset=0.0,  # exponential, lognormal: a constant added
      time_sigma=1.0,  # lognormal: sigma of log-time
      slowdown=10.0,  # straggler: worker 0 is this much slower
      staleness="bounded",  # hogwild: fixed | bounded
      tau=4,  # hogwild: the fixed delay, or the bound
      reads="torn",  # hogwild: torn | whole
      num_backup=0,  # backup_sgd: b
      cyclades_batch=64,  # cyclades: examples per conflict-graph batch
  )
  c.data = dict(
      name="digits",  # async_ps, backup_sgd, one_shot: digits | mnist1d | mnist1d_large
      data_dir="",
      batch_size=8,
      num_examples=20000,  # hogwild, cyclades: generated sparse data
      dim=2000,
      nonzeros=5,  # Omega
      noise=0.05,  # flipped labels
      objective="svm",  # svm | logistic
      regularization=1e-4,  # lambda, spread over the touched coordinates
  )
  c.model = dict(name="logistic_regression", hidden=(64,))  # async_ps, backup_sgd, one_shot
  c.train = dict(num_steps=200, log_every=50)  # waves (async_ps), steps, or batches (cyclades)
  c.checkpoint = dict(every_steps=100, keep=2)
  return c


# -- validation ---------------------------------------------------------------------------------


def _check(field: str, ok: bool, problem: str, allowed: Any) -> None:
  if not ok:
    raise ConfigError(field, problem, allowed)


def validate(config: ml_collections.ConfigDict) -> None:
  """Every field known and usable; raises ConfigError naming the first that is not."""
  reference = default()
  for section in config:
    _check(section, section in reference, f"no such section {section!r}", tuple(reference))
    if isinstance(reference[section], ml_collections.ConfigDict):
      for key in config[section]:
        _check(f"{section}.{key}", key in reference[section], f"no such field {key!r} in "
               f"config.{section}", ", ".join(sorted(reference[section])))
  algo, data, train = config.algo, config.data, config.train
  choices = {"algo.name": ALGORITHMS, "algo.optimizer": ("sgd", "adagrad"),
             "algo.reduction": ("sum", "mean"), "algo.compute_time": COMPUTE_TIMES,
             "algo.staleness": ("fixed", "bounded"), "algo.reads": ("torn", "whole"),
             "data.objective": ("svm", "logistic")}
  for field, allowed in choices.items():
    section, key = field.split(".")
    value = config[section][key]
    _check(field, value in allowed, f"unknown value {value!r}", allowed)
  if algo.name not in (*SPARSE, "bcd"):
    _check("data.name", data.name in datasets.OFFLINE, f"unknown value {data.name!r}",
           datasets.OFFLINE)
  for field, low in {"algo.num_workers": 1, "algo.push_every": 1, "algo.fetch_every": 1,
                     "algo.tau": 0, "algo.num_backup": 0, "algo.cyclades_batch": 1,
                     "data.batch_size": 1, "data.num_examples": 1, "data.dim": 1,
                     "data.nonzeros": 1, "train.num_steps": 1, "train.log_every": 1,
                     "checkpoint.every_steps": 0, "checkpoint.keep": 1}.items():
    section, key = field.split(".")
    value = config[section][key]
    _check(field, isinstance(value, int) and value >= low, f"must be an integer >= {low}, got "
           f"{value!r}", f">= {low}")
  for field in ("algo.learning_rate", "algo.local_learning_rate", "algo.time_mean",
                "algo.time_offset", "algo.time_sigma", "data.noise", "data.regularization"):
    section, key = field.split(".")
    value = config[section][key]
    _check(field, isinstance(value, int | float) and value >= 0, f"must be >= 0, got {value!r}",
           ">= 0")
  _check("algo.fetch_every", algo.fetch_every % algo.push_every == 0, f"{algo.fetch_every} is "
         f"not a multiple of algo.push_every ({algo.push_every})", "multiples of push_every")
  _check("algo.num_backup", algo.num_backup < algo.num_workers, f"{algo.num_backup} leaves no "
         f"worker of {algo.num_workers}", f"0 .. {algo.num_workers - 1}")
  _check("data.nonzeros", data.nonzeros <= data.dim, f"{data.nonzeros} is more than data.dim",
         f"1 .. {data.dim}")
  _check("algo.slowdown", algo.slowdown >= 1, f"must be >= 1, got {algo.slowdown}", ">= 1")
  if algo.name == "bcd":
    _check("algo.num_workers", data.dim % algo.num_workers == 0, f"{algo.num_workers} blocks "
           f"do not divide data.dim ({data.dim})", f"divisors of {data.dim}")
  if algo.name == "cyclades":
    _check("algo.cyclades_batch", algo.cyclades_batch <= data.num_examples, f"{algo.cyclades_batch}"
           f" is more than data.num_examples ({data.num_examples})", f"1 .. {data.num_examples}")
  _check("train.log_every", train.num_steps % train.log_every == 0, f"{train.log_every} does "
         f"not divide train.num_steps ({train.num_steps})", "divisors of train.num_steps")
  every = config.checkpoint.every_steps
  _check("checkpoint.every_steps", every % train.log_every == 0, f"{every} is not a multiple of "
         f"train.log_every ({train.log_every})", "multiples of train.log_every, or 0")


# -- building -----------------------------------------------------------------------------------


def compute_time(algo) -> asynchrony.ComputeTime:
  if algo.compute_time == "constant":
    return asynchrony.Constant(algo.time_mean)
  if algo.compute_time == "exponential":
    return asynchrony.Exponential(algo.time_mean, algo.time_offset)
  if algo.compute_time == "lognormal":
    return asynchrony.LogNormal(sigma=algo.time_sigma, offset=algo.time_offset)
  return asynchrony.Straggler(asynchrony.Constant(algo.time_mean), worker=0,
                              slowdown=algo.slowdown)


def _classification(config):
  dataset = datasets.load(config.data.name, config.data.data_dir)
  model = models.build(config.model.name, dataset.input_shape, dataset.num_classes,
                       hidden=tuple(config.model.hidden))
  task = tasks.classification(model, datasets.preprocessor(dataset, "none"))
  params, model_state = model.init(jax.random.PRNGKey(config.seed))
  return dataset, task, params, model_state


def _accuracy(task, params, model_state, test) -> float:
  batch = {"input": jnp.asarray(test["input"]), "label": jnp.asarray(test["label"]),
           "mask": jnp.ones(len(test["label"]))}
  sums = jax.jit(task.evaluate)(params, model_state, batch)
  return float(sums["accuracy"] / sums["count"])


def _sparse_objective(config):
  data = asynchrony.random_sparse(config.data.num_examples, config.data.dim,
                                  config.data.nonzeros, seed=config.seed, noise=config.data.noise)
  kind = asynchrony.SparseSVM if config.data.objective == "svm" else asynchrony.SparseLogistic
  return kind(data, config.data.regularization)


class _Loop:
  """Chunks of `log_every` to `num_steps`, with checkpoints of a state and the records so far."""

  def __init__(self, config, workdir):
    self.config, self.workdir = config, workdir
    self.writer = MetricWriter(workdir)
    self.checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), config.checkpoint.keep)

  def run(self, state, advance) -> dict:
    """`advance(state, done) -> (state, record)` one chunk at a time, resumed if saved."""
    done, history = 0, []
    if self.checkpoints.latest_step() is not None:
      done, state, meta = self.checkpoints.restore(state)
      history = meta["history"]
    config, total = self.config, self.config.train.num_steps
    try:
      while done < total:
        state, record = advance(state, done)
        done += config.train.log_every
        record = {k: float(v) for k, v in record.items()}
        history.append({"step": done, **record})
        runs.claim_workdir(self.workdir, config)
        self.writer.write(done, record)
        print(f"step {done}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()),
              flush=True)
        every = config.checkpoint.every_steps
        if done == total or (every and done % every == 0):
          self.checkpoints.save(done, state, {"history": history})
    finally:
      self.writer.close()
      self.checkpoints.close()
    return {**history[-1], "preempted": False}


def _run_async_ps(config, loop):
  dataset, task, params, model_state = _classification(config)
  rng = jax.random.PRNGKey(config.seed + 1)
  loss = lambda p, b: task.loss(p, model_state, b, rng)[0]
  tx = (optax.sgd if config.algo.optimizer == "sgd" else optax.adagrad)(config.algo.learning_rate)
  algo = config.algo
  sim = asynchrony.async_ps(
      loss, tx, asynchrony.sampler(dataset.train, config.data.batch_size, seed=config.seed),
      num_workers=algo.num_workers, compute_time=compute_time(algo), reduction=algo.reduction,
      push_every=algo.push_every, fetch_every=algo.fetch_every,
      local_learning_rate=algo.local_learning_rate)

  def advance(state, done):
    state, trace = sim.run(state, config.train.log_every)
    summary = asynchrony.staleness_summary(trace)
    return state, {"updates": int(state.version), "staleness/mean": summary["staleness/mean"],
                   "staleness/max": summary["staleness/max"], "time": float(state.clock),
                   "train/loss": float(np.mean(trace["loss"])),
                   "test/accuracy": _accuracy(task, state.params, model_state, dataset.test)}

  return loop.run(sim.init(params, config.seed), advance)


def _run_sparse(config, loop):
  objective = _sparse_objective(config)
  stats = asynchrony.sparsity(objective.data)
  loss = functools.partial(asynchrony.objective_value, objective)
  x0 = jnp.zeros(objective.dim)
  algo = config.algo
  if algo.name == "hogwild":
    staleness = (asynchrony.Fixed(algo.tau) if algo.staleness == "fixed" else
                 asynchrony.Bounded(algo.tau))
    reads = asynchrony.TornReads() if algo.reads == "torn" else asynchrony.WholeVector()
    sgd = asynchrony.StaleSGD(objective, algo.learning_rate, staleness, reads)

    def advance(state, done):
      state, trace = sgd.run(state, config.train.log_every)
      return state, {"train/loss": loss(state.x), "delay/mean": np.mean(trace["delay"]),
                     **(stats if done == 0 else {})}

    return loop.run(sgd.init(x0, config.seed), advance)
  plan = cyclades.schedule(objective, batch_size=algo.cyclades_batch,
                           num_cores=algo.num_workers, num_batches=config.train.num_steps,
                           seed=config.seed)
  runner = asynchrony.Cyclades(objective, algo.learning_rate)

  def advance(state, done):
    x = runner.run(state["x"], plan[done:done + config.train.log_every])
    return {"x": x}, {"train/loss": loss(x), **(stats if done == 0 else {})}

  return loop.run({"x": x0}, advance)


def _run_workers(config, workdir):
  """backup_sgd and one_shot: the library's runner, with its own checkpoints and records."""
  dataset, task, params, model_state = _classification(config)
  algo = config.algo
  if algo.name == "backup_sgd":
    algorithm = asynchrony.backup_sgd(task.loss, optax.sgd, learning_rate=algo.learning_rate,
                                      num_backup=algo.num_backup, compute_time=compute_time(algo),
                                      reduction=algo.reduction)
  else:
    algorithm = asynchrony.one_shot_averaging(task.loss, optax.sgd,
                                              learning_rate=algo.learning_rate)
  data = sources.sampled(dataset.train, num_workers=algo.num_workers,
                         batch_size=config.data.batch_size, seed=config.seed)
  runner = Runner(algorithm, data, seed=config.seed, steps_per_chunk=config.train.log_every)
  result = runs.fit_in_workdir(config, workdir, functools.partial(
      runner.fit, params, model_state, num_steps=config.train.num_steps,
      checkpoint_dir=os.path.join(workdir, "checkpoints"),
      checkpoint_every=config.checkpoint.every_steps, keep=config.checkpoint.keep,
      eval_fn=task.evaluate, eval_data=dataset.test, eval_every=config.train.log_every),
      mapping={"num_steps": "train.num_steps"})
  last = {**result.final, "step": result.step}
  if algo.name == "one_shot":
    stacked, states = runner.deployed(result.state, average=False)
    model = models.build(config.model.name, dataset.input_shape, dataset.num_classes,
                         hidden=tuple(config.model.hidden))
    x = datasets.preprocessor(dataset, "none")(jnp.asarray(dataset.test["input"]), None, False)
    probabilities = asynchrony.prediction_average(
        lambda p, v: jax.nn.softmax(model.apply(p, jax.tree.map(lambda s: s[0], states), v,
                                                False)[0]), stacked, x)
    last["ensemble/accuracy"] = float(np.mean(np.argmax(probabilities, -1) ==
                                              dataset.test["label"]))
  return {**last, "preempted": False}


def _run_threaded(config, loop):
  dataset, task, params, model_state = _classification(config)
  rng = jax.random.PRNGKey(config.seed + 1)
  devices = jax.devices()
  if config.algo.num_workers > len(devices):
    raise ConfigError("algo.num_workers", f"{config.algo.num_workers} threads need as many "
                      f"devices; {len(devices)} are visible", f"1 .. {len(devices)}")
  runner = asynchrony.ThreadedAsyncSGD(
      lambda p, b: task.loss(p, model_state, b, rng)[0], config.algo.learning_rate,
      asynchrony.sampler(dataset.train, config.data.batch_size, seed=config.seed),
      devices=devices[:config.algo.num_workers], reduction=config.algo.reduction)

  def advance(state, done):
    result = runner.run(jax.device_get(state), config.train.log_every, first_index=done)
    return result.params, {"staleness/mean": result.staleness.mean(),
                           "staleness/max": result.staleness.max(),
                           "updates_per_second": result.updates_per_second,
                           "test/accuracy": _accuracy(task, result.params, model_state,
                                                      dataset.test)}

  return loop.run(params, advance)


def _run_bcd(config, loop):
  rng = np.random.default_rng(config.seed)
  a = rng.normal(size=(config.data.num_examples, config.data.dim)).astype(np.float32)
  b = (a @ rng.normal(size=config.data.dim) + 0.1 * rng.normal(size=len(a))).astype(np.float32)
  a, b = jnp.asarray(a), jnp.asarray(b)

  def advance(state, done):
    x = asynchrony.block_coordinate_descent(a, b, state["x"], num_blocks=config.algo.num_workers,
                                            num_sweeps=config.train.log_every)
    return {"x": x}, {"train/loss": jnp.mean((a @ x - b) ** 2) / 2}

  return loop.run({"x": jnp.zeros(config.data.dim)}, advance)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the config's algorithm in `workdir` (locked by the caller), resuming if it holds a
  checkpoint; returns the last record with "preempted"."""
  validate(config)
  try:
    if config.algo.name in ("backup_sgd", "one_shot"):
      return _run_workers(config, workdir)
    loop = _Loop(config, workdir)
    if config.algo.name in SPARSE:
      return _run_sparse(config, loop)
    run_algorithm = {"async_ps": _run_async_ps, "threaded": _run_threaded, "bcd": _run_bcd}
    return run_algorithm[config.algo.name](config, loop)
  except ArgumentError as e:  # the library's argument, named as the field that set it
    if e.argument not in FIELDS:
      raise
    raise ConfigError(FIELDS[e.argument], e.problem, e.allowed) from None
