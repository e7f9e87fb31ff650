"""ATOMO (Alg. 2), l_q quantization, spectral atoms, aggregation, compressed mini-batch SGD."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from jaxdist.algorithms.compressed_sgd import compressed_sgd
from jaxdist.communication import atomo
from tests import helpers


def draws(compressor, g, n):
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  return jax.jit(jax.vmap(lambda k, x: compressor(x, k), in_axes=(0, None)))(keys, g)


def test_algorithm_2_probabilities():
  lam = jnp.array([1.0, 10.0, 0.5, 1.0, 0.2, 0.5, 1.0, 0.0])  # S0 §4.4 check 1, unsorted
  p, _ = atomo.sampling_probabilities(lam, 3.0)
  np.testing.assert_allclose(p, [1 / 2.1, 1, 0.5 / 2.1, 1 / 2.1, 0.2 / 2.1, 0.5 / 2.1, 1 / 2.1,
                                 0], rtol=1e-6)
  assert float(p.sum()) == pytest.approx(3.0)
  balanced, _ = atomo.sampling_probabilities(jnp.array([3.0, 2.0, 1.0]), 1.5)
  np.testing.assert_allclose(balanced, [0.75, 0.5, 0.25])
  np.testing.assert_array_equal(atomo.sampling_probabilities(jnp.array([3.0, 2.0]), 5.0)[0], 1)
  # no random feasible p has a lower variance sum lambda^2 / p (Thm. 23)
  rng = np.random.default_rng(0)
  lam = np.abs(rng.standard_t(2, size=12)) + 0.01
  p = np.asarray(atomo.sampling_probabilities(jnp.asarray(lam, jnp.float32), 4.0)[0])
  best = np.sum(lam**2 / p)
  for _ in range(2000):
    q = rng.dirichlet(np.ones(12)) * 4.0
    if q.max() <= 1:
      assert np.sum(lam**2 / q) >= best * (1 - 1e-5)


@pytest.mark.parametrize("basis", ["entries", "spectral"])
def test_full_budget_is_the_gradient_and_estimates_are_unbiased(basis):
  g = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
  compressor = atomo.Atomo(30.0 if basis == "entries" else 5.0, basis)
  np.testing.assert_array_equal(compressor(g, jax.random.PRNGKey(2)), g)
  small = atomo.Atomo(2.0, basis)
  samples = draws(small, g, 4000)
  mean = samples.mean(0)
  spread = samples.std(0) / math.sqrt(len(samples))
  assert float(jnp.max(jnp.abs(mean - g) / (spread + 1e-6))) < 5.0
  # the variance is Lemma 19's sum lambda^2 / p - ||g||^2 for orthonormal atoms
  coefficients = jnp.linalg.svd(g, compute_uv=False) if basis == "spectral" else g.reshape(-1)
  p, _ = atomo.sampling_probabilities(coefficients, 2.0)
  predicted = float(jnp.sum(jnp.where(p > 0, coefficients**2 / p, 0.0)) - jnp.sum(g**2))
  measured = float(jnp.mean(jnp.sum((samples - g[None])**2, axis=(1, 2))))
  assert measured == pytest.approx(predicted, rel=0.1)


def test_lq_second_moment_identity():
  g = jax.random.normal(jax.random.PRNGKey(3), (200,))
  l1 = float(jnp.abs(g).sum())
  for compressor, q_norm in [(atomo.one_bit_qsgd(), float(jnp.linalg.norm(g))),
                             (atomo.terngrad(), float(jnp.abs(g).max()))]:
    samples = draws(compressor, g, 2000)
    second = float(jnp.mean(jnp.sum(samples**2, axis=1)))
    assert second == pytest.approx(l1 * q_norm, rel=0.04)
    np.testing.assert_allclose(samples.mean(0), g, atol=6 * math.sqrt(l1 * q_norm / 2000))


def test_spectral_beats_entrywise_on_a_near_low_rank_matrix():
  key = jax.random.PRNGKey(4)
  u, v = jax.random.normal(key, (2, 32, 3))
  g = u @ v.T + 0.05 * jax.random.normal(key, (32, 32))
  spectral = atomo.Atomo(2.0, "spectral")
  # equal floats: spectral sends s (rows + cols + 1), entry-wise value + index per atom
  entries = atomo.Atomo(2.0 * (32 + 32 + 1) / 2, "entries")
  assert spectral.tree_bits(g) == pytest.approx(entries.tree_bits(g))

  def variance(coefficients, budget):  # Lemma 19, orthonormal atoms: sum lambda^2 / p - ||g||^2
    p, _ = atomo.sampling_probabilities(coefficients, budget)
    return float(jnp.sum(jnp.where(p > 0, coefficients**2 / p, 0.0)) - jnp.sum(g**2))

  spectral_var = variance(jnp.linalg.svd(g, compute_uv=False), spectral.budget)
  entries_var = variance(g.reshape(-1), entries.budget)
  assert spectral_var < 0.2 * entries_var


def test_spectral_reshapes_conv_kernels():
  assert atomo.spectral_matrix_shape((3, 3, 16, 32)) == (256, 18)
  assert atomo.spectral_matrix_shape((3, 3, 3, 5)) == (15, 9)  # odd xy: the fallback
  assert atomo.spectral_matrix_shape((7,)) == (1, 7)
  kernel = jax.random.normal(jax.random.PRNGKey(5), (3, 3, 4, 6))
  out = atomo.Atomo(2.0, "spectral")(kernel, jax.random.PRNGKey(6))
  assert out.shape == kernel.shape
  assert bool(jnp.all(jnp.isfinite(out)))


def test_compressed_sgd_simulated_equals_mesh_and_gather_equals_decompress():
  batches, params = helpers.regression_data(8, 4)
  results = {}
  for name, layout, how in [("sim", "simulated", "decompress"), ("mesh", "shard_map", "gather")]:
    algorithm = compressed_sgd(helpers.linear_regression_loss, optax.sgd, learning_rate=0.05,
                               compressor=atomo.Atomo(2.0), aggregation=how)
    results[name] = helpers.run_algorithm(algorithm, params, batches, backend=layout)
  chex.assert_trees_all_close(results["sim"][0].params, results["mesh"][0].params, rtol=2e-5)
  assert float(results["sim"][1]["comm/bits_sent"][0]) == 2 * 64 + 32  # w: 2 atoms, b: dense


def test_bits_and_bad_arguments():
  assert atomo.Atomo(3.0).message_bits(100) == 3 * 64
  assert atomo.Atomo(3.0, "spectral").tree_bits(jnp.zeros((10, 20))) == 3 * 32 * 31
  assert atomo.terngrad().message_bits(100) == 232
  assert atomo.qsgd(4).message_bits(100) == 432
  with pytest.raises(jaxdist.ArgumentError, match="basis"):
    atomo.Atomo(2.0, "fourier")
  with pytest.raises(jaxdist.ArgumentError, match="q"):
    atomo.LqQuantization(0.5)
  with pytest.raises(jaxdist.ArgumentError, match="compressor"):
    compressed_sgd(helpers.linear_regression_loss, learning_rate=0.1, compressor="atomo")


def test_compressed_sgd_resumes_bit_exactly(tmp_path):
  batches, params = helpers.regression_data(4, 6)
  source = helpers.per_step(batches)

  def fit(steps, directory=None):
    algorithm = compressed_sgd(helpers.linear_regression_loss, optax.sgd, learning_rate=0.05,
                               compressor=atomo.Atomo(2.0))
    return jaxdist.train(algorithm, params, data=source, num_workers=4, num_steps=steps,
                         steps_per_chunk=3, checkpoint_dir=directory, progress=False)

  unbroken = fit(6)
  fit(3, str(tmp_path))
  resumed = fit(6, str(tmp_path))
  chex.assert_trees_all_equal(resumed.state, unbroken.state)


def test_atomo_and_lq_quantization_are_always_unbiased():
  """They are no delta-contractions, so CHOCO cannot be given them by switching a flag."""
  for compressor in (atomo.Atomo(2.0), atomo.LqQuantization(2.0)):
    assert compressor.unbiased and not compressor.is_contraction
  with pytest.raises(TypeError, match="unbiased"):
    atomo.Atomo(2.0, unbiased=False)
