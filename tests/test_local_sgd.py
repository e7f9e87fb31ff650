"""The local SGD family: exact equivalences, locality of state, equal numbers on devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import (LR, assert_same as _same, build_algorithm as _build, linear_regression_loss,
                     regression_data, run_algorithm, sgd as _sgd)
from jaxdist import algorithms, models, recipes
from jaxdist.algorithms.local_sgd import (LocalSGD, bits_per_model,
                                          bits_per_sign_message)
from jaxdist.config import default
from jaxdist.errors import ConfigError
from jaxdist.workers import make_workers


def _trace(state):
  return optax.tree_utils.tree_get(state.opt_state, "trace")


def test_local_sgd_with_one_local_step_is_minibatch_sgd():
  """H=1: averaging the models after every Nesterov step equals averaging the gradients
  ([Lin22] ch. 2), though the momentum buffers stay local; float64 makes it sharp."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=20, dtype=np.float64)
    local, w = _build("local_sgd", local_steps=1)
    minibatch, _ = _build("minibatch_sgd")
    local_state, _ = run_algorithm(local, w, params, batches)
    minibatch_state, _ = run_algorithm(minibatch, w, params, batches)
    assert minibatch_state.params["w"].dtype == jnp.float64
    _same(local_state.params, minibatch_state.params, 1e-13)
    local_trace = _trace(local_state)["w"]
    assert np.ptp(np.asarray(local_trace), axis=0).max() > 1e-3  # local buffers differ ...
    np.testing.assert_allclose(local_trace.mean(0), _trace(minibatch_state)["w"],
                               rtol=1e-12)  # ... and their mean is the global buffer


def test_local_sgd_averages_only_parameters_every_h_steps():
  batches, params = regression_data(4, steps=6)
  algorithm, w = _build("local_sgd", 4, local_steps=3)
  state, history = run_algorithm(algorithm, w, params, batches)
  assert int(state.step) == 6
  np.testing.assert_array_equal(state.params["w"], np.broadcast_to(state.params["w"][0], (4, 5)))
  assert np.ptp(np.asarray(_trace(state)["w"]), axis=0).max() > 1e-3
  bits = [float(m["comm/bits_sent"][0]) for m in history]
  assert bits == [0, 0, 32 * 6, 0, 0, 32 * 6]  # d = 6 fp32 numbers, sent at steps 3 and 6
  assert [float(m["comm/rounds"][0]) for m in history] == [0, 0, 1, 0, 0, 1]


def test_post_local_sgd_is_minibatch_sgd_before_the_switch():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=10, dtype=np.float64)
    post, w = _build("post_local_sgd", switch_samples=6 * 32, local_steps=4)
    minibatch, _ = _build("minibatch_sgd")
    assert post.switch_step == 6
    early_post, history = run_algorithm(post, w, params, jax.tree.map(lambda b: b[:6], batches))
    early_minibatch, _ = run_algorithm(minibatch, w, params, jax.tree.map(lambda b: b[:6],
                                                                          batches))
    _same(early_post.params, early_minibatch.params, 1e-13)
    assert [float(m["comm/rounds"][0]) for m in history] == [1] * 6
    late, history = run_algorithm(post, w, params, batches)
    assert [float(m["comm/rounds"][0]) for m in history[6:]] == [0, 0, 0, 1]
    assert np.ptp(np.asarray(late.params["w"]), axis=0).max() == 0  # just averaged at step 10
    mid, _ = run_algorithm(post, w, params, jax.tree.map(lambda b: b[:8], batches))
    assert np.ptp(np.asarray(mid.params["w"]), axis=0).max() > 1e-4  # local steps in between


def test_post_local_switch_defaults_to_the_first_decay():
  config = default()
  config.algo.name = "post_local_sgd"
  config.optim.decay_at = (0.3, 0.8)
  run = algorithms.Run(config, optax.constant_schedule(LR), 64, 1000, total_steps=200)
  assert run.switch_step() == 60
  config.algo.switch_epochs = 2.0
  assert run.switch_step() == 32  # ceil(2 * 1000 / 64)


def test_hierarchical_local_sgd_degenerates_to_local_and_minibatch_sgd():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=12, dtype=np.float64)
    local, w = _build("local_sgd", local_steps=3)
    local_state, _ = run_algorithm(local, w, params, batches)
    one_node, w1 = _build("hierarchical_local_sgd", per_node=8, local_steps=3, block_steps=2)
    _same(run_algorithm(one_node, w1, params, batches)[0].params, local_state.params, 1e-13)
    one_block, wb = _build("hierarchical_local_sgd", per_node=2, local_steps=3, block_steps=1)
    _same(run_algorithm(one_block, wb, params, batches)[0].params, local_state.params, 1e-13)
    minibatch, wm = _build("minibatch_sgd")
    every_step, ws = _build("hierarchical_local_sgd", per_node=4, local_steps=1, block_steps=1)
    _same(run_algorithm(every_step, ws, params, batches)[0].params,
          run_algorithm(minibatch, wm, params, batches)[0].params, 1e-13)


def test_hierarchical_local_sgd_averages_within_nodes_then_over_all():
  batches, params = regression_data(8, steps=4, dtype=np.float32)
  algorithm, w = _build("hierarchical_local_sgd", per_node=4, local_steps=2, block_steps=2)
  assert w.shape == (2, 4)
  state, history = run_algorithm(algorithm, w, params, jax.tree.map(lambda b: b[:2], batches))
  nodes = np.asarray(state.params["w"]).reshape(2, 4, 5)
  assert np.ptp(nodes, axis=1).max() == 0 and np.ptp(nodes, axis=0).max() > 1e-4
  state, history = run_algorithm(algorithm, w, params, batches)
  assert np.ptp(np.asarray(state.params["w"]).reshape(8, 5), axis=0).max() == 0
  assert [float(m["comm/rounds"].ravel()[0]) for m in history] == [0, 0, 0, 1]
  assert [float(m["comm/bits_sent"].ravel()[0]) for m in history] == [0, 32 * 6, 0, 32 * 6]


def test_global_momentum_zero_is_local_sgd_and_positive_changes_the_average():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=9, dtype=np.float64)
    local, w = _build("local_sgd", local_steps=3)
    plain = run_algorithm(local, w, params, batches)[0]
    zero, _ = _build("local_sgd", local_steps=3, global_momentum=0.0)
    blocked, _ = _build("local_sgd", local_steps=3, global_momentum=0.5)
    assert blocked.init(params, {}, None).anchor is not None
    _same(run_algorithm(zero, w, params, batches)[0].params, plain.params, 1e-13)
    state = run_algorithm(blocked, w, params, batches)[0]
    assert np.abs(np.asarray(state.params["w"] - plain.params["w"])).max() > 1e-4
    _same(state.params, state.anchor, 0)  # the anchor is the latest global model


def test_sign_compression_with_error_feedback():
  """Alg. 9/10: local steps move by lr*sign(direction); each worker sends sign(delta) and
  ||delta||_1/d per tensor. With error feedback, anchor - mean(e) moves exactly like the
  uncompressed average: anchor' - mean(e') = mean_k(x_k) - mean(e)."""
  with jax.enable_x64(True):
    batches, params = regression_data(4, steps=5, dtype=np.float64)
    algorithm, w = _build("local_sgd", 4, local_steps=2, compression="ef_sign", tx=_sgd(0.0))
    before, _ = run_algorithm(algorithm, w, params, jax.tree.map(lambda b: b[:3], batches))
    step = jax.jit(w.map(algorithm.step, in_axes=(algorithm.state_axes, 0, None),
                         out_axes=(algorithm.state_axes, 0)))
    batch = jax.tree.map(lambda b: b[3], batches)
    grads = jax.vmap(jax.grad(lambda p, b: linear_regression_loss(p, {}, b, None)[0]))(
        before.params, batch)
    before, grads = jax.tree.map(np.asarray, (before, grads))
    local = jax.tree.map(lambda x, g: x - LR * np.sign(g), before.params, grads)  # by hand
    after, metrics = step(before, batch, jax.random.PRNGKey(0))
    assert float(metrics["comm/bits_sent"][0]) == bits_per_sign_message(params) == 5 + 32 + 1 + 32
    delta = jax.tree.map(lambda a, x, e: a - x + e, before.anchor, local, before.error)
    sent = jax.tree.map(lambda d: np.sign(d) * np.mean(np.abs(d), axis=tuple(
        range(1, np.ndim(d))), keepdims=True), delta)
    _same(after.params, jax.tree.map(lambda a, s: a - s.mean(0), before.anchor, sent), 1e-12)
    _same(after.error, jax.tree.map(np.subtract, delta, sent), 1e-12)
    _same(jax.tree.map(lambda a, e: a - np.asarray(e).mean(0), after.anchor, after.error),
          jax.tree.map(lambda x, e: (x - e).mean(0), local, before.error), 1e-12)


def test_extrapolation_with_zero_rate_is_minibatch_sgd():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=8, dtype=np.float64)
    extrap, w = _build("minibatch_sgd", extrapolation="extrap", extrapolation_scale=0.0)
    minibatch, _ = _build("minibatch_sgd")
    _same(run_algorithm(extrap, w, params, batches)[0].params,
          run_algorithm(minibatch, w, params, batches)[0].params, 1e-13)


def test_extrap_sgd_takes_gradients_at_the_previous_local_gradient():
  """Alg. 1: no extrapolation at t=0; then worker k's gradient is taken at
  x - (lr/K) * (its previous local gradient)."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=2, dtype=np.float64)
    extrap, w = _build("minibatch_sgd", extrapolation="extrap")
    minibatch, _ = _build("minibatch_sgd")
    first = jax.tree.map(lambda b: b[:1], batches)
    after_one, _ = run_algorithm(extrap, w, params, first)
    _same(after_one.params, run_algorithm(minibatch, w, params, first)[0].params, 1e-14)
    grad = jax.vmap(jax.grad(lambda p, b: linear_regression_loss(p, {}, b, None)[0]),
                    in_axes=(None, 0))
    _same(after_one.extrapolation.past_gradient, grad(params, jax.tree.map(lambda b: b[0],
                                                                           batches)), 1e-14)
    point = jax.tree.map(lambda x, g: np.asarray(x) - LR / 8 * np.asarray(g), after_one.params,
                         after_one.extrapolation.past_gradient)
    expected = jax.vmap(jax.grad(lambda p, b: linear_regression_loss(p, {}, b, None)[0]))(
        point, jax.tree.map(lambda b: b[1], batches))
    after_two, _ = run_algorithm(extrap, w, params, batches)
    _same(after_two.extrapolation.past_gradient, expected, 1e-13)


VARIANTS = {
    "minibatch_sgd": ("minibatch_sgd", {}),
    "local_sgd": ("local_sgd", {"local_steps": 3}),
    "hybrid_momentum": ("local_sgd", {"local_steps": 3, "global_momentum": 0.3}),
    "post_local_sgd": ("post_local_sgd", {"local_steps": 2, "switch_samples": 3 * 64}),
    "hierarchical": ("hierarchical_local_sgd", {"local_steps": 2, "block_steps": 2}),
    "sign": ("post_local_sgd", {"local_steps": 2, "compression": "sign", "switch_samples": 128}),
    "ef_sign": ("local_sgd", {"local_steps": 2, "compression": "ef_sign"}),
    "extrap_sgd": ("minibatch_sgd", {"extrapolation": "extrap"}),
    "extrap_post_local": ("post_local_sgd", {"local_steps": 2, "extrapolation": "extrap",
                                             "switch_samples": 3 * 64}),
    "gradient_noise": ("minibatch_sgd", {"extrapolation": "gradient_noise"}),
    "gaussian": ("minibatch_sgd", {"extrapolation": "gaussian"}),
    "smoothout": ("minibatch_sgd", {"extrapolation": "smoothout"}),
    "extrap_adam": ("minibatch_sgd", {"extrapolation": "extrap_adam"}),
}


@pytest.mark.parametrize("num_workers", [8, 16])
@pytest.mark.parametrize("variant", VARIANTS)
def test_simulated_and_shard_map_give_the_same_numbers(variant, num_workers):
  name, algo = VARIANTS[variant]
  # A sign is discontinuous: a rounding difference in a mean can flip the sign of a coordinate
  # near zero a few steps later, so the sign variants are compared over fewer steps.
  batches, params = regression_data(num_workers, steps=4 if "sign" in variant else 7)
  optim = default().optim
  optim.update(optimizer="adam" if variant == "extrap_adam" else "sgd", weight_decay=1e-3)
  tx = recipes.optimizer(optim, optax.constant_schedule(LR))
  per_node = num_workers // 4 if name == "hierarchical_local_sgd" else 0
  results = []
  for backend in ("simulated", "shard_map"):
    algorithm, w = _build(name, num_workers, backend, tx=tx, per_node=per_node, **algo)
    results.append(run_algorithm(algorithm, w, params, batches))
  (sim, sim_history), (dist, dist_history) = results
  assert jax.tree.leaves(dist.params)[0].sharding.mesh.size == 8
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), sim, dist)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               sim_history, dist_history)


def test_local_sgd_keeps_batchnorm_statistics_per_worker():
  config = default().model
  config.update(name="resnet20", width=4)
  model = models.build(config, (8, 8, 1), 10)
  params, model_state = model.init(jax.random.PRNGKey(0))

  def loss(params, model_state, batch, rng):
    logits, model_state = model.apply(params, model_state, batch["x"], True)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return value, (model_state, {"loss": value})

  rng = np.random.default_rng(0)
  batches = {"x": rng.normal(size=(2, 4, 8, 8, 8, 1)).astype(np.float32),
             "y": rng.integers(0, 10, size=(2, 4, 8))}
  w = make_workers((4,), ("workers",), "simulated")
  algorithm = LocalSGD(loss, _sgd(), w.comm, optax.constant_schedule(LR), local_steps=2)
  state, _ = run_algorithm(algorithm, w, params, batches, model_state)
  means = jax.tree.leaves(state.model_state)[0]
  assert np.ptp(np.asarray(means), axis=0).max() > 1e-4  # each worker's own statistics
  first_kernel = jax.tree.leaves(state.params)[0]
  np.testing.assert_array_equal(first_kernel, np.broadcast_to(first_kernel[0], first_kernel.shape))


def test_message_sizes():
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4, jnp.float16)}
  assert bits_per_model(params) == 12 * 32 + 4 * 16
  assert bits_per_sign_message(params) == (12 + 32) + (4 + 32)


@pytest.mark.parametrize("name, fields, per_node, message", [
    ("fedavg", {}, 0, r"algo.name: unknown algorithm 'fedavg'"),
    ("local_sgd", {"local_steps": 0}, 0, r"algo.local_steps: must be >= 1, got 0"),
    ("local_sgd", {"block_steps": 2}, 0, r"algo.block_steps: 2 block steps need hierarchical"),
    ("hierarchical_local_sgd", {}, 0, r"workers.per_node: hierarchical_local_sgd runs on nodes"),
    ("local_sgd", {"compression": "ef_sign", "global_momentum": 0.5}, 0,
     r"algo.global_momentum: global momentum does not combine with sign compression"),
    ("hierarchical_local_sgd", {"compression": "sign"}, 2,
     r"algo.name: hierarchical local SGD averages plainly"),
    ("local_sgd", {"compression": "top_k"}, 0, r"algo.compression: unknown compression 'top_k'"),
    ("minibatch_sgd", {"extrapolation": "lookahead"}, 0,
     r"algo.extrapolation: unknown extrapolation 'lookahead'"),
])
def test_bad_algorithm_settings_are_refused(name, fields, per_node, message):
  with pytest.raises(ConfigError, match=message):
    _build(name, per_node=per_node, **fields)
