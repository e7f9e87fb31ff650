"""Trials trained together: a group of configurations that share their shapes runs as one
vmapped program, the hyperparameters that do not change shapes given as per-trial arrays.

A trial is one run of a jaxdist algorithm on K (simulated) workers, exactly as `jaxdist.Runner`
would run it alone: its state is the runner's state, its key at step t on worker k is
fold_in(fold_in(key, t), k), and every trial of a group sees the same batches (a batch depends on
the step and the worker only, as Dask-ML gives every model the same sequence of chunks). One
`partial_fit` call, the unit of a search's budget (Sievert's thesis, §2.4), is `steps_per_call`
steps of the algorithm.

    population = Population(
        build=lambda hp: jaxdist.local_sgd(loss_fn, optax.sgd, learning_rate=hp["lr"],
                                           local_steps=hp["H"]),
        init_model=lambda hp, rng: (params, {}),    # the initial model for the static values
        data=lambda hp: jaxdist.data.sampled(arrays, num_workers=4, batch_size=hp["batch"]),
        score=lambda hp, params, model_state: accuracy(params, x_val, y_val),
        num_workers=4, steps_per_call=20, static=("H", "batch"))

`build(hp)` runs inside the vmapped trace: the hyperparameters not in `static` arrive as traced
scalars (floats as float32, integers as int32), the static ones as plain Python values. The
library's constructors accept traced rates, momenta, weight decays and consensus steps; static
values (H, widths, batch sizes) group the trials, one program per group (thesis pitfall 7).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist.core import collectives
from jaxdist.core.state import SHARED
from jaxdist.data.sources import as_data
from jaxdist.errors import ArgumentError, check_at_least
from jaxdist.training.runner import Runner, compiler_options

PyTree = Any
Config = Mapping[str, Any]
GroupKey = tuple[tuple[str, Any], ...]
MODEL_KEY = 1  # init_model gets fold_in(PRNGKey(seed), MODEL_KEY); the runner PRNGKey(seed)
# Compiled programs by (population, group): copies of a population made by pickling (a Dask
# worker thread's) share them in one process, and other processes compile their own.
_GROUPS: dict[tuple[str, Any], Any] = {}


class Population:
  """How to train and score the trials of a search.

  Args:
    build: `build(hp) -> algorithm` (`jaxdist.local_sgd(...)`, `jaxdist.choco_sgd(...)`, ...).
    init_model: `init_model(hp, rng) -> (params, model_state)` for the static values `hp`.
    data: `data(hp) -> data source` for K workers (`jaxdist.data.sampled(...)`, ...), for the
      static values `hp`.
    score: `score(hp, params, model_state) -> scalar`, higher is better, on held-out data, of
      the workers' averaged model; jittable.
    num_workers: K, workers of every trial.
    steps_per_call: steps of the algorithm in one partial_fit call.
    static: names of the hyperparameters that change shapes or structure.
    pad: run a group of N trials as the next power of two (the last trial repeated, its copies
      dropped), so that a search compiles a handful of programs per group, not one per N.
  """

  def __init__(self, build: Callable, init_model: Callable, data: Callable, score: Callable, *,
               num_workers: int = 1, steps_per_call: int = 1, static: Sequence[str] = (),
               pad: bool = True):
    for name, fn in (("build", build), ("init_model", init_model), ("data", data),
                     ("score", score)):
      if not callable(fn):
        raise ArgumentError(name, f"{fn!r} is not a function", "a function (see Population)")
    check_at_least("num_workers", num_workers, 1, integer=True)
    check_at_least("steps_per_call", steps_per_call, 1, integer=True)
    self.build, self.init_model, self.data, self.score_fn = build, init_model, data, score
    self.num_workers, self.steps_per_call = int(num_workers), int(steps_per_call)
    self.static = tuple(sorted(static))
    self.pad = bool(pad)
    self._token = uuid.uuid4().hex

  def group_key(self, config: Config) -> GroupKey:
    missing = [name for name in self.static if name not in config]
    if missing:
      raise ArgumentError("static", f"{missing} are not hyperparameters of {dict(config)}",
                          f"names among {sorted(config)}")
    return tuple((name, config[name]) for name in self.static)

  def _group(self, configs: Sequence[Config]) -> tuple[_Group, dict[str, np.ndarray]]:
    keys = {self.group_key(c) for c in configs}
    if len(keys) != 1:
      raise ArgumentError("configs", f"trials of {len(keys)} shape groups in one population",
                          "configs with the same static values")
    key = (self._token, keys.pop())
    if key not in _GROUPS:
      _GROUPS[key] = _Group(self, key[1], configs[0])
    group = _GROUPS[key]
    return group, group.arrays(configs)

  # -- the three operations of a search, each for a group of trials ------------------------------

  def _padded(self, tree: PyTree, n: int) -> PyTree:
    size = 1 << max(n - 1, 0).bit_length() if self.pad else n
    return jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], size - n, 0)])
                        if size > n else x, tree)

  def _cut(self, tree: PyTree, n: int) -> PyTree:
    return jax.tree.map(lambda x: np.asarray(x)[:n], jax.device_get(tree))

  def init(self, configs: Sequence[Config], seeds: Sequence[int]) -> PyTree:
    """The states of the trials at call 0, stacked on a leading trial axis (host arrays)."""
    group, hp = self._group(configs)
    keys = np.stack([np.asarray(jax.random.PRNGKey(int(s))) for s in seeds])
    n = len(configs)
    return self._cut(group.init(*self._padded((hp, keys), n)), n)

  def train(self, configs: Sequence[Config], states: PyTree, first_call: int,
            num_calls: int) -> tuple[PyTree, dict[str, np.ndarray]]:
    """`num_calls` partial_fit calls of every trial from call `first_call`; the new states and
    the mean of each training metric per trial over those calls."""
    group, hp = self._group(configs)
    n = len(configs)
    hp, states = self._padded((hp, jax.tree.map(np.asarray, states)), n)
    states = jax.tree.map(jnp.asarray, states)
    sums = None
    for call in range(first_call, first_call + num_calls):
      batches = group.source.batches(call * self.steps_per_call, self.steps_per_call,
                                     np.arange(self.num_workers))
      states, metrics = group.call(hp, states, jax.tree.map(jnp.asarray, batches))
      sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    means = {k: v / max(num_calls, 1) for k, v in self._cut(sums or {}, n).items()}
    return self._cut(states, n), means

  def score(self, configs: Sequence[Config], states: PyTree) -> np.ndarray:
    """The score of every trial's averaged model (NaN stays NaN: a diverged trial ranks last)."""
    group, hp = self._group(configs)
    n = len(configs)
    hp, states = self._padded((hp, jax.tree.map(np.asarray, states)), n)
    return np.asarray(self._cut(group.score(hp, states), n), np.float64)

  def deployed(self, config: Config, state: PyTree) -> tuple[PyTree, PyTree]:
    """One trial's averaged (params, model_state) on the host, from its (unstacked) state."""
    group, hp = self._group([config])
    stacked = jax.tree.map(lambda x: np.asarray(x)[None], state)
    return jax.tree.map(lambda x: x[0], self._cut(group.deployed(hp, stacked), 1))

  def abstract_state(self, config: Config, num_trials: int) -> PyTree:
    """Shapes and dtypes of the stacked states of `num_trials` trials like `config`."""
    group, hp = self._group([config])
    keys = jax.ShapeDtypeStruct((num_trials, 2), jnp.uint32)
    hp = {k: jax.ShapeDtypeStruct((num_trials,), v.dtype) for k, v in hp.items()}
    return jax.eval_shape(group.init, hp, keys)


class _Group:
  """The compiled programs of one shape group (any number of trials)."""

  def __init__(self, population: Population, key: GroupKey, example: Config):
    self.static = dict(key)
    self.traced = tuple(sorted(k for k in example if k not in self.static))
    self.source = as_data(population.data(self.static))
    model = jax.eval_shape(lambda k: population.init_model(self.static, k),
                           jax.random.PRNGKey(0))
    self.params_shape, self.model_state_shape = model

    def runner(hp):
      return Runner(population.build({**self.static, **hp}), self.source,
                    num_workers=population.num_workers,
                    steps_per_chunk=population.steps_per_call)

    def init_one(hp, key):
      params, model_state = population.init_model(self.static, jax.random.fold_in(key,
                                                                                  MODEL_KEY))
      init, _ = runner(hp).mapped_functions(self.params_shape, self.model_state_shape)
      return init(params, model_state, key)

    def call_one(hp, state, batches):
      _, chunk = runner(hp).mapped_functions(self.params_shape, self.model_state_shape)
      state, metrics = chunk(state, batches)
      return state, {k: jnp.mean(v) for k, v in metrics.items() if not k.startswith("nonfinite")}

    def deployed_one(hp, state):
      run = runner(hp)
      axes = run.state_axes(self.params_shape, self.model_state_shape)
      average = run.workers.map(lambda s: collectives.mean(run.algorithm.deployed(s.algorithm)),
                                in_axes=(axes,), out_axes=SHARED)
      return average(state)

    def score_one(hp, state):
      params, model_state = deployed_one(hp, state)
      return jnp.asarray(population.score_fn(self.static, params, model_state), jnp.float32)

    options = compiler_options()
    self.init = jax.jit(jax.vmap(init_one), compiler_options=options)
    self.call = jax.jit(jax.vmap(call_one, in_axes=(0, 0, None)), compiler_options=options)
    self.score = jax.jit(jax.vmap(score_one), compiler_options=options)
    self.deployed = jax.jit(jax.vmap(deployed_one), compiler_options=options)

  def arrays(self, configs: Sequence[Config]) -> dict[str, np.ndarray]:
    """The traced hyperparameters as per-trial arrays."""
    out = {}
    for name in self.traced:
      values = [c[name] for c in configs]
      integer = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
      out[name] = np.asarray(values, np.int32 if integer else np.float32)
    return out
