"""Mini-batch SGD and local SGD: exact equivalences, locality of state, equal numbers on devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from helpers import linear_regression_loss, regression_data, run_algorithm
from jaxdist import algorithms, models, recipes
from jaxdist.algorithms.local_sgd import LocalSGD, MinibatchSGD, bits_per_model
from jaxdist.config import default
from jaxdist.errors import ConfigError
from jaxdist.workers import make_workers


def _sgd(lr=0.05):
  config = default().optim
  config.weight_decay = 1e-2
  return recipes.optimizer(config, optax.constant_schedule(lr))


def _workers(k, backend="simulated"):
  return make_workers((k,), ("workers",), backend)


def test_local_sgd_with_one_local_step_is_minibatch_sgd():
  """H=1: averaging the models after every Nesterov step equals averaging the gradients ([Lin22] ch. 2),
  even though the momentum buffers stay local; float64 makes the comparison sharp."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=20, dtype=np.float64)
    w = _workers(8)
    tx = _sgd()
    local, _ = run_algorithm(LocalSGD(linear_regression_loss, tx, w.comm, 1), w, params, batches)
    minibatch, _ = run_algorithm(MinibatchSGD(linear_regression_loss, tx, w.comm), w, params,
                                 batches)
    for leaf in ("w", "b"):
      assert minibatch.params[leaf].dtype == jnp.float64
      np.testing.assert_allclose(local.params[leaf],
                                 np.broadcast_to(minibatch.params[leaf], local.params[leaf].shape),
                                 rtol=1e-13, atol=1e-13)
    # The local buffers differ, but their mean is the global buffer.
    local_trace = local.opt_state[1][0].trace["w"]
    assert np.ptp(np.asarray(local_trace), axis=0).max() > 1e-3
    np.testing.assert_allclose(local_trace.mean(0), minibatch.opt_state[1][0].trace["w"],
                               rtol=1e-12)


def test_local_sgd_averages_only_parameters_every_h_steps():
  batches, params = regression_data(4, steps=6)
  w = _workers(4)
  state, history = run_algorithm(LocalSGD(linear_regression_loss, _sgd(), w.comm, 3), w, params,
                                 batches)
  assert int(state.step) == 6
  np.testing.assert_array_equal(state.params["w"], np.broadcast_to(state.params["w"][0], (4, 5)))
  assert np.ptp(np.asarray(state.opt_state[1][0].trace["w"]), axis=0).max() > 1e-3
  bits = [float(m["bits_sent"][0]) for m in history]
  assert bits == [0, 0, 32 * 6, 0, 0, 32 * 6]  # d = 6 fp32 numbers, sent at steps 3 and 6


def test_local_sgd_keeps_batchnorm_statistics_per_worker():
  config = default().model
  config.name = "resnet20"
  config.width = 4
  model = models.build(config, (8, 8, 1), 10)
  params, model_state = model.init(jax.random.PRNGKey(0))

  def loss(params, model_state, batch, rng):
    logits, model_state = model.apply(params, model_state, batch["x"], True)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return value, (model_state, {"loss": value})

  rng = np.random.default_rng(0)
  batches = {"x": rng.normal(size=(2, 4, 8, 8, 8, 1)).astype(np.float32),
             "y": rng.integers(0, 10, size=(2, 4, 8))}
  w = _workers(4)
  state, _ = run_algorithm(LocalSGD(loss, _sgd(), w.comm, 2), w, params, batches, model_state)
  means = jax.tree.leaves(state.model_state)[0]
  assert np.ptp(np.asarray(means), axis=0).max() > 1e-4  # each worker's own statistics
  first_kernel = jax.tree.leaves(state.params)[0]
  np.testing.assert_array_equal(first_kernel, np.broadcast_to(first_kernel[0], first_kernel.shape))


@pytest.mark.parametrize("num_workers", [8, 16])
@pytest.mark.parametrize("name", ["minibatch_sgd", "local_sgd"])
def test_simulated_and_shard_map_give_the_same_numbers(name, num_workers):
  batches, params = regression_data(num_workers, steps=8)
  config = ml_collections.ConfigDict({"name": name, "local_steps": 3})
  results = []
  for backend in ("simulated", "shard_map"):
    w = _workers(num_workers, backend)
    algorithm = algorithms.build(config, linear_regression_loss, _sgd(), w.comm)
    state, history = run_algorithm(algorithm, w, params, batches)
    results.append((state, history))
  (sim, sim_history), (dist, dist_history) = results
  assert dist.params["w"].sharding.mesh.shape == {"workers": 8}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6), sim, dist)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6), sim_history,
               dist_history)


def test_bits_per_model_counts_every_parameter():
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4, jnp.float16)}
  assert bits_per_model(params) == 12 * 32 + 4 * 16


def test_unknown_algorithm_and_bad_local_steps_are_refused():
  w = _workers(2)
  with pytest.raises(ConfigError, match=r"algo.name: unknown algorithm 'fedavg'.*'local_sgd'"):
    algorithms.build(ml_collections.ConfigDict({"name": "fedavg", "local_steps": 1}),
                     linear_regression_loss, _sgd(), w.comm)
  with pytest.raises(ConfigError, match=r"algo.local_steps: must be >= 1, got 0"):
    algorithms.build(ml_collections.ConfigDict({"name": "local_sgd", "local_steps": 0}),
                     linear_regression_loss, _sgd(), w.comm)
