"""Hyperband, successive halving and random search over vmapped populations of trials
(Sievert's thesis, ch. 2, Fig. 2.1; Dask-ML's `HyperbandSearchCV`).

    result = jaxdist.search.hyperband(population, space, max_iter=81, aggressiveness=3, seed=0)
    result.best["config"], result.best["score"]

Every bracket runs successive halving on configurations drawn from `space` with seed + bracket
id: at rung i the best n_i of its trials (by their last score, ties to the lower trial id) are
trained to r_i calls in total and scored. The work of a rung is split into units, one per shape
group of the bracket's trials (`Population`): a unit trains its trials as one vmapped program
and scores them. Units of all brackets wait in one queue ordered by priority (`priorities`);
they run in this process one after another, or on a dask.distributed cluster (`client=`) with the
priorities passed as Dask task priorities. A unit's result is a pure function of its trials'
states, so the order changes when a result is known, never what it is.

The search state (brackets, rungs, every trial's calls and scores, and the states of the trials,
stacked per shape group with a fixed layout) is checkpointed with orbax in `checkpoint_dir` after
every `checkpoint_every` units; running the same search again resumes from the newest checkpoint
and ends with the identical result.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import SingleDeviceSharding

from jaxdist.errors import ArgumentError, UserError, check_at_least, check_choice
from jaxdist.search import brackets as brackets_lib
from jaxdist.search import priorities, spaces
from jaxdist.search.population import Population
from jaxdist.training.checkpoint import Checkpoints

PyTree = Any


@dataclasses.dataclass
class Trial:
  """One configuration of a bracket and what happened to it."""

  bracket: int
  id: int
  config: dict[str, Any]
  seed: int
  group: int  # its shape group in the bracket
  row: int  # its row in the group's stacked states
  calls: int = 0
  history: list = dataclasses.field(default_factory=list)  # [[calls, score], ...]
  stopped: bool = False  # on a plateau (patience)
  alive: bool = True  # not pruned

  @property
  def score(self) -> float | None:
    return self.history[-1][1] if self.history else None

  def row_dict(self) -> dict[str, Any]:
    return {"bracket": self.bracket, "trial": self.id, **self.config, "calls": self.calls,
            "score": self.score, "stopped": self.stopped}


@dataclasses.dataclass
class _BracketRun:
  plan: brackets_lib.Bracket
  trials: list[Trial]
  groups: list[tuple]  # the static values of each shape group
  rung: int = 0
  survivors: list[int] = dataclasses.field(default_factory=list)
  done: bool = False


@dataclasses.dataclass(frozen=True)
class Unit:
  """Train `trials` (ids of one bracket and shape group) from `first_call` for `num_calls`."""

  bracket: int
  group: int
  trials: tuple[int, ...]
  first_call: int
  num_calls: int


@dataclasses.dataclass
class SearchResult:
  """What a search found: every trial (`trials`, rows of the results table), the best one
  (`best`, with its state in `best_state`), every trial's scores (`curves`), the plan
  (`metadata`, before running) and what ran (`metadata_`), and whether `should_stop` ended it
  early (`preempted`)."""

  trials: list[dict[str, Any]]
  curves: list[list[list[float]]]  # per trial, its [calls, score] after every unit
  best: dict[str, Any] | None
  best_state: PyTree
  metadata: dict
  metadata_: dict
  history: list[dict[str, Any]]  # a record per closed rung
  trace: list[list[float]]  # [calls of the search, best score so far] after every unit
  preempted: bool


def train_unit(population: Population, configs: Sequence[Mapping], seeds: Sequence[int],
               states: PyTree | None, first_call: int, num_calls: int
               ) -> tuple[PyTree, np.ndarray, dict[str, np.ndarray]]:
  """One unit of work: (initialise at call 0,) train, score. Runs here or on a Dask worker."""
  if first_call == 0:
    states = population.init(configs, seeds)
  states, metrics = population.train(configs, states, first_call, num_calls)
  return states, population.score(configs, states), metrics


def trial_seed(seed: int, bracket: int, trial: int) -> int:
  return int(np.random.SeedSequence([seed, bracket, trial]).generate_state(1)[0] % 2**31)


class Search:
  """A search over `brackets` (see `hyperband`, `successive_halving`, `random_search`)."""

  def __init__(self, population: Population, space: Mapping[str, Any],
               plan: Sequence[brackets_lib.Bracket], *, seed: int = 0, max_iter: int,
               aggressiveness: float = 3, patience: bool | int = False, tol: float = 1e-3,
               priority: str = "score", num_workers: int | None = None,
               checkpoint_dir: str | None = None, checkpoint_every: int = 1,
               progress: bool = True, on_record: Callable[[dict], None] | None = None):
    if not isinstance(population, Population):
      raise ArgumentError("population", f"{population!r} is not a Population",
                          "jaxdist.search.Population(build, init_model, data, score, ...)")
    spaces.check_space(space)
    if spaces.static_names(space) != population.static:
      raise ArgumentError("space", f"its static hyperparameters {spaces.static_names(space)} "
                          f"are not the population's {population.static}",
                          "static=True in the space exactly for the population's static names")
    check_at_least("seed", seed, 0, integer=True)
    check_at_least("tol", tol, 0)
    check_choice("priority", priority, priorities.POLICIES)
    check_at_least("checkpoint_every", checkpoint_every, 1, integer=True)
    self.population, self.space, self.seed = population, dict(space), int(seed)
    self.patience = brackets_lib.resolve_patience(patience, max_iter, aggressiveness)
    self.tol, self.priority, self.progress, self.on_record = float(tol), priority, progress, \
        on_record
    self.num_workers = num_workers
    self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, int(checkpoint_every)
    self.plan = list(plan)
    self.runs = [self._bracket_run(b) for b in self.plan]
    self.states: dict[int, list[PyTree]] = {}  # bracket -> stacked states per shape group
    self.units_done, self.calls_done, self.history = 0, 0, []
    self.trace: list[list[float]] = []  # [calls of the search, best score so far] per unit
    self._order: dict[Unit, int] = {}
    self._signature = json.dumps({
        "plan": brackets_lib.metadata(self.plan)["brackets"], "seed": self.seed,
        "patience": self.patience, "tol": self.tol, "space": repr(sorted(self.space.items())),
        "static": population.static}, sort_keys=True)

  def _bracket_run(self, plan: brackets_lib.Bracket) -> _BracketRun:
    configs = spaces.sample(self.space, plan.n_models, self.seed + plan.id)
    groups: list[tuple] = []
    trials, rows = [], {}
    for i, config in enumerate(configs):
      key = self.population.group_key(config)
      if key not in groups:
        groups.append(key)
      g = groups.index(key)
      rows[g] = rows.get(g, -1) + 1
      trials.append(Trial(plan.id, i, config, trial_seed(self.seed, plan.id, i), g, rows[g]))
    return _BracketRun(plan, trials, groups, survivors=list(range(len(trials))))

  # -- state ------------------------------------------------------------------------------------

  def _stacked(self, run: _BracketRun, g: int) -> PyTree:
    states = self.states.setdefault(run.plan.id, [None] * len(run.groups))
    if states[g] is None:
      members = [t for t in run.trials if t.group == g]
      shapes = self.population.abstract_state(members[0].config, len(members))
      states[g] = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return states[g]

  def _tree(self) -> dict:
    return {f"b{run.plan.id}": {f"g{g}": self._stacked(run, g) for g in range(len(run.groups))}
            for run in self.runs}

  def _meta(self) -> dict:
    return {"signature": self._signature, "units_done": self.units_done,
            "calls_done": self.calls_done, "history": self.history, "trace": self.trace,
            "brackets": [{"rung": r.rung, "survivors": r.survivors, "done": r.done,
                          "trials": [[t.calls, t.history, t.stopped, t.alive] for t in r.trials]}
                         for r in self.runs]}

  def _restore(self, checkpoints: Checkpoints) -> None:
    device = SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            self._tree())
    step, tree, meta = checkpoints.restore(abstract)
    if meta.get("signature") != self._signature:
      raise UserError(f"checkpoint_dir: {checkpoints.directory} holds another search (other "
                      "brackets, seed, space or patience); use a new directory, or the same "
                      "search to resume")
    tree = jax.tree.map(np.array, jax.device_get(tree))  # writable copies
    for run, saved in zip(self.runs, meta["brackets"]):
      run.rung, run.survivors, run.done = saved["rung"], saved["survivors"], saved["done"]
      for t, (calls, history, stopped, alive) in zip(run.trials, saved["trials"]):
        t.calls, t.history, t.stopped, t.alive = calls, history, stopped, alive
      self.states[run.plan.id] = [tree[f"b{run.plan.id}"][f"g{g}"]
                                  for g in range(len(run.groups))]
    self.units_done, self.calls_done = meta["units_done"], meta["calls_done"]
    self.history, self.trace = meta["history"], meta["trace"]
    self._say(f"resumed the search from its checkpoint after {step} units")

  def _say(self, message: str) -> None:
    if self.progress:
      print(message, flush=True)

  # -- the work ---------------------------------------------------------------------------------

  def ready(self) -> list[Unit]:
    """The units that can run now: the untrained part of every bracket's current rung."""
    units = []
    for run in self.runs:
      if run.done:
        continue
      target = run.plan.rungs[run.rung].calls
      pending: dict[tuple[int, int], list[int]] = {}
      for i in run.survivors:
        t = run.trials[i]
        if not t.stopped and t.calls < target:
          pending.setdefault((t.group, t.calls), []).append(i)
      for (g, calls), ids in sorted(pending.items()):
        num = target - calls
        if self.patience:
          num = min(num, self.patience)
        unit = Unit(run.plan.id, g, tuple(ids), calls, num)
        units.append(unit)
        self._order.setdefault(unit, len(self._order))
    return units

  def unit_priority(self, unit: Unit) -> float:
    run = self._run(unit.bracket)
    workers = self.num_workers or 1
    models = priorities.model_priorities({i: run.trials[i].score for i in run.survivors},
                                         workers)
    return priorities.unit_priority(self.priority, [models[i] for i in unit.trials],
                                    self._order[unit], self.seed)

  def _run(self, bracket: int) -> _BracketRun:
    return next(r for r in self.runs if r.plan.id == bracket)

  def unit_arguments(self, unit: Unit) -> tuple:
    run = self._run(unit.bracket)
    trials = [run.trials[i] for i in unit.trials]
    rows = np.asarray([t.row for t in trials])
    states = None if unit.first_call == 0 else jax.tree.map(
        lambda x: x[rows], self._stacked(run, unit.group))
    return [t.config for t in trials], [t.seed for t in trials], states, unit.first_call, \
        unit.num_calls

  def apply(self, unit: Unit, states: PyTree, scores: np.ndarray, metrics: dict) -> None:
    """Takes in a unit's result and moves its bracket on when its rung is complete."""
    run = self._run(unit.bracket)
    trials = [run.trials[i] for i in unit.trials]
    rows = np.asarray([t.row for t in trials])
    stacked = self._stacked(run, unit.group)
    for leaf, new in zip(jax.tree.leaves(stacked), jax.tree.leaves(states)):
      leaf[rows] = np.asarray(new)
    for t, score in zip(trials, scores):
      t.calls += unit.num_calls
      t.history.append([t.calls, float(score)])
      t.stopped = brackets_lib.plateaued(t.history, self.patience, self.tol)
    self.units_done += 1
    self.calls_done += unit.num_calls * len(trials)
    best = max([priorities.rank_value(float(v)) for v in scores] +
               ([self.trace[-1][1]] if self.trace else []))
    self.trace.append([self.calls_done, best])
    self._advance(run, metrics)

  def _advance(self, run: _BracketRun, metrics: dict) -> None:
    """Closes every complete rung of `run` (several when a rung's models are all on plateaus)."""
    while not run.done:
      rung = run.plan.rungs[run.rung]
      if any(not run.trials[i].stopped and run.trials[i].calls < rung.calls
             for i in run.survivors):
        return
      ranked = sorted(run.survivors,
                      key=lambda i: (-priorities.rank_value(run.trials[i].score), i))
      best = run.trials[ranked[0]]
      record = {"index": len(self.history) + 1, "bracket": run.plan.id, "rung": run.rung,
                "calls": rung.calls,
                "trials": len(run.survivors), "best_trial": best.id, "best_score": best.score,
                "search_calls": self.calls_done, "units": self.units_done,
                **{f"train/{k}": float(np.mean(v)) for k, v in metrics.items()}}
      self.history.append(record)
      planned = brackets_lib.metadata(self.plan)["partial_fit_calls"]
      n = len(run.survivors)
      self._say(f"bracket {run.plan.id} rung {run.rung + 1}/{len(run.plan.rungs)}: {n} "
                f"trial{'s' * (n != 1)} at {rung.calls} calls, best score {best.score:.4f} "
                f"(trial {best.id}); {self.calls_done}/{planned} calls of the search")
      if self.on_record is not None:
        self.on_record(record)
      if run.rung + 1 == len(run.plan.rungs):
        run.done = True
        return
      run.rung += 1
      keep = set(ranked[:run.plan.rungs[run.rung].n_models])
      for i in run.survivors:
        run.trials[i].alive = i in keep
      run.survivors = sorted(keep)

  @property
  def done(self) -> bool:
    return all(run.done for run in self.runs)

  # -- running ----------------------------------------------------------------------------------

  def run(self, client: Any = None, should_stop: Callable[[], bool] | None = None
          ) -> SearchResult:
    """Runs to the end (or until `should_stop()`), in this process or on `client`'s cluster."""
    checkpoints = Checkpoints(self.checkpoint_dir, keep=2, say=self._say) if \
        self.checkpoint_dir else None
    try:
      if checkpoints is not None and checkpoints.latest_step() is not None:
        self._restore(checkpoints)
      if client is None:
        preempted = self._run_here(checkpoints, should_stop)
      else:
        preempted = self._run_on(client, checkpoints, should_stop)
      if checkpoints is not None and checkpoints.latest_step() != self.units_done:
        checkpoints.save(self.units_done, self._tree(), self._meta())
    finally:
      if checkpoints is not None:
        checkpoints.close()
    return self.result(preempted)

  def _finished_unit(self, checkpoints) -> None:
    if checkpoints is not None and self.units_done % self.checkpoint_every == 0:
      checkpoints.save(self.units_done, self._tree(), self._meta())

  def _next(self, units: list[Unit]) -> Unit:
    return max(units, key=lambda u: (self.unit_priority(u), -self._order[u]))

  def _run_here(self, checkpoints, should_stop) -> bool:
    while not self.done:
      if should_stop is not None and should_stop():
        return True
      unit = self._next(self.ready())
      self.apply(unit, *train_unit(self.population, *self.unit_arguments(unit)))
      self._finished_unit(checkpoints)
    return False

  def _run_on(self, client, checkpoints, should_stop) -> bool:
    from distributed import wait  # the optional cluster dependency

    population = client.scatter(self.population, broadcast=True, hash=False)
    in_flight: dict[Any, Unit] = {}
    submitted: set[Unit] = set()
    try:
      while not self.done:
        for unit in sorted(self.ready(), key=lambda u: self._order[u]):
          if unit not in submitted:
            submitted.add(unit)
            priority = float(np.clip(self.unit_priority(unit), -1e30, 1e30))
            future = client.submit(train_unit, population, *self.unit_arguments(unit),
                                   priority=priority, pure=False)
            in_flight[future] = unit
        finished, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
        for future in sorted(finished, key=lambda f: self._order[in_flight[f]]):
          self.apply(in_flight.pop(future), *future.result())
          self._finished_unit(checkpoints)
        if should_stop is not None and should_stop() and not self.done:
          return True
      return False
    finally:
      client.cancel(list(in_flight))

  def result(self, preempted: bool = False) -> SearchResult:
    rows = [t.row_dict() for run in self.runs for t in run.trials]
    best, best_state = None, None
    if self.done:
      finalists = [t for run in self.runs for t in (run.trials[i] for i in run.survivors)]
      order = [r.plan.id for r in self.runs]  # ties: the earlier bracket, the lower trial id
      top = min(finalists, key=lambda t: (-priorities.rank_value(t.score),
                                          order.index(t.bracket), t.id))
      best = {**top.row_dict(), "config": dict(top.config)}
      run = self._run(top.bracket)
      best_state = jax.tree.map(lambda x: x[top.row], self._stacked(run, top.group))
    ran = []
    for run in self.runs:
      ran.append({"bracket": run.plan.id, "n_models": len(run.trials),
                  "partial_fit_calls": sum(t.calls for t in run.trials),
                  "decisions": sorted({c for t in run.trials for c, _ in t.history})})
    metadata_ = {"n_models": sum(r["n_models"] for r in ran),
                 "partial_fit_calls": sum(r["partial_fit_calls"] for r in ran), "brackets": ran}
    curves = [[list(h) for h in t.history] for run in self.runs for t in run.trials]
    return SearchResult(rows, curves, best, best_state, brackets_lib.metadata(self.plan), metadata_,
                        list(self.history), list(self.trace), preempted)


# -- the searches -------------------------------------------------------------------------------


OPTIONS = ("seed", "patience", "tol", "priority", "num_workers", "checkpoint_dir",
           "checkpoint_every", "progress", "on_record")


def _search(population, space, plan, max_iter, aggressiveness, client, should_stop, options):
  for name in options:
    if name not in OPTIONS:
      raise ArgumentError(name, "not an option of a search", OPTIONS)
  num_workers = options.pop("num_workers", None)
  if num_workers is None and client is not None:
    num_workers = sum(client.nthreads().values())
  search = Search(population, space, plan, max_iter=max_iter, aggressiveness=aggressiveness,
                  num_workers=num_workers, **options)
  return search.run(client, should_stop)


def hyperband(population: Population, space: Mapping[str, Any], max_iter: int = 81,
              aggressiveness: float = 3, *, exact_log: bool = False, client: Any = None,
              should_stop: Callable[[], bool] | None = None, **options) -> SearchResult:
  """Hyperband as Dask-ML's `HyperbandSearchCV`: every bracket of `hyperband_brackets`.

  Args:
    population: how trials are trained and scored (`Population`).
    space: name -> `LogUniform`, `Uniform`, `Integer`, `Choice`.
    max_iter: R, calls of the most trained model.
    aggressiveness: eta (3; 4 to explore).
    exact_log: integer s_max instead of Dask-ML's `math.log` (see `brackets`).
    client: a `dask.distributed.Client` to run the units on; None: in this process.
    should_stop: polled after every unit; True checkpoints and returns (`preempted`).
    **options: `seed` (bracket s draws with seed + s), `patience` (False, True = R // eta, or
      calls), `tol` (1e-3), `priority` (`score`, `fifo`, `random`), `num_workers` (P of the
      priority's median tie; default the client's threads, or 1), `checkpoint_dir`,
      `checkpoint_every` (units), `progress` (a line per rung), `on_record` (called with each
      rung's record).
  """
  plan = brackets_lib.hyperband_brackets(max_iter, aggressiveness, exact_log)
  return _search(population, space, plan, max_iter, aggressiveness, client, should_stop, options)


def successive_halving(population: Population, space: Mapping[str, Any], n_models: int,
                       initial_calls: int, aggressiveness: float = 3, max_iter: int | None = None,
                       *, client: Any = None, should_stop: Callable[[], bool] | None = None,
                       **options) -> SearchResult:
  """One bracket: `n_models` configurations, rungs as `sha_bracket`; options as `hyperband`."""
  plan = [brackets_lib.sha_bracket(n_models, initial_calls, aggressiveness, max_iter)]
  limit = max_iter or plan[0].rungs[-1].calls
  return _search(population, space, plan, limit, aggressiveness, client, should_stop, options)


def random_search(population: Population, space: Mapping[str, Any], n_models: int,
                  max_iter: int, *, client: Any = None,
                  should_stop: Callable[[], bool] | None = None, **options) -> SearchResult:
  """Passive random search: `n_models` configurations, each trained to `max_iter` calls."""
  check_at_least("n_models", n_models, 1, integer=True)
  check_at_least("max_iter", max_iter, 1, integer=True)
  plan = [brackets_lib.Bracket(0, int(n_models), int(max_iter),
                               (brackets_lib.Rung(int(n_models), int(max_iter)),))]
  return _search(population, space, plan, max_iter, 3, client, should_stop, options)
