"""Backup workers and the synchronous parameter server against mini-batch SGD; one-shot and
prediction averaging; the threaded runner's properties; coordinate parallelism."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from helpers import assert_same, linear_regression_loss, regression_data, run_algorithm
from jaxdist import asynchrony
from jaxdist.errors import ArgumentError

BATCHES, PARAMS = regression_data(4, 6)


def equal(a, b):
  return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


def test_sync_ps_is_minibatch_sgd_and_no_backup_is_sync_ps():
  reference, _ = run_algorithm(jaxdist.minibatch_sgd(linear_regression_loss, optax.sgd,
                                                     learning_rate=0.05), PARAMS, BATCHES)
  sync, _ = run_algorithm(asynchrony.sync_ps(linear_regression_loss, optax.sgd,
                                             learning_rate=0.05, reduction="mean"), PARAMS, BATCHES)
  backup, metrics = run_algorithm(asynchrony.backup_sgd(
      linear_regression_loss, optax.sgd, learning_rate=0.05, num_backup=0), PARAMS, BATCHES)
  assert equal(sync.params, reference.params) and equal(backup.params, reference.params)
  # the wait with no backup is the slowest of the four Exp(1) times
  assert (metrics["time/step"] > 0).all()
  np.testing.assert_allclose(np.cumsum(metrics["time/step"]), metrics["time/total"], rtol=1e-5)


def test_backup_drops_the_straggler_and_runs_the_same_on_a_mesh():
  straggler = asynchrony.Straggler(asynchrony.Constant(1.0), worker=0, slowdown=10.0)
  backup = asynchrony.backup_sgd(linear_regression_loss, optax.sgd, learning_rate=0.05,
                                 num_backup=1, compute_time=straggler)
  batches, params = regression_data(8, 4)
  state, metrics = run_algorithm(backup, params, batches)
  without, _ = run_algorithm(jaxdist.minibatch_sgd(linear_regression_loss, optax.sgd,
                                                   learning_rate=0.05), params,
                             jax.tree.map(lambda b: b[:, 1:], batches))
  assert_same(state.params, without.params, 1e-5)  # worker 0's gradients are never used
  assert (metrics["time/step"] == 1.0).all()  # the step ends with the seventh fast worker
  sharded, _ = run_algorithm(backup, params, batches, backend="sharded")
  assert_same(sharded.params, state.params, 2e-5)
  with pytest.raises(ArgumentError, match="num_backup: 4 leaves no worker of 4"):
    run_algorithm(asynchrony.backup_sgd(linear_regression_loss, optax.sgd, learning_rate=0.05,
                                        num_backup=4), PARAMS, BATCHES)


def test_expected_waits_of_order_statistics():
  assert asynchrony.expected_wait(16, 0) == pytest.approx(3.3807, abs=1e-4)  # H_16
  assert asynchrony.expected_wait(16, 2) == pytest.approx(1.995, abs=1e-3)  # H_18 - H_2
  assert asynchrony.expected_wait(16, 4) == pytest.approx(1.5144, abs=1e-4)


def test_one_shot_averages_independent_runs_once_and_ensembles():
  algorithm = asynchrony.one_shot_averaging(linear_regression_loss, optax.sgd, learning_rate=0.05)
  runner = jaxdist.Runner(algorithm, [jax.tree.map(lambda b, t=t: b[t], BATCHES)
                                      for t in range(6)], num_workers=4, seed=0,
                           steps_per_chunk=6)
  state, metrics = runner.run(runner.init(PARAMS, {}), 6)
  assert (metrics["comm/bits_sent"] == 0).all()
  averaged, _ = runner.deployed(state)
  stacked, _ = runner.deployed(state, average=False)
  for k in range(4):  # worker k's model is serial SGD on its own batches
    alone, _ = run_algorithm(jaxdist.minibatch_sgd(linear_regression_loss, optax.sgd,
                                                   learning_rate=0.05), PARAMS,
                             jax.tree.map(lambda b, k=k: b[:, k:k + 1], BATCHES))
    assert_same(jax.tree.map(lambda x, k=k: x[k], stacked), alone.params, 1e-6)
  assert_same(averaged, jax.tree.map(lambda x: x.mean(0), stacked), 1e-6)
  x = jnp.asarray(BATCHES["x"][0, 0])
  ensemble = asynchrony.prediction_average(lambda p, v: v @ p["w"] + p["b"], stacked, x)
  # a linear model: the ensemble is the averaged model
  np.testing.assert_allclose(ensemble, x @ averaged["w"] + averaged["b"], rtol=1e-5)


def test_threaded_runner_properties():
  """Not bit-reproducible (thread timing): convergence and staleness bounds only."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 5)).astype(np.float32)
  y = (x @ rng.normal(size=5)).astype(np.float32)
  data = asynchrony.sampler({"x": x, "y": y}, batch_size=8, seed=1)

  def loss(p, b):
    return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)

  start = {"w": np.zeros(5, np.float32)}
  result = asynchrony.ThreadedAsyncSGD(loss, 0.02, data, devices=jax.devices()[:4]).run(start,
                                                                                        400)
  full = {"x": x, "y": y}
  assert result.staleness.size == 400 and (result.staleness >= 0).all()
  assert (result.staleness < 400).all() and set(result.workers.tolist()) <= {0, 1, 2, 3}
  assert float(loss(result.params, full)) < 1e-3 * float(loss(start, full))
  alone = asynchrony.ThreadedAsyncSGD(loss, 0.02, data, devices=jax.devices()[:1]).run(start, 50)
  assert (alone.staleness == 0).all()  # one worker is never stale
  # one worker in two calls draws the batches of one call of 50: continued, not repeated
  one = asynchrony.ThreadedAsyncSGD(loss, 0.02, data, devices=jax.devices()[:1])
  halves = one.run(one.run(start, 25).params, 25, first_index=25)
  np.testing.assert_allclose(halves.params["w"], alone.params["w"], rtol=1e-6)


def test_coordinate_blocks_concatenate_to_the_gradient_and_bcd_converges():
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.normal(size=(40, 8)), jnp.float32)
  b = jnp.asarray(rng.normal(size=40), jnp.float32)

  def f(x):
    return jnp.sum((a @ x - b) ** 2) / 80

  x = jnp.asarray(rng.normal(size=8), jnp.float32)
  np.testing.assert_allclose(asynchrony.block_gradients(f, x, 4), jax.grad(f)(x), rtol=1e-5,
                             atol=1e-6)
  optimum = np.linalg.lstsq(np.asarray(a), np.asarray(b), rcond=None)[0]
  bcd = asynchrony.block_coordinate_descent(a, b, jnp.zeros(8), num_blocks=4, num_sweeps=200)
  np.testing.assert_allclose(bcd, optimum, atol=1e-4)
  gd = asynchrony.coordinate_parallel_gd(f, jnp.zeros(8), learning_rate=0.5, num_blocks=2,
                                         num_steps=300)
  np.testing.assert_allclose(gd, optimum, atol=1e-3)
  with pytest.raises(ArgumentError, match="num_blocks: 3 does not divide"):
    asynchrony.block_gradients(f, x, 3)


assert os.environ.get("XLA_FLAGS", "").count("device_count")  # 8 fake devices (conftest)
