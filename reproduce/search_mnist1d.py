"""A real search on MNIST-1D (Sievert's thesis §2.5, Fig. 2.3a; the digest's §1.6 item 3):
Hyperband (R = 27, eta = 3: 49 models, 357 partial_fit calls; `--max_iter 81` for the thesis's
143 models and 1,581 calls) against random search at about the same budget (13 models x 27 calls
= 351; 19 x 81 = 1,539), over 10 seeds. An MLP, SGD's learning rate,
momentum and weight decay drawn per trial (per-trial arrays of one vmapped program) and the
batch size (a shape: one program per value); a partial_fit call is 10 SGD steps; the score is the
accuracy on 1,000 held-out training examples. Prediction: Hyperband's best score at least random
search's (medians), and it reaches random search's final score with about 1/3 of the calls.

  python reproduce/search_mnist1d.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from jaxdist import search
from jaxdist.experiment import search as family


def config():
  c = family.default()
  c.search.update(aggressiveness=3.0, steps_per_call=10)
  c.space = dict(learning_rate="log_uniform(1e-3, 1.0)", momentum="uniform(0.0, 0.95)",
                 weight_decay="log_uniform(1e-6, 1e-3)", batch_size="choice(32, 128)")
  c.data.update(name="mnist1d", data_dir=os.environ.get("TFDS_DATA_DIR", ""), validation=1000)
  c.model.hidden = (64,)
  return c


def calls_to_reach(trace, target: float) -> float:
  return next((calls for calls, best in trace if best >= target), float("inf"))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--max_iter", type=int, default=27)
  args = parser.parse_args()
  problem = family.SearchProblem(config())
  rows = []
  for seed in range(args.seeds):
    started = time.perf_counter()
    hb = search.hyperband(problem.population, problem.space, args.max_iter, 3, seed=seed,
                          progress=False)
    budget = hb.metadata["partial_fit_calls"]
    rs = search.random_search(problem.population, problem.space, budget // args.max_iter,
                              args.max_iter, seed=1000 + seed, progress=False)
    rs_final = rs.best["score"]
    ratio = calls_to_reach(hb.trace, rs_final) / rs.metadata_["partial_fit_calls"]
    rows.append((hb.best["score"], rs_final, ratio, hb.metadata_["partial_fit_calls"],
                 rs.metadata_["partial_fit_calls"]))
    print(f"seed {seed}: Hyperband {hb.best['score']:.3f} ({hb.metadata_['partial_fit_calls']} "
          f"calls), random search {rs_final:.3f} ({rs.metadata_['partial_fit_calls']} calls); "
          f"Hyperband reached {rs_final:.3f} after {ratio:.2f} of random search's calls "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
  hb_best, rs_best, ratios, _, rs_calls = (np.asarray(c) for c in zip(*rows))
  print(f"\nmedian best validation accuracy over {args.seeds} seeds: Hyperband "
        f"{np.median(hb_best):.3f}, random search {np.median(rs_best):.3f} (Hyperband >= random "
        f"in {np.mean(hb_best >= rs_best):.0%} of the seeds)")
  print(f"calls Hyperband needed to reach random search's final score, as a fraction of random "
        f"search's {int(rs_calls[0])}: median {np.median(ratios):.2f} (thesis: about 1/3)")


if __name__ == "__main__":
  os.environ.setdefault("TFDS_DATA_DIR", os.path.join(tempfile.gettempdir(), "jaxdist-tfds"))
  main()
