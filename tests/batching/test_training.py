"""AdaptiveBatchSGD: constant rule = plain SGD, RADADAMP by hand, no recompiling, resume,
simulated = mesh, worker masking."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from jaxdist import batching

N, DIM = 120, 4


def loss_fn(params, model_state, batch, rng):
  del rng
  loss = jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"])**2)
  return loss, (model_state, {"loss": loss})


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, DIM)).astype(np.float32)
  y = (x @ rng.normal(size=DIM) + 0.3 * rng.normal(size=N)).astype(np.float32)
  params = {"w": np.zeros(DIM, np.float32), "b": np.float32(0.0)}
  return {"x": x, "y": y}, params


def trainer(data, rule, **kwargs):
  kwargs = {"learning_rate": 0.05, "micro_batch": 4, **kwargs}
  return batching.AdaptiveBatchSGD(loss_fn, data, rule, **kwargs)


def test_constant_rule_is_plain_minibatch_sgd(problem):
  data, params = problem
  ours = trainer(data, batching.Constant(8), max_batch=8, micro_batch=8)
  state, trace = ours.run(ours.init(params), 10)
  source = jaxdist.data.from_function(
      lambda step, worker: jax.tree.map(lambda a: a[ours.indices(step, 8)], data))
  plain = jaxdist.train(jaxdist.minibatch_sgd(loss_fn, optax.sgd, learning_rate=0.05), params,
                        data=source, num_workers=1, num_steps=10, steps_per_chunk=10,
                        progress=False)
  # one full micro-batch per update: jax.grad of the loss on the batch, to the bit
  assert ours.always_full == 1
  chex.assert_trees_all_equal(state.params, plain.deployed()[0])
  np.testing.assert_array_equal(trace["batch"], 8)


def test_radadamp_batches_follow_algorithm_1_by_hand(problem):
  data, params = problem
  b0, b_max, rho, lam, gamma = 2, 8, 0.7, 1e-3, 0.05
  ours = trainer(data, batching.RadaDamp(b0, b_max, rho=rho, regularization=lam),
                 learning_rate=gamma)
  state, trace = ours.run(ours.init(params), 25)
  w, b = params["w"].astype(np.float64), 0.0
  batch, average, first = b0, None, None
  for k in range(25):
    lr = gamma
    if batch >= b_max:  # Alg. 1 lines 2-5
      lr, batch = gamma * b_max / batch, b_max
    assert trace["batch"][k] == batch, k
    np.testing.assert_allclose(trace["lr"][k], lr, rtol=1e-6)
    idx = ours.indices(k, batch)
    x, y = data["x"][idx], data["y"][idx]
    r = x @ w + b - y
    loss = np.mean(r**2)
    gw, gb = 2 * x.T @ r / batch, 2 * np.mean(r)
    w, b = w - lr * gw, b - lr * gb
    t = loss + lam * (gw @ gw + gb**2)  # line 8
    average = t if k == 0 else rho * average + (1 - rho) * t  # lines 9-12
    first = t if k == 0 else first
    batch = int(np.ceil(b0 * first / average))  # line 13
  assert trace["batch"].max() == b_max and trace["lr"].min() < gamma  # the cap was reached
  np.testing.assert_allclose(state.params["w"], w, rtol=2e-4, atol=1e-5)


def test_growing_batch_compiles_once_and_masks_the_partial_micro_batch(problem):
  data, params = problem
  ours = trainer(data, batching.Linear(1, 64, slope=3.0), micro_batch=5)
  state, trace = ours.run(ours.init(params), 10)
  state, more = ours.run(state, 10)
  assert ours.compile_count() == 1
  batches = np.concatenate([trace["batch"], more["batch"]])
  np.testing.assert_array_equal(batches, np.minimum(1 + np.ceil(3.0 * np.arange(20)), 64))
  # one update at B = 7 (a partial micro-batch): the gradient of the mean over exactly 7
  grads, _loss, _ = batching.accumulation.mean_gradient(
      loss_fn, params, {}, lambda p: jax.tree.map(lambda a: jnp.asarray(a)[p], data), jnp.int32(7),
      micro_batch=5, num_micro=4, rng=jax.random.PRNGKey(0))
  want = jax.grad(lambda p: loss_fn(p, {}, jax.tree.map(lambda a: a[:7], data), None)[0])(params)
  chex.assert_trees_all_close(grads, want, rtol=1e-5)


def test_model_state_is_threaded_through_full_micro_batches_only(problem):
  data, params = problem

  def running_mean(params, model_state, batch, rng):  # a BatchNorm-like running statistic
    loss, _ = loss_fn(params, model_state, batch, rng)
    return loss, ({"mean": 0.5 * model_state["mean"] + 0.5 * jnp.mean(batch["x"])}, {})

  def mean_after(count):
    return batching.accumulation.mean_gradient(
        running_mean, params, {"mean": jnp.float32(0.0)},
        lambda p: jax.tree.map(lambda a: jnp.asarray(a)[p], data), jnp.int32(count),
        micro_batch=4, num_micro=3, rng=jax.random.PRNGKey(0))[2]["mean"]

  x = data["x"]
  want = 0.5 * (0.5 * x[:4].mean()) + 0.5 * x[4:8].mean()
  np.testing.assert_allclose(mean_after(8), want, rtol=1e-6)  # third micro-batch skipped
  np.testing.assert_allclose(mean_after(10), want, rtol=1e-6)  # partial: left as it was
  want = 0.5 * want + 0.5 * x[8:12].mean()
  np.testing.assert_allclose(mean_after(12), want, rtol=1e-6)


def test_resume_is_bit_exact(problem, tmp_path):
  data, params = problem
  rule = batching.RadaDamp(2, 32, rho=0.9)
  unbroken = trainer(data, rule).fit(params, num_epochs=2, updates_per_chunk=10)
  first = trainer(data, rule).fit(params, num_epochs=1, updates_per_chunk=10,
                                  checkpoint_dir=str(tmp_path))
  assert 0 < first["state"].updates < unbroken["state"].updates
  resumed = trainer(data, rule).fit(params, num_epochs=2, updates_per_chunk=10,
                                    checkpoint_dir=str(tmp_path))
  chex.assert_trees_all_equal(resumed["state"], unbroken["state"])
  assert resumed["trace"] == unbroken["trace"]


def test_simulated_equals_mesh_and_one_worker(problem):
  data, params = problem
  rule = batching.GeoDamp(3, factor=2.0, delay=0.1, max_batch=40)
  kwargs = {"num_workers": 8, "examples_per_worker": 5}
  sim_state, sim = trainer(data, rule, **kwargs).run(trainer(data, rule).init(params), 12)
  mesh = trainer(data, rule, layout=jaxdist.Sharded(), **kwargs)
  mesh_state, on_mesh = mesh.run(mesh.init(params), 12)
  np.testing.assert_array_equal(sim["batch"], on_mesh["batch"])
  np.testing.assert_array_equal(sim["workers"], np.minimum(8, np.ceil(sim["batch"] / 5)))
  assert sim["workers"].max() == 8 and sim["workers"].min() == 1
  chex.assert_trees_all_close(sim_state.params, mesh_state.params, rtol=2e-5, atol=1e-6)
  one = trainer(data, rule)  # masked workers: the same as one worker on the whole batch
  one_state, _ = one.run(one.init(params), 12)
  chex.assert_trees_all_close(sim_state.params, one_state.params, rtol=2e-5, atol=1e-6)


def test_oracle_reports_full_loss_cost(problem):
  data, params = problem
  ours = trainer(data, batching.Oracle(2, 64, optimum=0.0))
  _state, trace = ours.run(ours.init(params), 6)
  np.testing.assert_array_equal(trace["full/examples"], N * np.arange(1, 7))
  assert trace["batch"][0] == 2 and trace["batch"][-1] > 2


def test_bad_arguments_are_named(problem):
  data, _ = problem
  with pytest.raises(jaxdist.ArgumentError, match="max_batch"):
    trainer(data, batching.Linear(2))
  with pytest.raises(jaxdist.ArgumentError, match="rule"):
    trainer(data, "radadamp", max_batch=4)
  with pytest.raises(jaxdist.ArgumentError, match="aggregation"):
    trainer(data, batching.Constant(4), max_batch=4, aggregation="sum")
