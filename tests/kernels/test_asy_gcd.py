"""Asy-GCD: one consistent worker is the sequential greedy solver, resume is bit-exact, staleness
within Thm. 4.1's regime converges, lost updates do not, the step-size guard keeps the
synchronous variant descending, and simulated and mesh agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from jaxdist.errors import ArgumentError
from jaxdist.kernels import asy_gcd, data
from jaxdist.kernels.kernels import Kernel

KERNEL = Kernel("gaussian", gamma=0.1)


@pytest.fixture(scope="module")
def problem():
  x, y = data.stand_in("ijcnn", 160, seed=2)
  return jnp.asarray(x[:, :8]), jnp.asarray(y)


@pytest.fixture(scope="module")
def optimum(problem):
  x, y = problem
  alpha, _, _ = jax.jit(lambda x, y: asy_gcd.solve_box(KERNEL, x, y, C=1.0, tol=1e-4))(x, y)
  pg = asy_gcd.projected_gradient(alpha, y * (KERNEL(x, x) @ (alpha * y)) - 1, 1.0)
  assert float(jnp.max(pg)) < 2e-3  # a KKT point of the box-constrained dual
  return float(asy_gcd.objective(KERNEL, x, y, alpha))


def test_one_consistent_worker_is_the_greedy_solver(problem):
  x, y = problem
  alpha, g, _ = asy_gcd.solve_box(KERNEL, x, y, C=1.0, tol=0.0, max_iter=60)
  method = asy_gcd.AsyGCD(KERNEL, x, y, np.zeros(len(y), int), C=1.0)
  state, _ = method.run(method.init(), 60)
  np.testing.assert_array_equal(np.asarray(state.alpha), np.asarray(alpha))
  np.testing.assert_array_equal(np.asarray(state.g), np.asarray(g))


def test_resume_is_bit_exact(problem):
  x, y = problem
  method = asy_gcd.AsyGCD(KERNEL, x, y, np.arange(len(y)) % 4, delay=3, lost_updates=0.2)
  whole, _ = method.run(method.init(seed=5), 80)
  half, _ = method.run(method.init(seed=5), 40)
  resumed, _ = method.run(jax.tree.map(np.asarray, half), 40)  # as restored from a file
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_small_delay_converges_large_delay_and_lost_updates_do_not(problem, optimum):
  x, y = problem
  blocks = asy_gcd.kmeans_blocks(np.asarray(x), 4)
  gaps = {}
  for delay, lost in [(1, 0.0), (64, 0.0), (0, 0.3)]:
    method = asy_gcd.AsyGCD(KERNEL, x, y, blocks, delay=delay, lost_updates=lost)
    _, metrics = method.run(method.init(), 1000)
    gaps[delay, lost] = float(metrics["objective"]) - optimum
    if lost:
      assert float(metrics["gradient_error"]) > 0.1  # g no longer equals Q alpha - 1
  assert gaps[1, 0.0] < 1e-2 * abs(optimum)
  assert gaps[64, 0.0] > 10 * gaps[1, 0.0] and gaps[0, 0.3] > 10 * gaps[1, 0.0]


def test_guarded_synchronous_steps_descend_on_both_layouts(problem, optimum):
  x, y = problem
  blocks = np.arange(len(y)) % 8
  _, values = asy_gcd.synchronous_block_greedy(KERNEL, x, y, blocks, rounds=60, guard=True)
  assert np.all(np.diff(values) <= 1e-4 * abs(optimum))
  _, mesh = asy_gcd.synchronous_block_greedy(KERNEL, x, y, blocks, rounds=60, guard=True,
                                             layout=jaxdist.Sharded())
  np.testing.assert_allclose(mesh, values, rtol=1e-5)


def test_bad_arguments_are_named(problem):
  x, y = problem
  with pytest.raises(ArgumentError, match="delay: must be >= 0"):
    asy_gcd.AsyGCD(KERNEL, x, y, np.zeros(len(y), int), delay=-1)
  with pytest.raises(ArgumentError, match="lost_updates"):
    asy_gcd.AsyGCD(KERNEL, x, y, np.zeros(len(y), int), lost_updates=1.5)
