"""The runner: K workers of one algorithm stepping in jitted chunks, on the user's own pieces.

    runner = jaxdist.Runner(algorithm, data, num_workers=8)          # or grid=(nodes, per_node)
    result = runner.fit(params, model_state, num_steps=1000, checkpoint_dir="ckpt")

Every worker starts from the same `params` and `model_state`. A chunk of `steps_per_chunk` steps
runs as one `lax.scan` inside one jit, vmapped over the workers (shard_map over a mesh with the
`Sharded` layouts); worker k's key at step t is fold_in(fold_in(key, t), k), and a dict batch
also gets `batch["step"]` = t. Metrics come back per step, averaged over the workers once per
chunk. `fit` logs a record per chunk (means of the metrics, totals of the `comm/*` counts),
evaluates, shows progress, and checkpoints to and resumes from `checkpoint_dir` with orbax: a
resumed run ends bit-identical to an unbroken one when the data depend only on (step, worker).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu
from jax import lax

from jaxdist.core import collectives, distributed
from jaxdist.core.layouts import Simulated, check_layout
from jaxdist.core.state import SHARED, shared, state_class, worker_axes
from jaxdist.data.sources import as_data
from jaxdist.errors import ArgumentError, UserError, check_at_least, check_choice
from jaxdist.training import progress as progress_lib
from jaxdist.training.checkpoint import Checkpoints

PyTree = Any
GRID_NAMES = {1: ("workers",), 2: ("nodes", "workers")}
ON_NONFINITE = ("stop", "skip")
COUNTS = ("comm/", "nonfinite/")  # metrics summed over the steps of a run, not averaged


class Divergence(UserError):
  """The training diverged: a metric or a parameter is no longer finite."""


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


@state_class
class RunState:
  """The whole state of a run: the step, the base key and the algorithm's state."""

  step: jax.Array = shared()
  rng: jax.Array = shared()  # each step folds in the step and the worker index
  algorithm: Any = None  # declares its own per-worker and shared fields


@dataclasses.dataclass
class Result:
  """What `fit` returns: the final state, one record per chunk (with the evaluations), the step
  reached, the step this call started from (a resumed run's checkpoint), and whether
  `should_stop` ended it early."""

  state: RunState
  history: list[dict[str, float]]
  step: int
  started: int
  preempted: bool
  runner: Runner

  @property
  def final(self) -> dict[str, float]:
    """The last record."""
    return self.history[-1] if self.history else {}

  def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `name` over the records that have it."""
    points = [(r["step"], r[name]) for r in self.history if name in r]
    steps, values = zip(*points) if points else ((), ())
    return np.asarray(steps), np.asarray(values)

  def deployed(self, average: bool = True) -> tuple[PyTree, PyTree]:
    """The workers' deployed (params, model_state) on the host: averaged, or stacked per worker."""
    return self.runner.deployed(self.state, average)


class Runner:
  """Runs an algorithm for K workers on a data source.

  Args:
    algorithm: an object with `init`, `step` and `deployed` (`jaxdist.local_sgd(...)`, ...).
    data: a data source (`jaxdist.data.from_arrays`, `from_function`, `from_iterator`,
      `sampled`) or an iterable of per-worker batches.
    num_workers: K; taken from the data source when it knows it.
    grid: the worker grid instead of `num_workers`: `(nodes, workers_per_node)` for the
      hierarchical algorithms.
    layout: where the workers live: `jaxdist.Simulated()` (default), `jaxdist.Sharded()`,
      `jaxdist.MultiProcess(...)`.
    seed: the seed of the algorithm's initial key and of every step's keys.
    steps_per_chunk: steps per jitted call (and per record of `fit`).
    examples_per_step: examples in one step over all workers, for the examples/s in the records;
      by default K times the third dimension of the first batch leaf, when it has one.
    on_nonfinite: `stop`: `fit` ends with a `Divergence` error naming the first step whose
      metrics or parameters are not finite, and saves nothing of it; `skip`: a step whose
      metrics or new parameters are not finite on any worker is dropped on every worker (its
      state and counters kept as they were; the data moves on), counted in
      `nonfinite/skipped`.
  """

  def __init__(self, algorithm: Any, data: Any, *, num_workers: int | None = None,
               grid: Sequence[int] | None = None, layout: Any = None, seed: int = 0,
               steps_per_chunk: int = 50, examples_per_step: int | None = None,
               on_nonfinite: str = "stop"):
    for method in ("init", "step", "deployed"):
      if not callable(getattr(algorithm, method, None)):
        raise ArgumentError("algorithm", f"{type(algorithm).__name__} has no {method}()",
                            "an object with init, step and deployed (jaxdist.local_sgd(...), ...)")
    self.algorithm, self.data = algorithm, as_data(data)
    self.grid = self._grid(num_workers, grid)
    layout = Simulated() if layout is None else layout
    check_layout(layout)
    check_at_least("steps_per_chunk", steps_per_chunk, 1, integer=True)
    if examples_per_step is not None:
      check_at_least("examples_per_step", examples_per_step, 1, integer=True)
    self.layout, self.seed, self.steps_per_chunk = layout, seed, int(steps_per_chunk)
    self.examples_per_step = examples_per_step
    check_choice("on_nonfinite", on_nonfinite, ON_NONFINITE)
    self.on_nonfinite = on_nonfinite
    self.workers = layout.workers(self.grid, GRID_NAMES[len(self.grid)])
    self.num_workers = self.workers.num_workers
    self._local_workers = self._workers_of_this_process()
    self._train_chunk = None
    self._compiled: dict[int, Any] = {}
    self._evaluations: dict[Any, Any] = {}
    self._deployed: dict[bool, Any] = {}
    self._axes = None

  def _grid(self, num_workers, grid) -> tuple[int, ...]:
    known = getattr(self.data, "num_workers", None)
    if grid is not None:
      if num_workers is not None:
        raise ArgumentError("grid", "given together with num_workers",
                            "one of num_workers and grid")
      grid = tuple(grid)
      if len(grid) not in GRID_NAMES:
        raise ArgumentError("grid", f"{grid} has {len(grid)} dimensions",
                            "(num_workers,) or (nodes, workers_per_node)")
      for size in grid:
        check_at_least("grid", size, 1, integer=True)
      grid = tuple(int(s) for s in grid)
    else:
      num_workers = known if num_workers is None else num_workers
      if num_workers is None:
        raise ArgumentError("num_workers", "missing: the data source does not fix it",
                            "the number of workers, an integer >= 1")
      check_at_least("num_workers", num_workers, 1, integer=True)
      grid = (int(num_workers),)
    if known is not None and known != math.prod(grid):
      raise ArgumentError("data", f"the data source is for {known} workers, the run has "
                          f"{math.prod(grid)}", f"a source for {math.prod(grid)} workers")
    return grid

  # -- state -------------------------------------------------------------------------------------

  def _initial_state(self, params, model_state, key) -> RunState:
    algorithm_rng, train_rng = jax.random.split(key)
    return RunState(jnp.zeros((), jnp.int32), train_rng,
                    self.algorithm.init(params, model_state, algorithm_rng))

  def state_axes(self, params: PyTree, model_state: PyTree = None) -> Any:
    """The worker axes of the run state (0 per worker, None shared), from its declarations."""
    if self._axes is None:
      shapes = jax.eval_shape(self._initial_state, params, _state(model_state),
                              jax.random.PRNGKey(self.seed))
      self._axes = worker_axes(shapes)
    return self._axes

  def init(self, params: PyTree, model_state: PyTree = None) -> RunState:
    """The state of every worker at step 0, from the same initial model."""
    model_state = _state(model_state)
    axes = self.state_axes(params, model_state)
    key = jax.random.PRNGKey(self.seed)
    inputs = self._replicated((params, model_state, key))
    initial = self.workers.map(self._initial_state, in_axes=SHARED, out_axes=axes)
    return jax.jit(initial, compiler_options=compiler_options())(*inputs)

  def abstract_state(self, params: PyTree, model_state: PyTree = None) -> RunState:
    """Shapes, dtypes and shardings of the state, for restoring a checkpoint onto the devices."""
    model_state = _state(model_state)
    shapes = jax.eval_shape(lambda p, m, k: self.workers.map(
        self._initial_state, in_axes=SHARED, out_axes=self.state_axes(p, m))(p, m, k),
        params, model_state, jax.random.PRNGKey(self.seed))
    return self.workers.abstract(self.state_axes(params, model_state), shapes)

  def mapped_functions(self, params: PyTree, model_state: PyTree = None) -> tuple[Callable,
                                                                                  Callable]:
    """The run's two pieces mapped over the workers, not jitted, for callers that batch whole
    runs (a search's vmapped population of trials): `init(params, model_state, key)`, the state
    `init` gives for `PRNGKey(seed)` = key, and `chunk(state, batches)` -> (state, per-step
    metrics averaged over the workers), the steps of `train`."""
    axes = self.state_axes(params, _state(model_state))
    init = self.workers.map(self._initial_state, in_axes=SHARED, out_axes=axes)
    chunk = self.workers.map(self._chunk, in_axes=(axes, 1), out_axes=(axes, SHARED))
    return init, chunk

  def _replicated(self, tree: PyTree) -> PyTree:
    """Host values as arrays every device holds whole (every process gives the same values)."""
    def place(x, sharding):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree, self.workers.shardings(SHARED, tree))

  # -- training ----------------------------------------------------------------------------------

  def _workers_of_this_process(self) -> np.ndarray:
    """Flat ids of the workers whose data this process provides."""
    ids = np.arange(self.num_workers).reshape(self.grid)
    probe = self.workers.shardings(0, jax.ShapeDtypeStruct(self.grid, jnp.float32))
    held = [ids[index].ravel() for index in
            probe.addressable_devices_indices_map(self.grid).values()]
    return np.unique(np.concatenate(held))

  def batches(self, first_step: int, num_steps: int) -> PyTree:
    """The batches of `num_steps` steps from `first_step`, `[steps, *grid, ...]`, on the devices;
    each process builds those of its own workers only."""
    local = self._local_workers
    host = self.data.batches(first_step, num_steps, local)
    position = np.full(self.num_workers, -1)
    position[local] = np.arange(len(local))
    ids = np.arange(self.num_workers).reshape(self.grid)

    def place(x):
      x = np.asarray(x)
      if x.ndim < 2 or x.shape[:2] != (num_steps, len(local)):
        raise ArgumentError("data", f"a batch leaf of shape {x.shape} for {num_steps} steps of "
                            f"{len(local)} workers", f"leaves shaped [{num_steps}, "
                            f"{len(local)}, ...]: steps, workers, then one worker's batch")
      shape = (num_steps, *self.grid, *x.shape[2:])
      sharding = self.workers.shardings(1, jax.ShapeDtypeStruct(shape, x.dtype))

      def shard(index):
        block = ids[index[1:1 + len(self.grid)]]
        rows = x[:, position[block.ravel()]]
        return rows.reshape((num_steps, *block.shape) + x.shape[2:])

      return jax.make_array_from_callback(shape, sharding, shard)

    return jax.tree.map(place, host)

  def _chunk(self, state: RunState, batches):
    # every step's key, drawn before the loop as one batched threefry: inside it each fold_in
    # is a rolled loop of its own on CPU (the same keys either way)
    steps = jax.tree.leaves(batches)[0].shape[0]
    index = collectives.index()
    keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.fold_in(state.rng, t), index))(
        state.step + jnp.arange(steps, dtype=state.step.dtype))

    def body(state, inputs):
      batch, rng = inputs
      if isinstance(batch, dict):
        batch = {**batch, "step": state.step}  # shared by the workers; see objectives.Task
      algorithm, metrics = self.algorithm.step(state.algorithm, batch, rng)
      if self.on_nonfinite == "skip":
        ok = self._everywhere_finite(metrics, algorithm)
        algorithm = jax.tree.map(lambda new, old: jnp.where(ok, new, old), algorithm,
                                 state.algorithm)
        metrics = {**metrics, "nonfinite/skipped": 1.0 - ok.astype(jnp.float32)}
      return state.replace(step=state.step + 1, algorithm=algorithm), metrics

    state, metrics = lax.scan(body, state, (batches, keys))
    finite = self._everywhere_finite({}, state.algorithm)  # once a chunk: the parameters
    metrics = collectives.mean(metrics)  # one all-reduce for the chunk, not one per step
    metrics["nonfinite/params"] = jnp.broadcast_to(1.0 - finite.astype(jnp.float32), (steps,))
    return state, metrics

  def _everywhere_finite(self, metrics: dict, algorithm_state: Any) -> jax.Array:
    """Whether the metrics and the deployed parameters are finite on every worker."""
    params, _ = self.algorithm.deployed(algorithm_state)
    leaves = [x for x in jax.tree.leaves((metrics, params))
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    here = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True
    return collectives.mean(jnp.asarray(here, jnp.float32)) == 1.0

  def compile(self, abstract_state: RunState, batch_shapes: PyTree) -> float:
    """Compiles the chunk for batches shaped like `batch_shapes` (ShapeDtypeStructs with
    shardings, e.g. of `batches(...)`) ahead of its first use; returns the seconds it took."""
    num_steps = jax.tree.leaves(batch_shapes)[0].shape[0]
    if num_steps in self._compiled:
      return 0.0
    started = time.perf_counter()
    if self._train_chunk is None:
      axes = worker_axes(abstract_state)
      self._train_chunk = jax.jit(
          self.workers.map(self._chunk, in_axes=(axes, 1), out_axes=(axes, SHARED)),
          donate_argnums=0, compiler_options=compiler_options())
    self._compiled[num_steps] = self._train_chunk.lower(abstract_state, batch_shapes).compile()
    return time.perf_counter() - started

  def train(self, state: RunState, batches: PyTree) -> tuple[RunState, dict[str, jax.Array]]:
    """Runs the steps of `batches`; the metrics come back per step, averaged over the workers.
    `state` is donated: use the returned one."""
    num_steps = jax.tree.leaves(batches)[0].shape[0]
    if num_steps not in self._compiled:
      self.compile(_abstract(state), _abstract(batches))
    return self._compiled[num_steps](state, batches)

  def run(self, state: RunState, num_steps: int) -> tuple[RunState, dict[str, np.ndarray]]:
    """`num_steps` steps from `state` in chunks; the per-step metrics, on the host."""
    check_at_least("num_steps", num_steps, 1, integer=True)
    first, chunks = int(jax.device_get(state.step)), []
    done = 0
    while done < num_steps:
      size = min(self.steps_per_chunk, num_steps - done)
      state, metrics = self.train(state, self.batches(first + done, size))
      chunks.append(jax.device_get(metrics))
      done += size
    return state, jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)

  # -- models and evaluation ---------------------------------------------------------------------

  def deployed(self, state: RunState, average: bool = True) -> tuple[PyTree, PyTree]:
    """The workers' deployed (params, model_state) on the host: their average (every process
    takes part), or stacked per worker `[*grid, ...]` (simulated runs, or one process)."""
    if average not in self._deployed:  # one jit per form, not one per call
      def per_worker(state):
        model = self.algorithm.deployed(state.algorithm)
        return collectives.mean(model) if average else model

      mapped = self.workers.map(per_worker, in_axes=(worker_axes(state),),
                                out_axes=SHARED if average else 0)
      self._deployed[average] = jax.jit(mapped, compiler_options=compiler_options())
    return jax.device_get(self._deployed[average](state))

  def evaluate(self, state: RunState, eval_fn: Callable, arrays: dict[str, np.ndarray], *,
               batch_size: int = 500, per_worker: bool = False) -> dict[str, float]:
    """Evaluates the deployed models on `arrays` (e.g. a test set `{"input", "label"}`).

    Args:
      eval_fn: `eval_fn(params, model_state, batch) -> sums`, sums over the batch's examples
        whose `batch["mask"]` is 1, with their number under "count" (`Task.evaluate`).
      arrays: the evaluation examples, padded into batches here.
      batch_size: examples per evaluation batch.
      per_worker: evaluate every worker's own model on the whole set and average the results;
        otherwise the averaged model, the set split over the workers.

    Returns:
      `{"test/<name>": sum / count}` for every sum but the count.
    """
    key = (id(eval_fn), id(arrays), batch_size, per_worker)
    if key not in self._evaluations:
      self._evaluations[key] = self._evaluation(state, eval_fn, arrays, batch_size, per_worker)
    fn, placed = self._evaluations[key]
    sums = jax.device_get(fn(state, placed))
    count = sums.pop("count")
    return {f"test/{k}": float(v / count) for k, v in sums.items()}

  def _evaluation(self, state, eval_fn, arrays, batch_size, per_worker):
    check_at_least("eval_batch_size", batch_size, 1, integer=True)
    size = len(next(iter(arrays.values())))
    batch = min(batch_size, size)
    parts = 1 if per_worker else self.num_workers
    num_batches = math.ceil(size / (parts * batch))
    padded = parts * num_batches * batch
    host = {k: np.concatenate([v, np.zeros((padded - size,) + v.shape[1:], v.dtype)])
            for k, v in arrays.items()}
    host["mask"] = (np.arange(padded) < size).astype(np.float32)
    lead = (num_batches, batch) if per_worker else (*self.grid, num_batches, batch)
    host = {k: v.reshape(lead + v.shape[1:]) for k, v in host.items()}
    data_axes = SHARED if per_worker else 0
    placed = (self._replicated(host) if per_worker else
              jax.device_put(host, self.workers.shardings(0, host)))

    def evaluate(state, data):
      params, model_state = self.algorithm.deployed(state.algorithm)
      if not per_worker:
        params, model_state = collectives.mean((params, model_state))

      def body(total, batch):
        return otu.tree_add(total, eval_fn(params, model_state, batch)), None

      first = jax.tree.map(lambda x: x[0], data)
      zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32),
                           jax.eval_shape(eval_fn, params, model_state, first))
      sums, _ = lax.scan(body, zeros, data)
      return collectives.mean(sums)

    axes = worker_axes(state)
    fn = jax.jit(self.workers.map(evaluate, in_axes=(axes, data_axes), out_axes=SHARED),
                 compiler_options=compiler_options())
    return fn, placed

  # -- a whole run -------------------------------------------------------------------------------

  def fit(self, params: PyTree, model_state: PyTree = None, *, num_steps: int,
          checkpoint_dir: str | None = None, checkpoint_every: int = 0, keep: int = 2,
          eval_fn: Callable | None = None, eval_data: dict[str, np.ndarray] | None = None,
          eval_every: int = 0, eval_batch_size: int = 500, eval_per_worker: bool = False,
          progress: bool | str = True, on_record: Callable[[dict], None] | None = None,
          record_extras: Callable[[int], dict] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Result:
    """Trains for `num_steps` steps from `params`, or resumes from `checkpoint_dir`.

    Args:
      params, model_state: the initial model of every worker (`model_state` None: `{}`).
      num_steps: steps of the whole run (a resumed run continues to the same end).
      checkpoint_dir: where orbax checkpoints of the whole state go; a run resumes from the
        newest one there. None: no checkpoints.
      checkpoint_every: steps between checkpoints (a multiple of steps_per_chunk); 0: at the end
        and when stopped only.
      keep: checkpoints kept.
      eval_fn, eval_data: evaluation (see `evaluate`) every `eval_every` steps (a multiple of
        steps_per_chunk; 0: at the end only).
      eval_batch_size, eval_per_worker: as `evaluate`'s batch_size and per_worker.
      progress: True for a tqdm bar, "lines" for one printed line per record, False for none.
      on_record: called with every record as it is made (e.g. to write it somewhere).
      record_extras: `record_extras(step) -> dict` of more values for the record at `step`.
      should_stop: polled after every chunk; True saves a checkpoint and returns early (all
        processes stop at the same step).

    Returns:
      A `Result` with the final state and the records.
    """
    check_at_least("num_steps", num_steps, 1, integer=True)
    check_at_least("keep", keep, 1, integer=True)
    for name, every in (("checkpoint_every", checkpoint_every), ("eval_every", eval_every)):
      check_at_least(name, every, 0, integer=True)
      if every % self.steps_per_chunk:
        raise ArgumentError(name, f"{every} is not a multiple of steps_per_chunk "
                            f"({self.steps_per_chunk})", f"0 or multiples of "
                            f"{self.steps_per_chunk}")
    if (eval_fn is None) != (eval_data is None):
      raise ArgumentError("eval_data" if eval_data is None else "eval_fn", "missing: evaluation "
                          "needs both eval_fn and eval_data", "both, or neither")
    if progress not in (True, False, "lines"):
      raise ArgumentError("progress", f"unknown value {progress!r}", (True, False, "lines"))
    model_state = _state(model_state)
    show = progress if distributed.is_primary() else False
    checkpoints = (Checkpoints(checkpoint_dir, keep, say=lambda m: progress_lib.say(show, m))
                   if checkpoint_dir else None)
    try:
      abstract = self.abstract_state(params, model_state)
      if checkpoints is not None and checkpoints.latest_step() is not None:
        step, state, meta = checkpoints.restore(abstract)
        progress_lib.say(show, f"resumed from the checkpoint at step {step}")
      else:
        step, state, meta = 0, self.init(params, model_state), {}
      history = [r for r in meta.get("history", []) if r["step"] <= step]
      totals = dict(meta.get("totals", {}))
      if step >= num_steps:
        progress_lib.say(show, f"the run is complete (step {step})")
        return Result(state, history, step, step, False, self)
      batches = self.batches(step, min(self.steps_per_chunk, num_steps - step))
      last = (num_steps - step) % self.steps_per_chunk or self.steps_per_chunk
      seconds = sum(self.compile(abstract, _resize(_abstract(batches), size))
                    for size in {jax.tree.leaves(batches)[0].shape[0], last})
      progress_lib.say(show, f"compiled the training step in {seconds:.1f}s")
      started = step
      with progress_lib.Progress(show, step, num_steps) as bar:
        step, state, preempted = self._loop(
            state, batches, step, num_steps, history, totals, checkpoints, checkpoint_every,
            (eval_fn, eval_data, eval_every, eval_batch_size, eval_per_worker), bar, on_record,
            record_extras, should_stop)
      return Result(state, history, step, started, preempted, self)
    finally:
      if checkpoints is not None:
        checkpoints.close()

  def _loop(self, state, batches, step, num_steps, history, totals, checkpoints,
            checkpoint_every, evaluation, bar, on_record, record_extras, should_stop):
    eval_fn, eval_data, eval_every, eval_batch_size, eval_per_worker = evaluation
    tick, seconds_per_step, stopping = time.perf_counter(), None, False
    while step < num_steps and not stopping:
      size = jax.tree.leaves(batches)[0].shape[0]
      if self.examples_per_step is None:
        self.examples_per_step = _examples_per_step(batches, len(self.grid),
                                                    self.num_workers)
      state, metrics = self.train(state, batches)
      step += size
      if step < num_steps:  # prepared on the host while the devices run
        batches = self.batches(step, min(self.steps_per_chunk, num_steps - step))
      metrics = jax.device_get(metrics)
      stopping = distributed.any_process(bool(should_stop and should_stop()), self.workers.mesh)
      step_time = (time.perf_counter() - tick) / size
      seconds_per_step = step_time if seconds_per_step is None else (
          0.7 * seconds_per_step + 0.3 * step_time)
      self._check_finite(metrics, step - size, checkpoints)
      for name in [k for k in metrics if k.startswith(COUNTS)]:  # counts: totals of the run
        totals[name] = totals.get(name, 0.0) + float(np.sum(metrics.pop(name)))
      record = {"step": step, **(record_extras(step) if record_extras else {}),
                **{f"train/{k}": _finite_mean(v) for k, v in metrics.items()}, **totals,
                "perf/steps_per_second": 1 / step_time}
      if self.examples_per_step:
        record["perf/examples_per_second"] = self.examples_per_step / step_time
      if eval_fn is not None and (step == num_steps or (eval_every and step % eval_every == 0)):
        record.update(self.evaluate(state, eval_fn, eval_data, batch_size=eval_batch_size,
                                    per_worker=eval_per_worker))
      history.append(record)
      if on_record is not None:
        on_record(record)
      bar.update(step, record, (num_steps - step) * seconds_per_step)
      if checkpoints is not None and (step == num_steps or stopping or (
          checkpoint_every and step % checkpoint_every == 0)):
        # copies: orbax may write the JSON after the loop has moved on
        checkpoints.save(step, state, {"totals": dict(totals), "history": list(history)})
      tick = time.perf_counter()
    return step, state, step < num_steps

  def _check_finite(self, metrics: dict, first_step: int, checkpoints) -> None:
    """Raises `Divergence` for a chunk whose metrics or final parameters are not finite."""
    params_finite = not np.any(metrics.pop("nonfinite/params") > 0)
    if self.on_nonfinite == "skip":
      return
    bad = {k: np.flatnonzero(~np.isfinite(np.asarray(v, np.float64))) for k, v in metrics.items()
           if not k.startswith(COUNTS)}
    bad = {k: v for k, v in bad.items() if v.size}
    if params_finite and not bad:
      return
    size = len(next(iter(metrics.values())))
    if bad:
      first = min(int(v[0]) for v in bad.values())
      names = sorted(k for k, v in bad.items() if v[0] == first)
      what = f"the metric{'s' * (len(names) > 1)} {', '.join(names)}"
      where = f"{'are' if len(names) > 1 else 'is'} not finite from step {first_step + first + 1}"
    else:
      what, where = "the parameters", f"are not finite after step {first_step + size}"
    kept = checkpoints.latest_step() if checkpoints is not None else None
    saved = (f"the last checkpoint (step {kept}) is finite and kept" if kept is not None else
             "nothing of it was saved")
    raise Divergence(f"divergence: {what} {where}; the run stopped at step {first_step + size} "
                     f"and {saved}; lower the learning rate, or drop such steps with "
                     "on_nonfinite='skip'")


def _finite_mean(values: np.ndarray) -> float | None:
  """The mean over the steps whose value is finite; None if there is none."""
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else None


def train(algorithm: Any, params: PyTree, model_state: PyTree = None, *, data: Any,
          num_steps: int, num_workers: int | None = None, grid: Sequence[int] | None = None,
          layout: Any = None, seed: int = 0, steps_per_chunk: int = 50,
          on_nonfinite: str = "stop", **fit) -> Result:
  """Runs `algorithm` for K workers on `data` from `params`: `Runner(...).fit(...)` in one call.

  Args:
    algorithm: `jaxdist.local_sgd(...)`, `jaxdist.choco_sgd(...)`, ... or your own.
    params, model_state: the initial model of every worker.
    data: a data source or an iterable of per-worker batches (see `Runner`).
    num_steps: steps of the run.
    num_workers, grid, layout, seed, steps_per_chunk, on_nonfinite: as for `Runner`.
    **fit: the other arguments of `Runner.fit` (checkpoint_dir, eval_fn, eval_data, ...).

  Returns:
    A `Result`: `.final` (the last record), `.history`, `.deployed()`, `.state`.
  """
  runner = Runner(algorithm, data, num_workers=num_workers, grid=grid, layout=layout, seed=seed,
                  steps_per_chunk=steps_per_chunk, on_nonfinite=on_nonfinite)
  return runner.fit(params, model_state, num_steps=num_steps, **fit)


def _state(model_state: PyTree) -> PyTree:
  return {} if model_state is None else model_state


def _abstract(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _resize(shapes: PyTree, num_steps: int) -> PyTree:
  """Batch shapes of a chunk of `num_steps` steps."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_steps, *x.shape[1:]), x.dtype,
                                                     sharding=x.sharding), shapes)


def _examples_per_step(batches: PyTree, grid_dims: int, num_workers: int) -> int | None:
  """K times the per-worker batch size: the dimension after the worker grid of the first leaf."""
  first = jax.tree.leaves(batches)[0]
  return num_workers * first.shape[1 + grid_dims] if first.ndim > 1 + grid_dims else None
