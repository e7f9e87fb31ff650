"""The theory-slope simulation of Sievert's thesis (Corollary 1 after Li et al. Thm 5, [S0
L359-385]; the digest's §1.6 item 2), with no training: final losses nu ~ F(nu) = nu^beta, the
loss after k calls nu + (1/k)^(1/alpha), alpha = beta = 2. Hyperband (the library's brackets
with the exact integer log, successive halving on these curves) for R = 3^2..3^9 against random
search at the same budget T, each model trained to R, or to the per-model budget an oracle
picks. Prediction: on log-log axes
Hyperband's best loss falls with slope about -1/max(alpha, beta) = -1/2 (up to log factors),
uniform allocation's about -1/(alpha + beta) = -1/4.

  python reproduce/search_theory_slope.py
"""

from __future__ import annotations

import numpy as np

from jaxdist.search import hyperband_brackets

ALPHA = BETA = 2.0
SEEDS = 40


def loss(nu: np.ndarray, calls) -> np.ndarray:
  return nu + (1.0 / np.asarray(calls, float)) ** (1 / ALPHA)


def hyperband(max_iter: int, rng: np.random.Generator) -> tuple[int, float]:
  """(calls used, best final loss) of Hyperband on fresh curves."""
  total, best = 0, np.inf
  for bracket in hyperband_brackets(max_iter, 3, exact_log=True):
    nu = rng.random(bracket.n_models) ** (1 / BETA)
    alive = np.arange(bracket.n_models)
    for i, rung in enumerate(bracket.rungs):
      alive = alive[np.argsort(loss(nu[alive], 1 if i == 0 else bracket.rungs[i - 1].calls),
                               kind="stable")[:rung.n_models]] if i else alive
      stop = bracket.rungs[i + 1].n_models if i + 1 < len(bracket.rungs) else 0
      total += (len(alive) - stop) * rung.calls
    best = min(best, float(loss(nu[alive], bracket.rungs[-1].calls).min()))
  return total, best


def random_search(budget: int, per_model: int, rng: np.random.Generator) -> float:
  n = max(budget // per_model, 1)
  return float(loss(rng.random(n) ** (1 / BETA), per_model).min())


def slope(t, values) -> float:
  return float(np.polyfit(np.log(t), np.log(values), 1)[0])


def main() -> None:
  rng = np.random.default_rng(0)
  rows = []
  print("  R     | T (calls) | Hyperband | random, R each | random, oracle budget")
  for power in range(2, 10):
    max_iter = 3**power
    runs = [hyperband(max_iter, rng) for _ in range(SEEDS)]
    budget = int(np.median([t for t, _ in runs]))
    hb = float(np.median([b for _, b in runs]))
    fixed = float(np.median([random_search(budget, max_iter, rng) for _ in range(SEEDS)]))
    budgets = np.unique(np.geomspace(1, budget, 24).astype(int))
    oracle = min(float(np.median([random_search(budget, r, rng) for _ in range(SEEDS)]))
                 for r in budgets)
    rows.append((budget, hb, fixed, oracle))
    print(f"  {max_iter:5d} | {budget:9d} | {hb:9.4f} | {fixed:14.4f} | {oracle:.4f}")
  t, hb, fixed, oracle = (np.asarray(c) for c in zip(*rows))
  print(f"\nslopes of log(best loss) against log(T): Hyperband {slope(t, hb):.2f} "
        f"(theory about -1/max(alpha, beta) = -0.50), random search at R {slope(t, fixed):.2f}, "
        f"with the oracle budget {slope(t, oracle):.2f} (theory -1/(alpha + beta) = -0.25)")
  print("the digest's pilot: Hyperband -0.41, random at R -0.13, oracle -0.24")


if __name__ == "__main__":
  main()
