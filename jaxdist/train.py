"""A training run: everything built from a config, K workers stepping in jitted chunks, metrics
logged, checkpoints saved and resumed, SIGTERM answered with a checkpoint."""

import json
import math
import os
import signal
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from jaxdist import algorithms, datasets, distributed, masking, models, partition, recipes, tasks
from jaxdist import config as config_lib
from jaxdist.checkpoint import Checkpoints
from jaxdist.errors import UserError
from jaxdist.workers import SHARED, make_workers
from jaxdist.writers import MetricWriter

# Fields that may differ when a run is resumed: they change what is logged or saved, not the run.
RESUMABLE_FIELDS = ("train.log_every", "eval.every_steps", "eval.batch_size",
                    "checkpoint.every_steps", "checkpoint.keep", "data.data_dir",
                    "workers.backend", "workers.num_devices")


def compiler_options() -> dict[str, str] | None:
  """XLA options for the jitted pieces of a run.

  On XLA:CPU only matrix products go to YNNPACK: its reductions turn the mean over the worker
  axis that averaging makes into a kernel ~50x slower than XLA's own loop (9 ms instead of
  0.17 ms for 8 x 65k floats), while its products run the K workers' batched products on both
  cores, where XLA's own run them on one (local SGD, K = 8 x 128: 1.45x -> 1.31x the time per
  example of one model; benchmarks/simulation_overhead.py).
  """
  return ({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
          if jax.default_backend() == "cpu" else None)


class TrainState(NamedTuple):
  rng: jax.Array  # base key; each step folds in the step and the worker index
  algo: Any


class Trainer:
  """The jitted pieces of a run, built from a validated config."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.dataset = datasets.relabel(datasets.load(config.data.name, config.data.data_dir),
                                    config.data.relabel)
    self.workers = make_workers(*config_lib.worker_grid(config), config.workers.backend,
                                config.workers.num_devices)
    self.sampler = partition.Sampler(
        self.dataset.train["label"], config.workers.num_workers, config.data.batch_size,
        config.data.partition, config.seed, config.data.dirichlet_alpha,
        config.data.dirichlet_scheme)
    self.train_size = len(self.dataset.train["label"])
    self.global_batch = config.workers.num_workers * config.data.batch_size
    self.total_steps = config_lib.total_steps(config, self.train_size)
    self.learning_rate = recipes.learning_rate(
        config.optim, global_batch=self.global_batch, train_size=self.train_size,
        total_steps=self.total_steps)
    tx = recipes.optimizer(config.optim, self.learning_rate)
    run = algorithms.Run(config, self.learning_rate, self.global_batch, self.train_size,
                         self.total_steps)
    self.model = models.build(config.model, self.dataset.input_shape, self.dataset.num_classes)
    if config.model.pretrained:
      self.model = models.pretrained(self.model, config.model.pretrained)
    self.task = tasks.classification(
        self.model, datasets.preprocessor(self.dataset, config.data.augment))
    self.model, self.task, self._deployed_weights = masking.wrap(
        config, self.model, self.task, num_classes=self.dataset.num_classes,
        ramp_steps=run.masking_ramp_steps())
    self.algorithm = algorithms.build(run, self.task.loss, tx, self.workers.comm)
    self.state_axes = TrainState(rng=SHARED, algo=self.algorithm.state_axes)
    self._train_chunk = jax.jit(
        self.workers.map(self._chunk, in_axes=(self.state_axes, 1),
                         out_axes=(self.state_axes, SHARED)),
        donate_argnums=0, compiler_options=compiler_options())
    self._compiled: dict[int, Any] = {}
    self._test_set, test_axes = self._place_test_set()
    self._evaluate = jax.jit(
        self.workers.map(self._evaluate_per_worker, in_axes=(self.state_axes, test_axes),
                         out_axes=SHARED), compiler_options=compiler_options())

  # -- state -------------------------------------------------------------------------------------

  def _initial_state(self) -> TrainState:
    """Every worker starts from the same model, drawn from the seed."""
    init_rng, algorithm_rng, train_rng = jax.random.split(jax.random.PRNGKey(self.config.seed), 3)
    params, model_state = self.model.init(init_rng)

    def per_worker(train_rng, algorithm_rng, params, model_state):
      return TrainState(train_rng, self.algorithm.init(params, model_state, algorithm_rng))

    return self.workers.map(per_worker, in_axes=SHARED, out_axes=self.state_axes)(
        train_rng, algorithm_rng, params, model_state)

  def init(self) -> TrainState:
    return jax.jit(self._initial_state, compiler_options=compiler_options())()

  def abstract_state(self) -> TrainState:
    """Shapes, dtypes and shardings of the state, for restoring a checkpoint onto the devices."""
    return self.workers.abstract(self.state_axes, jax.eval_shape(self._initial_state))

  # -- training ----------------------------------------------------------------------------------

  def _batch_shapes(self, num_steps: int) -> dict[str, jax.ShapeDtypeStruct]:
    lead = (num_steps, *self.workers.shape, self.config.data.batch_size)
    return self.workers.abstract(1, {k: jax.ShapeDtypeStruct(lead + v.shape[1:], v.dtype)
                                     for k, v in self.dataset.train.items()})

  def batches(self, first_step: int, num_steps: int) -> dict[str, jax.Array]:
    """The training batches of `num_steps` steps, `[steps, *worker grid, batch, ...]`, on the
    devices. Each device's shard is gathered for its own workers only."""
    worker_ids = np.arange(self.workers.num_workers).reshape(self.workers.shape)
    grid_dims = len(self.workers.shape)

    def build(key, spec):
      examples = self.dataset.train[key]

      def shard(index):
        workers = worker_ids[index[1:1 + grid_dims]]
        indices = self.sampler.indices(first_step, num_steps, workers.ravel())
        return examples[indices].reshape((num_steps, *workers.shape) + indices.shape[2:] +
                                         examples.shape[1:])

      return jax.make_array_from_callback(spec.shape, spec.sharding, shard)

    return {k: build(k, spec) for k, spec in self._batch_shapes(num_steps).items()}

  def _chunk(self, state: TrainState, batches):
    comm = self.workers.comm

    def body(state, batch):
      rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.algo.step), comm.index())
      batch = {**batch, "step": state.algo.step}  # shared by the workers; see tasks.Task
      algo, metrics = self.algorithm.step(state.algo, batch, rng)
      return TrainState(state.rng, algo), metrics

    state, metrics = lax.scan(body, state, batches)
    return state, comm.mean(metrics)  # one all-reduce for the chunk, not one per step

  def compile(self, num_steps: int) -> None:
    """Compiles the chunk of `num_steps` steps ahead of its first use."""
    if num_steps in self._compiled:
      return
    self._compiled[num_steps] = self._train_chunk.lower(
        self.abstract_state(), self._batch_shapes(num_steps)).compile()

  def train(self, state: TrainState, batches) -> tuple[TrainState, dict[str, jax.Array]]:
    """Runs the steps of `batches`; metrics come back per step, averaged over the workers."""
    num_steps = jax.tree.leaves(batches)[0].shape[0]
    self.compile(num_steps)
    return self._compiled[num_steps](state, batches)

  # -- evaluation --------------------------------------------------------------------------------

  def _place_test_set(self):
    """Test examples padded into batches; split over the workers when the averaged model is
    evaluated, the whole set for every worker when each worker's own model is."""
    test, size = self.dataset.test, len(self.dataset.test["label"])
    batch = min(self.config.eval.batch_size, size)
    split = self.config.eval.model == "average"
    parts = self.workers.num_workers if split else 1
    num_batches = math.ceil(size / (parts * batch))
    padded = parts * num_batches * batch
    arrays = {k: np.concatenate([v, np.zeros((padded - size,) + v.shape[1:], v.dtype)])
              for k, v in test.items()}
    arrays["mask"] = (np.arange(padded) < size).astype(np.float32)
    lead = (*self.workers.shape, num_batches, batch) if split else (num_batches, batch)
    arrays = {k: v.reshape(lead + v.shape[1:]) for k, v in arrays.items()}
    axes = 0 if split else SHARED
    return jax.device_put(arrays, self.workers.shardings(axes, arrays)), axes

  def _evaluate_per_worker(self, state: TrainState, test):
    comm = self.workers.comm
    params, model_state = self.algorithm.deployed(state.algo)
    if self.config.eval.model == "average":
      params, model_state = comm.mean((params, model_state))

    def body(total, batch):
      sums = self.task.evaluate(params, model_state, batch)
      return jax.tree.map(jnp.add, total, sums), None

    zeros = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    sums, _ = lax.scan(body, jax.tree.map(jnp.float32, zeros), test)
    sums = comm.mean(sums)
    return {"test/loss": sums["loss"] / sums["count"],
            "test/accuracy": sums["correct"] / sums["count"]}

  def evaluate(self, state: TrainState) -> dict[str, float]:
    return {k: float(v) for k, v in self._evaluate(state, self._test_set).items()}

  def average_model(self, state: TrainState) -> tuple[Any, Any]:
    """The workers' deployed (params, model_state), averaged, on the host."""
    def per_worker(state):
      return self.workers.comm.mean(self.algorithm.deployed(state.algo))

    mapped = self.workers.map(per_worker, in_axes=(self.state_axes,), out_axes=SHARED)
    return jax.device_get(jax.jit(mapped, compiler_options=compiler_options())(state))

  def save_model(self, state: TrainState, workdir: str) -> None:
    """Writes the averaged model as a plain one (masks applied) to workdir/model.npz, and for
    learned masks the packed binary masks, a task's whole cost, to workdir/masks.npz."""
    params, model_state = self.average_model(state)  # every process takes part
    if not distributed.is_primary():
      return
    models.save(os.path.join(workdir, "model.npz"), *self._deployed_weights(params, model_state))
    if self.config.masking.name == "learned":
      with open(os.path.join(workdir, "masks.npz"), "wb") as f:
        np.savez(f, **masking.export_masks(params))


# -- the run ---------------------------------------------------------------------------------------


def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return flat


def _check_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """The workdir must be writable and, if it holds a run, hold this run."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir: cannot write to {workdir} ({e.strerror}); choose a directory "
                    "you can write to") from None
  saved_path = os.path.join(workdir, "config.json")
  if not os.path.exists(saved_path):
    return
  with open(saved_path) as f:
    saved = json.load(f)
  current = _flatten(config)
  for field in sorted(set(saved) | set(current)):
    if field not in RESUMABLE_FIELDS and saved.get(field) != current.get(field):
      raise UserError(
          f"workdir: {workdir} holds a run with {field}={saved.get(field)!r} but the config has "
          f"{field}={current.get(field)!r}; use a new --workdir, or the same config to resume "
          f"(fields that may change on resume: {', '.join(RESUMABLE_FIELDS)})")


def _say(message: str) -> None:
  """Progress for the user, from process 0 only."""
  if distributed.is_primary():
    print(message, flush=True)


def _format_progress(step: int, total: int, scalars: dict, rate: float, eta: float) -> str:
  parts = [f"step {step:>{len(str(total))}}/{total} ({100 * step / total:3.0f}%)",
           f"loss {scalars['train/loss']:.4f}", f"acc {scalars['train/accuracy']:.3f}"]
  if "test/accuracy" in scalars:
    parts.append(f"test acc {scalars['test/accuracy']:.3f}")
  parts += [f"{rate:,.0f} ex/s", f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"]
  return " | ".join(parts)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains as `config` says, resuming from the newest checkpoint in `workdir` if there is one.

  Returns the last logged metrics and the step, with `"preempted": True` if SIGTERM stopped the
  run before its end.
  """
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  _check_workdir(workdir, config)
  trainer = Trainer(config)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), config.checkpoint.keep)
  try:
    if checkpoints.latest_step() is None:
      step, state, meta = 0, trainer.init(), {}
    else:
      step, state, meta = checkpoints.restore(trainer.abstract_state())
      _say(f"resumed from the checkpoint at step {step}")
    if distributed.is_primary():
      with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(_flatten(config), f, indent=1)
    writer = MetricWriter(workdir, resume_step=step, enabled=distributed.is_primary())
    try:
      return _train_loop(trainer, checkpoints, writer, workdir, step, state, meta)
    finally:
      writer.close()
  finally:
    checkpoints.close()


def _train_loop(trainer: Trainer, checkpoints: Checkpoints, writer: MetricWriter, workdir: str,
                step: int, state: TrainState, meta: dict) -> dict[str, Any]:
  config, total = trainer.config, trainer.total_steps
  log_every = config.train.log_every
  if step >= total:
    _say(f"the run in this workdir is complete (step {step})")
    return {"step": step, "preempted": False}
  started = time.perf_counter()
  for num_steps in {min(log_every, total - step), (total - step) % log_every or log_every}:
    trainer.compile(num_steps)
  _say(f"compiled the training step in {time.perf_counter() - started:.1f}s")

  stop = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  if in_main_thread:
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
  last: dict[str, Any] = {}
  try:
    batches = trainer.batches(step, min(log_every, total - step))
    tick, seconds_per_step, stopping = time.perf_counter(), None, False
    while step < total and not stopping:
      num_steps = jax.tree.leaves(batches)[0].shape[0]
      state, metrics = trainer.train(state, batches)
      step += num_steps
      if step < total:  # prepared on the host while the devices run
        batches = trainer.batches(step, min(log_every, total - step))
      metrics = jax.device_get(metrics)
      # All processes stop at the same step.
      stopping = distributed.any_process(stop.is_set(), trainer.workers.mesh)
      step_time = (time.perf_counter() - tick) / num_steps
      seconds_per_step = step_time if seconds_per_step is None else (
          0.7 * seconds_per_step + 0.3 * step_time)
      for name in [k for k in metrics if k.startswith("comm/")]:  # counts: totals of the run
        meta[name] = meta.get(name, 0.0) + float(np.sum(metrics.pop(name)))
      last = {"samples": step * trainer.global_batch,
              "epoch": step * trainer.global_batch / trainer.train_size,
              "lr": float(trainer.learning_rate(step - 1)),
              **{f"train/{k}": float(np.mean(v)) for k, v in metrics.items()},
              **meta, "perf/examples_per_second": trainer.global_batch / step_time}
      if step == total or (config.eval.every_steps and step % config.eval.every_steps == 0):
        last.update(trainer.evaluate(state))
      writer.write(step, last)
      _say(_format_progress(step, total, last, last["perf/examples_per_second"],
                            (total - step) * seconds_per_step))
      every = config.checkpoint.every_steps
      if step == total or stopping or (every and step % every == 0):
        checkpoints.save(step, state, meta)
      tick = time.perf_counter()
  finally:
    if in_main_thread:
      signal.signal(signal.SIGTERM, previous_handler)
  if step < total:
    _say(f"stopped by SIGTERM at step {step}; checkpoint saved; run the same command to resume")
    return {**last, "step": step, "preempted": True}
  trainer.save_model(state, workdir)
  _say(f"done: step {step}, test accuracy {last['test/accuracy']:.4f}")
  return {**last, "step": step, "preempted": False}
