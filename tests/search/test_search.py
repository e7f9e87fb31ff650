"""The search: Hyperband's rungs run as planned; every scheduling policy, a Dask cluster and a
stopped-and-resumed search end with the identical result."""

import logging
import os
import subprocess
import sys

import pytest
from search_problem import SPACE, population

import jaxdist
from jaxdist.errors import ArgumentError
from jaxdist.search import Choice

POPULATION = population()  # one set of compiled programs for every search here


def _hyperband(**options):
  return jaxdist.search.hyperband(POPULATION, SPACE, max_iter=9, aggressiveness=3, seed=5,
                                  progress=False, **options)


@pytest.fixture(scope="module")
def unbroken():
  return _hyperband()


def test_rungs_and_budget_as_planned(unbroken):
  # R = 9, eta = 3: brackets 9@1 -> 3@3 -> 1@9, 5@3 -> 1@9, 3@9
  assert unbroken.metadata["n_models"] == 17 and len(unbroken.trials) == 17
  assert unbroken.metadata_["partial_fit_calls"] == unbroken.metadata["partial_fit_calls"] == 69
  calls = sorted(t["calls"] for t in unbroken.trials if t["bracket"] == 2)
  assert calls == [1] * 6 + [3] * 2 + [9]
  best = unbroken.best
  assert best["calls"] == 9 and best["score"] == max(t["score"] for t in unbroken.trials
                                                    if t["calls"] == 9)
  # each rung kept the best of the one before, ties to the lower trial id
  curves = [(t, c) for t, c in zip(unbroken.trials, unbroken.curves) if t["bracket"] == 2]
  at_one = sorted(((-c[0][1], t["trial"]) for t, c in curves))
  assert sorted(t["trial"] for t, c in curves if t["calls"] >= 3) == sorted(
      i for _, i in at_one[:3])


@pytest.mark.parametrize("policy", ["fifo", "random"])
def test_scheduling_never_changes_the_result(unbroken, policy):
  other = _hyperband(priority=policy)
  assert other.trials == unbroken.trials and other.best == unbroken.best


@pytest.mark.parametrize("stop_after", [1, 4])
def test_a_stopped_search_resumes_to_the_identical_result(unbroken, tmp_path, stop_after):
  done = iter(range(1000))
  stopped = _hyperband(checkpoint_dir=str(tmp_path), should_stop=lambda: next(done) >= stop_after)
  assert stopped.preempted and stopped.best is None
  resumed = _hyperband(checkpoint_dir=str(tmp_path))
  assert not resumed.preempted
  assert resumed.trials == unbroken.trials and resumed.best == unbroken.best
  assert resumed.history == unbroken.history
  again = _hyperband(checkpoint_dir=str(tmp_path))  # a complete search only reports
  assert again.trials == unbroken.trials


def test_a_dask_cluster_gives_the_same_result(unbroken):
  distributed = pytest.importorskip("distributed")
  with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                dashboard_address=None,
                                silence_logs=logging.ERROR) as cluster, \
       distributed.Client(cluster) as client:
    result = _hyperband(client=client)
  assert result.trials == unbroken.trials and result.best == unbroken.best


def test_random_search_trains_every_model_to_max_iter():
  result = jaxdist.search.random_search(POPULATION, SPACE, 3, 9, seed=5, progress=False)
  assert [t["calls"] for t in result.trials] == [9, 9, 9]


def test_the_space_must_match_the_population_and_options_exist():
  with pytest.raises(ArgumentError, match=r"patiense: not an option of a search \(allowed: 'seed'"):
    jaxdist.search.hyperband(POPULATION, SPACE, max_iter=9, patiense=True)
  with pytest.raises(ArgumentError, match=r"space: its static hyperparameters \(\)"):
    jaxdist.search.hyperband(POPULATION, {**SPACE, "local_steps": Choice([2])}, max_iter=9)


def test_patience_stops_models_on_a_plateau():
  # tol = 10: every score is a plateau once a model has had `patience` = R // eta = 3 calls
  result = _hyperband(patience=True, tol=10.0)
  calls = {(t["bracket"], t["trial"]): t["calls"] for t in result.trials}
  assert max(c for (b, _), c in calls.items() if b == 2) == 3  # stopped at rung 1 of 9@1
  assert max(c for (b, _), c in calls.items() if b == 0) == 6  # 3 + 3, then a plateau
  assert result.metadata_["partial_fit_calls"] < result.metadata["partial_fit_calls"]
  stopped = [t["calls"] for t in result.trials if t["stopped"]]
  assert stopped and set(stopped) <= {3, 6}


def test_trials_of_other_shapes_train_in_their_own_groups():
  space = {**SPACE, "local_steps": Choice([1, 2], static=True)}
  result = jaxdist.search.random_search(POPULATION, space, 2, 2, seed=2, progress=False)
  assert [t["local_steps"] for t in result.trials] == [1, 2]  # seed 2 draws both
  fifo = jaxdist.search.random_search(POPULATION, space, 2, 2, seed=2, progress=False,
                                      priority="fifo")
  assert fifo.trials == result.trials and all(t["calls"] == 2 for t in result.trials)
  assert result.trials[0]["score"] != result.trials[1]["score"]


KILLED = """
import os, signal, sys
sys.path.insert(0, {here!r})
import jaxdist
from search_problem import SPACE, population
units = iter(range(100))
def kill():  # SIGKILL, no cleanup, maybe in the middle of an asynchronous checkpoint
  if next(units) == 3:
    os.kill(os.getpid(), signal.SIGKILL)
  return False
jaxdist.search.hyperband(population(), SPACE, max_iter=9, aggressiveness=3, seed=5,
                         progress=False, checkpoint_dir={directory!r}, should_stop=kill)
"""


def test_a_killed_search_resumes_to_the_identical_result(unbroken, tmp_path):
  here = os.path.dirname(os.path.abspath(__file__))
  script = KILLED.format(here=here, directory=str(tmp_path / "ckpt"))
  killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert any(name.isdigit() for name in os.listdir(tmp_path / "ckpt"))  # it resumes from one
  resumed = _hyperband(checkpoint_dir=str(tmp_path / "ckpt"))
  assert resumed.trials == unbroken.trials and resumed.best == unbroken.best
