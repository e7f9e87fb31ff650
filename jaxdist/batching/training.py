"""Mini-batch SGD under a batch-size rule, on a fixed grid of workers ([Sievert] §3.1-3.2).

Every update k: the rule gives B_k and a factor on the rate (`jaxdist.batching.rules`); the
number of active workers follows the batch, P_k = min(P_max, ceil(B_k / examples_per_worker))
(`variable_workers`); the first min(P_k, K) workers of the fixed grid each take a block of the B_k
examples (drawn uniformly with replacement, as the analysis samples, S0 L2033) and accumulate
their gradient over fixed micro-batches (`accumulation`); the sums are combined over the workers,
optionally compressed per worker (`compressor`, e.g. ATOMO: decoded, then reduced) and divided by
B_k; the optimizer's update is multiplied by the rule's factor (= the rate gamma' of Alg. 1 for
SGD, momentum and Adam alike); the rule then sees the batch's loss and squared gradient norm.

One program serves every batch size: the compile count does not grow with B (`compile_count`).
Epochs count gradient evaluations (sum_k B_k / n); the records log model updates, examples,
epochs, the batch, the active workers, the modelled time of an update and the measured wall
time per update apart (S0 §2.6 pitfall 8). Rules that need the full-data loss (the oracle, the
gradient-norm rule) get it computed every update, and its cost is logged (`full/examples`).
Everything needed to resume — model, optimizer, the rule's rolling averages and batch size, the
sampling key, counters — is in `BatchingState`, and a resumed run is bit-identical.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax import lax

from jaxdist.algorithms import base
from jaxdist.batching import accumulation, rules, variable_workers
from jaxdist.communication import atomo
from jaxdist.communication.compression import Compressor, Identity
from jaxdist.core import collectives
from jaxdist.core.layouts import Simulated, check_layout
from jaxdist.core.state import shared, state_class
from jaxdist.errors import ArgumentError, check_at_least
from jaxdist.training.checkpoint import Checkpoints

PyTree = Any


@state_class
class BatchingState:
  params: Any = shared()
  opt_state: Any = shared()
  model_state: Any = shared()
  rule: rules.RuleState = shared()
  key: jax.Array = shared()
  updates: jax.Array = shared()
  examples: jax.Array = shared()
  full_examples: jax.Array = shared()


class AdaptiveBatchSGD:
  """Mini-batch SGD whose batch (and active worker count) a rule sets every update.

  Args:
    loss_fn: the library's loss contract, a mean of per-example losses, evaluated on whole
      micro-batches (their `model_state` threaded through and averaged over the workers by their
      share) and example by example on a partial one (`jaxdist.batching.accumulation`).
    train_data: the training set, a dict of arrays with the examples on the first axis.
    rule: a batch-size rule (`jaxdist.batching.rules`).
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: the base rate gamma, when `optimizer` is a function of it.
    max_batch: the largest batch one update computes (the capacity of the program); a rule
      asking for more is capped there as Alg. 1 caps at B_max, the rate scaled by
      max_batch / B. Default: the rule's own cap.
    micro_batch: examples per micro-batch (static).
    num_workers: K, the fixed grid.
    examples_per_worker: examples per active worker (128).
    max_workers: P_max (default K).
    layout: `jaxdist.Simulated()` (default) or `jaxdist.Sharded()`.
    compressor: a `jaxdist.compression.Compressor` applied to every worker's gradient (ATOMO,
      QSGD, ...), or None.
    aggregation: "decompress" or "gather" (see `jaxdist.communication.atomo.aggregate`).
    update_time: `update_time(batch, workers) -> seconds`, a time model of one update
      (`variable_workers.centralized_update_time` with its parameters bound), logged as
      `time/modelled`; None: not logged.
    seed: the sampling key.
  """

  def __init__(self, loss_fn: base.LossFn, train_data: dict[str, np.ndarray], rule: Any, *,
               optimizer: base.Optimizer = optax.sgd, learning_rate: base.LearningRate = None,
               max_batch: int | None = None, micro_batch: int = 32, num_workers: int = 1,
               examples_per_worker: int = variable_workers.EXAMPLES_PER_WORKER,
               max_workers: int | None = None, layout: Any = None,
               compressor: Compressor | None = None, aggregation: str = "decompress",
               update_time: Callable | None = None, seed: int = 0):
    base.check_loss(loss_fn)
    rules.check_rule(rule)
    self.tx, self.schedule = base.resolve_optimizer(optimizer, learning_rate)
    if max_batch is None:
      if math.isinf(rule.max_batch):
        raise ArgumentError("max_batch", "missing: the rule has no cap", "an integer >= 1")
      max_batch = int(rule.max_batch)
    for name, value in (("max_batch", max_batch), ("micro_batch", micro_batch),
                        ("num_workers", num_workers),
                        ("examples_per_worker", examples_per_worker)):
      check_at_least(name, value, 1, integer=True)
    if max_workers is not None:
      check_at_least("max_workers", max_workers, 1, integer=True)
    if compressor is not None and not isinstance(compressor, Compressor):
      raise ArgumentError("compressor", f"{compressor!r}", "a jaxdist.compression.Compressor")
    if not isinstance(train_data, dict) or not train_data:
      raise ArgumentError("train_data", "not a dict of arrays", "{'x': ..., 'y': ...}")
    sizes = {len(v) for v in train_data.values()}
    if len(sizes) != 1:
      raise ArgumentError("train_data", f"arrays of different lengths {sorted(sizes)}",
                          "arrays with the examples on the first axis")
    layout = Simulated() if layout is None else layout
    check_layout(layout)
    self.loss_fn, self.rule, self.seed = loss_fn, rule, seed
    self.workers = layout.workers((int(num_workers),), ("workers",))
    self.data = self._place({k: jnp.asarray(v) for k, v in train_data.items()})
    self.num_examples = sizes.pop()
    self.max_batch, self.micro_batch = int(max_batch), int(micro_batch)
    self.num_workers, self.examples_per_worker = int(num_workers), int(examples_per_worker)
    self.max_workers = int(max_workers or num_workers)
    self.compressor = compressor or Identity()
    self.aggregation, self.update_time = aggregation, update_time
    atomo.check_aggregation(aggregation)
    self.num_micro = -(-self._capacity() // self.micro_batch)
    self.always_full = self._constant_full_share()
    if self.always_full:
      self.num_micro = self.always_full
    self.full_micro = math.ceil(math.ceil(self.num_examples / self.num_workers) / micro_batch)
    self._chunks: dict[int, Any] = {}
    self._indices = None

  def _capacity(self) -> int:
    """The most examples one grid worker computes in an update, over every B <= max_batch."""
    batch = np.arange(1, self.max_batch + 1)
    workers = np.minimum(np.asarray(variable_workers.active_workers(
        batch, self.examples_per_worker, self.max_workers)), self.num_workers)
    return int(np.max(-(-batch // workers)))

  def _constant_full_share(self) -> int:
    """Micro-batches per worker when the rule is constant, uncapped, and every grid worker's
    share of the batch is whole micro-batches: then nothing is masked, the rate factor is 1, and
    an update with a single micro-batch is plain SGD's to the bit. 0 otherwise."""
    if type(self.rule) is not rules.Constant or self.rule.initial_batch > self.max_batch:
      return 0  # (a capped batch rescales the rate)
    batch = self.rule.initial_batch
    workers = min(int(variable_workers.active_workers(
        batch, self.examples_per_worker, self.max_workers)), self.num_workers)
    if workers != self.num_workers or batch % (workers * self.micro_batch):
      return 0
    return batch // (workers * self.micro_batch)

  # -- state -------------------------------------------------------------------------------------

  def init(self, params: PyTree, model_state: PyTree = None) -> BatchingState:
    zero = jnp.zeros((), jnp.int32)
    params = jax.tree.map(jnp.asarray, params)
    state = BatchingState(params, self.tx.init(params), {} if model_state is None else
                          model_state, self.rule.init(), jax.random.PRNGKey(self.seed), zero,
                          zero, zero)
    return self._place(state)

  def _place(self, tree: PyTree) -> PyTree:
    """On the devices as the training program returns it (shared: replicated)."""
    return jax.device_put(tree, self.workers.shardings(jax.tree.map(lambda _: None, tree), tree))

  def compile_count(self) -> int:
    """Programs compiled for training so far (one per chunk length, whatever the batches)."""
    return sum(f._cache_size() for f in self._chunks.values())

  def _chunk(self, length: int) -> Callable:
    if length not in self._chunks:
      self._chunks[length] = jax.jit(self.workers.map(
          functools.partial(self._run_chunk, length=length), in_axes=(None, None, None),
          out_axes=(None, None)))
    return self._chunks[length]

  def indices(self, update: int, batch: int) -> np.ndarray:
    """The training examples update `update` draws (its B = `batch` positions in order)."""
    if self._indices is None:
      def indices(update):
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), update)
        return self._draws(jax.random.split(key, 3)[0], jnp.arange(self.max_batch))
      self._indices = jax.jit(indices)
    return np.asarray(self._indices(update))[:batch]

  def _draws(self, key: jax.Array, positions: jax.Array) -> jax.Array:
    return jax.vmap(lambda p: jax.random.randint(jax.random.fold_in(key, p), (), 0,
                                                 self.num_examples))(positions)

  # -- one update, for one worker of the grid ------------------------------------------------------

  def _examples(self, key: jax.Array, data: dict, start: jax.Array):
    def at(positions):
      draws = self._draws(key, start + positions)
      return jax.tree.map(lambda x: x[draws], data)
    return at

  def _full(self, state: BatchingState, data: dict) -> tuple[jax.Array, jax.Array]:
    """F(w) and ||grad F(w)||^2 over the whole training set, the oracle's cost."""
    share = -(-self.num_examples // self.num_workers)
    start = collectives.index() * share
    count = jnp.clip(self.num_examples - start, 0, share)

    def at(positions):
      return jax.tree.map(lambda x: x[jnp.minimum(start + positions, self.num_examples - 1)],
                          data)

    grads, loss, _ = accumulation.mean_gradient(
        self.loss_fn, state.params, state.model_state, at, count, micro_batch=self.micro_batch,
        num_micro=self.full_micro, rng=jax.random.fold_in(state.key, 2**31 - 1),
        split=accumulation.split_counts(jnp.int32(self.num_examples), jnp.int32(share)))
    weight = count.astype(jnp.float32) / self.num_examples
    grads = _weighted_sum(grads, weight, self.num_workers)
    return _weighted_sum(loss, weight, self.num_workers), otu.tree_l2_norm(grads, squared=True)

  def step(self, state: BatchingState, data: dict) -> tuple[BatchingState, dict]:
    """One model update; run for every worker of the grid (inside `Workers.map`)."""
    observation = {"epoch": state.examples.astype(jnp.float32) / self.num_examples}
    full_cost = 0
    if self.rule.needs_full:
      observation["full_loss"], observation["full_grad_sq"] = self._full(state, data)
      full_cost = self.num_examples
    rule_state, batch, scale = self.rule.schedule(state.rule, observation)
    over = batch > self.max_batch
    scale = jnp.where(over, scale * self.max_batch / batch, scale)
    batch = jnp.minimum(batch, self.max_batch)
    workers = variable_workers.active_workers(batch, self.examples_per_worker, self.max_workers)
    grid_workers = jnp.minimum(workers, self.num_workers)
    start, count = variable_workers.worker_share(batch, grid_workers, collectives.index())
    key = jax.random.fold_in(state.key, state.updates)
    sample_key, loss_key, compress_key = jax.random.split(key, 3)
    grads, loss, model_state = accumulation.mean_gradient(
        self.loss_fn, state.params, state.model_state, self._examples(sample_key, data, start),
        count, micro_batch=self.micro_batch, num_micro=self.num_micro,
        rng=jax.random.fold_in(loss_key, collectives.index()), always_full=self.always_full,
        split=accumulation.split_counts(batch, -(-batch // grid_workers)))
    # every worker's mean, weighted by its share of the batch; C(c g) = c C(g) for c >= 0 for
    # every compressor here, so compressing the weighted mean is compressing the worker's mean
    weight = count.astype(jnp.float32) / batch.astype(jnp.float32)
    grads = otu.tree_scale(self.num_workers, atomo.aggregate(
        self.compressor, otu.tree_scale(weight, grads),
        jax.random.fold_in(compress_key, collectives.index()), self.aggregation))
    loss = _weighted_sum(loss, weight, self.num_workers)
    model_state = jax.tree.map(
        lambda x: _weighted_sum(x, weight, self.num_workers)
        if jnp.issubdtype(x.dtype, jnp.inexact) else x, model_state)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    if not self.always_full:  # a constant rule's factor is 1 (and scaling would stop XLA
      updates = otu.tree_scale(scale, updates)  # fusing p + (-lr g) as plain SGD's step does)
    params = optax.apply_updates(state.params, updates)
    grad_sq = otu.tree_l2_norm(grads, squared=True)
    rule_state = self.rule.observe(rule_state, loss, grad_sq)
    examples = state.examples + batch
    new = state.replace(params=params, opt_state=opt_state, model_state=model_state,
                        rule=rule_state,
                        updates=state.updates + 1, examples=examples,
                        full_examples=state.full_examples + full_cost)
    rate = scale if self.schedule is None else scale * self.schedule(state.updates)
    metrics = {"loss": loss, "grad_sq_norm": grad_sq, "batch": batch, "workers": workers,
               "lr": rate, "lr_factor": scale, "updates": new.updates, "examples": examples,
               "epoch": examples.astype(jnp.float32) / self.num_examples,
               "full/examples": new.full_examples,
               "comm/bits_sent": jnp.float32(self.compressor.tree_bits(state.params))}
    if self.update_time is not None:
      metrics["time/modelled"] = jnp.float32(self.update_time(batch, workers))
    return new, metrics

  def _run_chunk(self, state, data, target_examples, *, length):
    """`length` updates, those past `target_examples` skipped (not computed; `valid` = 0)."""
    def skip(state):
      shapes = jax.eval_shape(lambda s: self.step(s, data)[1], state)
      return state, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)

    def body(state, _):
      valid = state.examples < target_examples
      state, metrics = lax.cond(valid, lambda s: self.step(s, data), skip, state)
      return state, {**metrics, "valid": valid}

    return lax.scan(body, state, None, length=length)

  # -- the host loop -----------------------------------------------------------------------------

  def run(self, state: BatchingState, num_updates: int, target_examples: int | None = None
          ) -> tuple[BatchingState, dict[str, np.ndarray]]:
    """Up to `num_updates` updates in one jitted call (fewer once `target_examples` are seen)."""
    target = jnp.int32(np.iinfo(np.int32).max if target_examples is None else target_examples)
    state, metrics = self._chunk(int(num_updates))(state, self.data, target)
    metrics = jax.device_get(metrics)
    valid = metrics.pop("valid").astype(bool)
    return state, {k: np.asarray(v)[valid] for k, v in metrics.items()}

  def fit(self, params: PyTree, model_state: PyTree = None, *, num_epochs: float,
          max_updates: int = 10**9, updates_per_chunk: int = 100,
          checkpoint_dir: str | None = None, keep: int = 2,
          on_record: Callable[[dict], None] | None = None,
          eval_fn: Callable[[PyTree, PyTree], dict] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Trains for `num_epochs` epochs of gradient evaluations (or `max_updates` updates).

    Args:
      params, model_state: the initial model.
      num_epochs: the run ends once num_epochs * n examples are used.
      max_updates: a bound on the model updates.
      updates_per_chunk: updates per jitted call and per record.
      checkpoint_dir: orbax checkpoints after every chunk; the run resumes from the newest.
      keep: checkpoints kept.
      on_record: called with every record.
      eval_fn: `eval_fn(params, model_state) -> dict` of more values for each record (host
        side).
      should_stop: polled after every chunk; True returns early (after a checkpoint).

    Returns:
      {"state", "history" (records, one per chunk), "trace" (per-update batch, workers, lr,
      loss, examples), "preempted"}.
    """
    check_at_least("num_epochs", num_epochs, 0)
    check_at_least("updates_per_chunk", updates_per_chunk, 1, integer=True)
    target = math.ceil(num_epochs * self.num_examples)
    state, history, trace = self.init(params, model_state), [], {}
    checkpoints = Checkpoints(checkpoint_dir, keep) if checkpoint_dir else None
    try:
      if checkpoints is not None and checkpoints.latest_step() is not None:
        _, state, meta = checkpoints.restore(jax.eval_shape(lambda s: s, state))
        history, trace = meta["history"], {k: list(v) for k, v in meta["trace"].items()}
      preempted = False
      while int(state.examples) < target and int(state.updates) < max_updates:
        tick = time.perf_counter()
        length = min(updates_per_chunk, max_updates - int(state.updates))
        state, metrics = self.run(state, length, target)
        seconds = time.perf_counter() - tick
        done = len(metrics["batch"])
        for name in ("batch", "workers", "lr", "loss", "examples"):
          trace.setdefault(name, []).extend(np.asarray(metrics[name]).tolist())
        record = {k: float(np.mean(v)) for k, v in metrics.items()}
        for name in ("updates", "examples", "epoch", "full/examples"):
          record[name] = float(metrics[name][-1])
        record["time/measured_per_update"] = seconds / max(done, 1)
        if eval_fn is not None:
          record.update(eval_fn(state.params, state.model_state))
        history.append(record)
        if on_record is not None:
          on_record(record)
        if checkpoints is not None:
          checkpoints.save(int(state.updates), state, {"history": history, "trace": trace})
        if should_stop is not None and should_stop():
          preempted = True
          break
      return {"state": state, "history": history, "trace": trace, "preempted": preempted}
    finally:
      if checkpoints is not None:
        checkpoints.close()


def _weighted_sum(tree: PyTree, weight: jax.Array, num_workers: int) -> PyTree:
  """sum over the workers of weight * tree (weights summing to 1 give a weighted mean)."""
  return otu.tree_scale(num_workers, collectives.mean(otu.tree_scale(weight, tree)))
