"""Asy-GCD under staleness and lost updates ([You20] ch. 4, Thm. 4.1, L2006; C9 of the digest).

The box-constrained kernel-SVM dual (no bias) on 2,000 rows of a covtype-shaped stand-in,
Gaussian kernel, C = 1, 8 workers owning k-means blocks of coordinates. Simulated Asy-GCD: the
workers update in turn, each reading g through a copy T updates old. Reported: the objective gap
f(alpha) - f* after k updates (f* from the sequential greedy solver run to a tight tolerance),
for T = 0, 2, 8, 32, 128, then with 30% of the increments to g lost (non-atomic writes), and
the synchronous block-greedy variant with and without its step-size guard.

Claims: small T keeps the linear convergence, large T (beyond T(T+1) <= sqrt(n) L_max /
(4 e L_res)) slows or breaks it; lost updates leave g inconsistent with alpha and a residual gap;
synchronous greedy steps from many blocks need a guard.

  python reproduce/kernels_asy_gcd.py [--samples 2000] [--updates 8000]
"""

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

import jaxdist
from jaxdist.kernels import asy_gcd, data


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--samples", type=int, default=2000)
  parser.add_argument("--updates", type=int, default=8000)
  args = parser.parse_args()
  x, y = data.stand_in("covtype", args.samples, seed=0)
  x, y = jnp.asarray(x[:, :20]), jnp.asarray(y)
  kernel = jaxdist.kernels.Kernel("gaussian", gamma=0.05)
  alpha, _, iterations = jax.jit(lambda x, y: asy_gcd.solve_box(kernel, x, y, C=1.0, tol=1e-5,
                                                                 max_iter=200_000))(x, y)
  optimum = float(asy_gcd.objective(kernel, x, y, alpha))
  q = np.asarray(y[:, None] * y[None, :] * jaxdist.kernels.kernels.gram(kernel, x, x))
  l_res = float(np.max(np.linalg.norm(q, axis=0)))
  bound = math.sqrt(len(y)) * 1.0 / (4 * math.e * l_res)
  print(f"f* = {optimum:.4f} ({int(iterations)} sequential greedy updates); L_max = 1, "
        f"L_res = {l_res:.1f}: Thm. 4.1 allows T(T+1) <= {bound:.3f}, i.e. T = 0 only here")
  blocks = asy_gcd.kmeans_blocks(np.asarray(x), 8)
  checkpoints = [args.updates // 8, args.updates // 4, args.updates // 2, args.updates]
  print("| variant | " + " | ".join(f"gap after {k}" for k in checkpoints) +
        " | max abs(g - (Q alpha - 1)) |")
  print("|---|" + "---|" * (len(checkpoints) + 1))
  for delay, lost in [(0, 0.0), (2, 0.0), (8, 0.0), (32, 0.0), (128, 0.0), (0, 0.3)]:
    method = asy_gcd.AsyGCD(kernel, x, y, blocks, delay=delay, lost_updates=lost)
    state, done, gaps = method.init(), 0, []
    for k in checkpoints:
      state, metrics = method.run(state, k - done)
      done = k
      gaps.append(float(metrics["objective"]) - optimum)
    name = f"T = {delay}" + (f", {int(lost * 100)}% of updates to g lost" if lost else "")
    print(f"| {name} | " + " | ".join(f"{g:.3g}" for g in gaps) +
          f" | {float(metrics['gradient_error']):.2g} |")
  for guard in (True, False):
    for kind, b in (("k-means blocks", blocks), ("random blocks", np.arange(len(y)) % 8)):
      _, values = asy_gcd.synchronous_block_greedy(kernel, x, y, b, rounds=args.updates // 8,
                                                   guard=guard)
      gaps = [float(values[k // 8 - 1]) - optimum for k in checkpoints]
      name = f"synchronous, {kind}, {'guarded' if guard else 'no guard'} (8 updates a round)"
      print(f"| {name} | " + " | ".join(f"{g:.3g}" for g in gaps) + " | 0 (exact) |")


if __name__ == "__main__":
  main()
