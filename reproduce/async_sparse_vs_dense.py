"""Hogwild! under delay, sparse against dense (spec check 4 [S3 L1341-1354]).

Every step reads a snapshot tau updates old (a whole-vector `Fixed(tau)` delay, as the pilot)
and writes x_e <- x_e - gamma G_e(snapshot) into the current model, on least squares over +-1
labels with the spread regulariser (smooth, so a too-large delayed step diverges: the hinge of
the sparse SVM has bounded gradients and cannot). Sparse: 20,000 examples, dimension 2,000,
Omega = 5, 30,000 steps; dense: dimension 100, Omega = 100. Prediction: the sparse loss is nearly
independent of tau <= 64; the dense loss degrades with tau and diverges at a step that tau = 0
tolerates. The pilot's numbers (a numpy run by the spec's author, on an objective whose details
differ) are printed beside ours: compare the pattern along a row, not the values. A last table
runs the same with torn per-coordinate reads (`Bounded(tau)`, each coordinate its own delay).

  python reproduce/async_sparse_vs_dense.py      (about two minutes on two CPU cores)
"""

import jax.numpy as jnp
import numpy as np

from jaxdist import asynchrony

TAUS = (0, 4, 16, 64)
PILOT = {("sparse", 0.25): (0.0141, 0.0141, 0.0141, 0.0141),
         ("sparse", 0.5): (0.0338, 0.0332, 0.0350, 0.0354),
         ("dense", 0.25): (0.0132, 0.0132, 0.0138, 0.0160),
         ("dense", 0.5): (0.0201, 0.0202, 0.0255, None)}


def final_loss(objective, learning_rate, staleness, reads, steps=30000):
  sgd = asynchrony.StaleSGD(objective, learning_rate, staleness, reads)
  state, _ = sgd.run(sgd.init(jnp.zeros(objective.dim)), steps)
  value = float(asynchrony.objective_value(objective, state.x))
  return value if np.isfinite(value) and value < 1e3 else None


def show(value):
  return f"{value:8.4f}" if value is not None else "diverged"


def main():
  problems = {"sparse": asynchrony.random_sparse(20000, 2000, 5, seed=0, noise=0.0),
              "dense": asynchrony.random_sparse(20000, 100, 100, seed=0, noise=0.0)}
  for name, data in problems.items():
    stats = asynchrony.sparsity(data)
    print(f"{name}: Omega = {stats['omega']}, Delta = {stats['delta']:.4f}, "
          f"rho = {stats['rho']:.4f}")
  for label, staleness, reads in (("whole-vector snapshot, Fixed(tau)", asynchrony.Fixed,
                                   asynchrony.WholeVector()),
                                  ("torn reads, Bounded(tau)", asynchrony.Bounded,
                                   asynchrony.TornReads())):
    print(f"\nfinal training loss (least squares, lambda = 1e-4), {label}")
    print(f"{'problem, step':>22} " + " ".join(f"{'tau=' + str(t):>8}" for t in TAUS) +
          "   pilot (tau = 0, 4, 16, 64)")
    for (name, factor), pilot in PILOT.items():
      if staleness is asynchrony.Bounded and factor == 0.25:
        continue
      objective = asynchrony.SparseLeastSquares(problems[name], regularization=1e-4)
      omega = asynchrony.sparsity(problems[name])["omega"]
      row = [final_loss(objective, factor / omega, staleness(t), reads) for t in TAUS]
      print(f"{name + ', ' + str(factor) + '/Omega':>22} " + " ".join(show(v) for v in row) +
            "   " + " ".join(show(v).strip() for v in pilot))
    if staleness is asynchrony.Fixed:
      objective = asynchrony.SparseLeastSquares(problems["dense"], regularization=1e-4)
      print(f"{'dense, 1/Omega':>22} " + " ".join(
          show(final_loss(objective, 1 / 100, staleness(t), reads)) for t in TAUS) +
          "   pilot: diverged at every tau")


if __name__ == "__main__":
  main()
