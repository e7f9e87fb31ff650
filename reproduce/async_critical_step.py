"""The critical step size of SGD with a fixed delay on a quadratic (spec §10b, check 3).

x_{t+1} = x_t - gamma L x_{t - tau} converges iff gamma L < 2 sin(pi / (2 (2 tau + 1))). One
`StaleSGD` run with a fixed whole-vector delay on a diagonal quadratic tries 2001 values of
a = gamma c_i at once (each coordinate evolves alone); the critical a is where the coordinates
stop converging, found on a coarse grid and then on a fine one around it. Then the least-squares
extension: at gamma = 1/L delays tau >= 2 diverge, at gamma = 1/(L (tau + 1)) every delay converges
and the steps to reach 1e-3 grow about linearly with tau.

  python reproduce/async_critical_step.py      (about a minute on two CPU cores)
"""

import jax.numpy as jnp
import numpy as np

from jaxdist import asynchrony

PILOT = {0: 2.000, 1: 0.999, 2: 0.617, 4: 0.347, 8: 0.184, 16: 0.094, 32: 0.048}


def stable(values, tau, steps):
  """Which a in `values` still converge after `steps` delayed steps from x = 1."""
  sgd = asynchrony.StaleSGD(asynchrony.Quadratic(values), 1.0, asynchrony.Fixed(tau))
  x = np.asarray(sgd.run(sgd.init(jnp.ones(len(values))), steps)[0].x)
  return np.isfinite(x) & (np.abs(x) <= 1.0)


def critical(tau):
  steps = 3000 + 300 * tau
  low, high = 0.0, 2.1
  for _ in range(2):  # a coarse grid, then a fine one around the boundary
    grid = np.linspace(low, high, 2001)
    ok = stable(grid, tau, steps)
    last = int(np.argmin(ok)) - 1 if not ok.all() else len(grid) - 1
    low, high = grid[max(last, 0)], grid[min(last + 1, len(grid) - 1)]
  return (low + high) / 2


def steps_to(curvature, learning_rate, tau, tol=1e-3, chunk=100, limit=20000):
  sgd = asynchrony.StaleSGD(asynchrony.Quadratic(curvature), learning_rate, asynchrony.Fixed(tau))
  state = sgd.init(jnp.ones(len(curvature)))
  for done in range(chunk, limit + 1, chunk):
    state, _ = sgd.run(state, chunk)
    size = float(jnp.max(jnp.abs(state.x)))
    if not np.isfinite(size) or size > 1e6:
      return "diverges"
    if size < tol:
      return done
  return f"> {limit}"


def main():
  print("critical a = gamma L for a fixed delay tau")
  print(f"{'tau':>4} {'ours':>8} {'predicted':>10} {'rel. err':>9} {'pilot':>7}")
  for tau, pilot in PILOT.items():
    predicted = 2 * np.sin(np.pi / (2 * (2 * tau + 1)))
    ours = critical(tau)
    print(f"{tau:>4} {ours:8.4f} {predicted:10.4f} {abs(ours - predicted) / predicted:9.2%} "
          f"{pilot:7.3f}")
  curvature = np.geomspace(0.01, 1.0, 20)  # least squares, condition number 100, L = 1
  print("\nleast squares (kappa = 100): steps until max |x - x*| < 1e-3")
  print(f"{'tau':>4} {'gamma = 1/L':>12} {'gamma = 1/(L(tau+1))':>21}")
  for tau in (0, 1, 2, 4, 8):
    print(f"{tau:>4} {steps_to(curvature, 1.0, tau)!s:>12} "
          f"{steps_to(curvature, 1.0 / (tau + 1), tau)!s:>21}")


if __name__ == "__main__":
  main()
