"""Trials trained as one vmapped population against the same trials one after another, and a
whole R = 81 Hyperband search in this process against the same search on a 2-worker Dask
LocalCluster (threads). Medians of timed repeats after a warm-up; one process, the machine as it
is (other work on it moves absolute times; the ratios are measured side by side).

MLP 40-64-10 on MNIST-1D, SGD with a learning rate, momentum and weight decay per trial; a trial
is 4 partial_fit calls of 5 steps of batch 32.

  python benchmarks/search_population.py
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np

from jaxdist import search
from jaxdist.experiment import search as family

CALLS = 4


def problem() -> family.SearchProblem:
  c = family.default()
  c.search.update(steps_per_call=5)
  c.space = dict(learning_rate="log_uniform(1e-3, 1.0)", momentum="uniform(0.0, 0.95)",
                 weight_decay="log_uniform(1e-6, 1e-3)")
  c.data.update(name="mnist1d", data_dir=os.environ.get("TFDS_DATA_DIR", ""), validation=1000)
  c.model.hidden = (64,)
  return family.SearchProblem(c)


def trials_per_second(pop, configs, one_by_one: bool, repeats: int = 3) -> float:
  groups = [[c] for c in configs] if one_by_one else [configs]
  seeds = list(range(len(configs)))

  def once():
    started = time.perf_counter()
    for group in groups:
      states = pop.init(group, seeds[:len(group)])
      pop.train(group, states, 0, CALLS)
    return time.perf_counter() - started

  once()  # compiles
  return len(configs) / float(np.median([once() for _ in range(repeats)]))


def main() -> None:
  p = problem()
  pop = search.Population(p.build, p.init_model, p.data, p.score, num_workers=1,
                          steps_per_call=5, pad=False)
  print(f"trials of {CALLS} calls x 5 steps: one vmapped population against one after another")
  for n in (1, 9, 27, 81):
    configs = search.sample(p.space, n, seed=n)
    together = trials_per_second(pop, configs, one_by_one=False)
    alone = trials_per_second(pop, configs, one_by_one=True, repeats=1 if n > 9 else 3)
    print(f"  N = {n:2d}: {together:7.1f} trials/s vmapped, {alone:6.1f} trials/s one after "
          f"another: {together / alone:5.1f}x", flush=True)

  def hyperband(client=None):
    started = time.perf_counter()
    result = search.hyperband(p.population, p.space, 81, 3, seed=0, progress=False,
                              client=client)
    return time.perf_counter() - started, result

  hyperband()  # compiles every program of the search
  here, first = hyperband()
  import distributed

  with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                dashboard_address=None,
                                silence_logs=logging.ERROR) as cluster, \
       distributed.Client(cluster) as client:
    hyperband(client)  # the workers' first use
    there, second = hyperband(client)
  same = first.trials == second.trials
  print(f"R = 81 Hyperband search (143 trials, 1,581 calls): in process {here:.1f} s, 2-worker "
        f"LocalCluster {there:.1f} s ({here / there:.2f}x); identical results: {same}")


if __name__ == "__main__":
  os.environ.setdefault("TFDS_DATA_DIR", os.path.join(tempfile.gettempdir(), "jaxdist-tfds"))
  main()
