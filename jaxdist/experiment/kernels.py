"""The `kernels` experiment family: one kernel method of [You20] ch. 2-4 on one dataset.

    family = "kernels"; task = "svm" | "krr" | "asy_gcd"; method = a name of that task
    data: name (ijcnn / covtype stand-ins, regression, libsvm with path), num_train, num_test,
          placement (iid / clustered / sorted: how rows sit on the workers before partitioning)
    kernel: name, gamma, coef0, degree;  svm: C, tol, max_iter;  krr: lambdas, sigmas
    asy_gcd: delay, lost_updates, num_updates, record_every;  workers: num_workers, backend
    partitioner: "" for the method's own, or a name of jaxdist.kernels.partition

The run writes `config.json` and `metrics.jsonl` (one record per KRR grid point, or per chunk of
Asy-GCD updates, then the result with its partitioner). Asy-GCD checkpoints its state (orbax,
as the training runs do: fingerprinted, the newest two kept, a damaged one set aside) after every
chunk in `checkpoints/<update>/`, so a rerun of the same command resumes it bit-exactly; SVM and
KRR runs are one solve and a rerun computes it again.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections

from jaxdist import kernels as lib
from jaxdist.core.layouts import Sharded, Simulated
from jaxdist.errors import ConfigError, check_fraction
from jaxdist.experiment.build import fields
from jaxdist.experiment.runs import claim_workdir
from jaxdist.experiment.writers import MetricWriter
from jaxdist.training.checkpoint import Checkpoints

CHECKPOINTS_KEPT = 2

TASKS = {"svm": tuple(lib.SVM_METHODS), "krr": lib.KRR_METHODS,
         "asy_gcd": ("asy_gcd", "synchronous_block_greedy")}
DATASETS = ("ijcnn", "covtype", "regression", "libsvm")
BACKENDS = ("simulated", "shard_map")
# methods whose partition is the method itself (a `partitioner` field would contradict it)
OWN_PARTITION = ("ca_svm", "cp_svm", "fcfs_svm", "bkm_svm", "dc_svm", "dc_filter", "sub_sampling")
POWER_OF_TWO_WORKERS = ("cascade", "dc_svm", "dc_filter")  # a binary tree of solves
FIELDS = {"kernel": "kernel.name", "gamma": "kernel.gamma", "coef0": "kernel.coef0",
          "degree": "kernel.degree", "C": "svm.C", "tol": "svm.tol", "max_iter": "svm.max_iter",
          "sigmas": "krr.sigmas", "lambdas": "krr.lambdas", "lost_updates": "asy_gcd.lost_updates"}


def default() -> ml_collections.ConfigDict:
  """Every field of a kernels config, with its default."""
  return ml_collections.ConfigDict(dict(
      family="kernels", task="svm", method="ca_svm", partitioner="", seed=0,
      data=dict(name="ijcnn", path="", num_train=4000, num_test=1000, placement="iid"),
      kernel=dict(name="gaussian", gamma=0.1, coef0=0.0, degree=3),
      svm=dict(C=1.0, tol=1e-3, max_iter=100_000),
      krr=dict(lambdas=(1e-6, 1e-4, 1e-2), sigmas=(0.5, 1.0, 2.0)),
      asy_gcd=dict(delay=0, lost_updates=0.0, num_updates=4000, record_every=500, guard=True),
      workers=dict(num_workers=8, backend="simulated")))


def _choice(config, field, allowed):
  value = config
  for key in field.split("."):
    value = value[key]
  if value not in allowed:
    raise ConfigError(field, f"unknown value {value!r}", allowed)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field that cannot be used."""
  known = default()
  for section, entries in config.items():
    if section not in known:
      raise ConfigError(section, f"no such field {section!r}", ", ".join(sorted(known)))
    if isinstance(entries, ml_collections.ConfigDict):
      for key in entries:
        if key not in known[section]:
          raise ConfigError(f"{section}.{key}", f"no such field {key!r} in {section}",
                            ", ".join(sorted(known[section])))
  config = _filled(config)
  _choice(config, "task", tuple(TASKS))
  _choice(config, "method", TASKS[config.task])
  _choice(config, "data.name", DATASETS)
  _choice(config, "data.placement", lib.data.PLACEMENTS)
  _choice(config, "workers.backend", BACKENDS)
  if config.partitioner:
    _choice(config, "partitioner", lib.partition.PARTITIONERS)
    if config.method in OWN_PARTITION:
      raise ConfigError("partitioner", f"method {config.method} partitions the rows its own way",
                        "'' (empty) for it")
  if config.data.name == "libsvm" and not config.data.path:
    raise ConfigError("data.path", "a LIBSVM dataset needs the path of its file", "a path")
  regression = config.data.name in ("regression", "libsvm")
  classification = config.data.name != "regression"
  if not (regression if config.task == "krr" else classification):
    raise ConfigError("data.name", f"task {config.task} cannot use {config.data.name!r}",
                      "regression (krr)" if config.task == "krr" else "ijcnn, covtype, libsvm")
  for field, low in (("data.num_train", 2), ("data.num_test", 1), ("workers.num_workers", 1),
                     ("svm.max_iter", 1), ("asy_gcd.num_updates", 1),
                     ("asy_gcd.record_every", 1), ("asy_gcd.delay", 0)):
    section, key = field.split(".")
    value = config[section][key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ConfigError(field, f"must be an integer >= {low}, got {value!r}", f">= {low}")
  workers = config.workers.num_workers
  if workers > config.data.num_train:
    raise ConfigError("workers.num_workers", "more workers than training rows",
                      f"1..{config.data.num_train}")
  if config.method in POWER_OF_TWO_WORKERS and workers & (workers - 1):
    raise ConfigError("workers.num_workers", f"{workers} is not a power of two, which "
                      f"{config.method}'s tree of solves needs", "1, 2, 4, 8, ...")
  with fields(FIELDS):
    _kernel(config)
    lib.krr_family.grid(config.krr.lambdas, config.krr.sigmas)
    check_fraction("lost_updates", config.asy_gcd.lost_updates, closed=True)
    lib.smo.check_svm_arguments(config.svm.C, config.svm.tol, config.svm.max_iter)


def _filled(config):
  """The config over the defaults (fields it leaves out keep theirs)."""
  full = default()
  full.update(config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config)
  return full


def _kernel(config) -> lib.Kernel:
  k = config.kernel
  return lib.Kernel(k.name, gamma=float(k.gamma), coef0=float(k.coef0), degree=int(k.degree))


def _data(config):
  d, total = config.data, config.data.num_train + config.data.num_test
  if d.name == "libsvm":
    x, y = lib.data.load_libsvm(d.path, binary=config.task != "krr")
  elif d.name == "regression":
    x, y = lib.data.regression(total, seed=config.seed)
  else:
    x, y = lib.data.stand_in(d.name, total, seed=config.seed)
  x, y, x_test, y_test = lib.data.split(x, y, min(d.num_test, len(x) // 2), seed=config.seed)
  x, y = x[:d.num_train], y[:d.num_train]
  x, y = lib.data.place(x, y, config.workers.num_workers, d.placement, seed=config.seed)
  return x, y, x_test, y_test


def _layout(config):
  return Sharded() if config.workers.backend == "shard_map" else Simulated()


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the method the config names; returns the result record with "preempted"."""
  config = _filled(config)
  x, y, x_test, y_test = _data(config)  # a dataset that cannot be read leaves the workdir free
  claim_workdir(workdir, config)
  writer = MetricWriter(workdir)
  try:
    if config.task == "asy_gcd":
      last = _run_asy_gcd(config, workdir, writer, x, y)
    else:
      last = _run_method(config, writer, x, y, x_test, y_test)
  finally:
    writer.close()
  _say(f"done: {config.method} ({last.get('partitioner', '')}), " + ", ".join(
      f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))[:300])
  return {**last, "preempted": False}


def _run_method(config, writer, x, y, x_test, y_test):
  common = dict(num_workers=config.workers.num_workers, layout=_layout(config), seed=config.seed)
  if config.partitioner:
    common["partitioner"] = config.partitioner
  if config.task == "svm":
    report = lib.SVM_METHODS[config.method](
        x, y, x_test, y_test, kernel=_kernel(config), C=config.svm.C, tol=config.svm.tol,
        max_iter=config.svm.max_iter, **common)
    step = 0
  else:
    report = lib.krr_method(x, y, x_test, y_test, method=config.method,
                            lambdas=tuple(config.krr.lambdas), sigmas=tuple(config.krr.sigmas),
                            **common)
    for step, ((lam, sigma), mse) in enumerate(zip(report.extra["grid"],
                                                   report.extra["grid_mse"])):
      writer.write(step, {"lambda": lam, "sigma": sigma, "test/mse": mse})  # one iteration
    step = len(report.extra["grid"])
  record = {"method": report.method, "partitioner": report.partitioner, **report.record()}
  writer.write(step, {k: v for k, v in record.items() if not isinstance(v, str)})
  return {"step": step, **record}


def _run_asy_gcd(config, workdir, writer, x, y):
  kernel, a = _kernel(config), config.asy_gcd
  blocks = (lib.partition.make(config.partitioner, x, config.workers.num_workers,
                               config.seed).assignment if config.partitioner else
            lib.asy_gcd.kmeans_blocks(x, config.workers.num_workers, config.seed))
  partitioner = config.partitioner or "kmeans"
  if config.method == "synchronous_block_greedy":
    _, values = lib.synchronous_block_greedy(kernel, x, y, blocks, C=config.svm.C,
                                             rounds=a.num_updates, guard=a.guard,
                                             layout=_layout(config))
    for step in range(0, a.num_updates, a.record_every):
      writer.write(step + 1, {"objective": float(values[step])})
    return {"step": a.num_updates, "partitioner": partitioner,
            "objective": float(values[-1])}
  method = lib.AsyGCD(kernel, x, y, blocks, C=config.svm.C, delay=a.delay,
                      lost_updates=a.lost_updates)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=CHECKPOINTS_KEPT, say=_say)
  try:
    state = jax.device_put(method.init(config.seed))
    if checkpoints.latest_step() is not None:
      _, state, _ = checkpoints.restore(jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state))
      _say(f"resumed from update {int(state.update)}")
    last = {"step": int(state.update), "partitioner": partitioner}
    while int(state.update) < a.num_updates:
      chunk = min(a.record_every, a.num_updates - int(state.update))
      state, metrics = method.run(state, chunk)
      step = int(state.update)
      scalars = {k: float(v) for k, v in metrics.items()}
      writer.write(step, scalars)
      checkpoints.save(step, state, {"method": config.method})
      last = {"step": step, "partitioner": partitioner, **scalars}
  finally:
    checkpoints.close()
  return last
