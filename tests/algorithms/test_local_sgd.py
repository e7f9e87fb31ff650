"""The local SGD family: exact equivalences, locality of state, equal numbers on devices."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from helpers import LR, assert_resumes_bit_exactly, regression_data, run_algorithm, sgd
from helpers import assert_same as _same
from helpers import linear_regression_loss as loss
from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.extrapolation import AdamDirection, FilterNoise, GradientNoise, PastGradient
from jaxdist.algorithms.local_sgd import (
  Hierarchical,
  LocalSGD,
  LocalStepsWarmup,
  Periodic,
  PostLocal,
)
from jaxdist.algorithms.local_sgd.sign import bits_per_sign_message
from jaxdist.errors import ArgumentError


def _trace(state):
  return optax.tree_utils.tree_get(state.opt_state, "trace")


def _grads(params, batch):
  """Every worker's gradient at its own parameters (per-worker leaves) or at shared ones."""
  grad = jax.grad(lambda p, b: loss(p, {}, b, None)[0])
  shared = np.ndim(params["b"]) == 0
  return jax.vmap(grad, in_axes=(None if shared else 0, 0))(params, batch)


def test_defaults_are_plain_sgd():
  """No hidden momentum, weight decay or schedule: one local step is x - lr * g."""
  batches, params = regression_data(4, steps=1)
  state, _ = run_algorithm(jaxdist.local_sgd(loss, learning_rate=LR, local_steps=2), params,
                           batches)
  grads = _grads(params, batches_at(batches, 0))
  expected = jax.tree.map(lambda x, g: np.asarray(x) - LR * np.asarray(g), params, grads)
  _same(state.params, expected, 1e-6)


def batches_at(batches, t):
  return jax.tree.map(lambda b: b[t], batches)


def test_local_sgd_with_one_local_step_is_minibatch_sgd():
  """H=1: averaging the models after every Nesterov step equals averaging the gradients
  ([Lin22] ch. 2), though the momentum buffers stay local; float64 makes it sharp."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=20, dtype=np.float64)
    local = jaxdist.local_sgd(loss, sgd(), learning_rate=LR, local_steps=1)
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    local_state, _ = run_algorithm(local, params, batches)
    minibatch_state, _ = run_algorithm(minibatch, params, batches)
    assert minibatch_state.params["w"].dtype == jnp.float64
    _same(local_state.params, minibatch_state.params, 1e-13)
    local_trace = _trace(local_state)["w"]
    assert np.ptp(np.asarray(local_trace), axis=0).max() > 1e-3  # local buffers differ ...
    np.testing.assert_allclose(local_trace.mean(0), _trace(minibatch_state)["w"],
                               rtol=1e-12)  # ... and their mean is the global buffer


def test_local_sgd_averages_only_parameters_every_h_steps():
  batches, params = regression_data(4, steps=6)
  state, metrics = run_algorithm(jaxdist.local_sgd(loss, sgd(), learning_rate=LR, local_steps=3),
                                 params, batches)
  assert int(state.step) == 6
  np.testing.assert_array_equal(state.params["w"], np.broadcast_to(state.params["w"][0], (4, 5)))
  assert np.ptp(np.asarray(_trace(state)["w"]), axis=0).max() > 1e-3
  # d = 6 fp32 numbers, sent at steps 3 and 6
  assert list(metrics["comm/bits_sent"]) == [0, 0, 32 * 6, 0, 0, 32 * 6]
  assert list(metrics["comm/rounds"]) == [0, 0, 1, 0, 0, 1]


def test_post_local_sgd_is_minibatch_sgd_before_the_switch():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=10, dtype=np.float64)
    post = jaxdist.post_local_sgd(loss, sgd(), learning_rate=LR, switch_step=6, local_steps=4)
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    first = jax.tree.map(lambda b: b[:6], batches)
    early_post, metrics = run_algorithm(post, params, first)
    _same(early_post.params, run_algorithm(minibatch, params, first)[0].params, 1e-13)
    assert list(metrics["comm/rounds"]) == [1] * 6
    late, metrics = run_algorithm(post, params, batches)
    assert list(metrics["comm/rounds"][6:]) == [0, 0, 0, 1]
    assert np.ptp(np.asarray(late.params["w"]), axis=0).max() == 0  # just averaged at step 10
    mid, _ = run_algorithm(post, params, jax.tree.map(lambda b: b[:8], batches))
    assert np.ptp(np.asarray(mid.params["w"]), axis=0).max() > 1e-4  # local steps in between


def test_averaging_schedules():
  t = jnp.arange(1, 13)
  np.testing.assert_array_equal(Periodic(3).level(t), [0, 0, 1] * 4)
  np.testing.assert_array_equal(Periodic(3, start=2).level(t), [0, 0, 0, 0, 1, 0, 0, 1, 0, 0,
                                                                1, 0])
  hierarchical = Hierarchical(2, 3)
  np.testing.assert_array_equal(hierarchical.level(t), [0, 1, 0, 1, 0, 2] * 2)
  post_local = PostLocal(3, 4)
  np.testing.assert_array_equal(post_local.level(t), [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0])


def test_hierarchical_local_sgd_degenerates_to_local_and_minibatch_sgd():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=12, dtype=np.float64)
    local = jaxdist.local_sgd(loss, sgd(), learning_rate=LR, local_steps=3)
    local_state, _ = run_algorithm(local, params, batches)
    hierarchical = functools.partial(jaxdist.hierarchical_local_sgd, loss, sgd(),
                                     learning_rate=LR)
    one_node = hierarchical(local_steps=3, block_steps=2)
    _same(run_algorithm(one_node, params, batches, grid=(1, 8))[0].params, local_state.params,
          1e-13)
    one_block = hierarchical(local_steps=3, block_steps=1)
    _same(run_algorithm(one_block, params, batches, grid=(4, 2))[0].params, local_state.params,
          1e-13)
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    every_step = hierarchical(local_steps=1, block_steps=1)
    _same(run_algorithm(every_step, params, batches, grid=(2, 4))[0].params,
          run_algorithm(minibatch, params, batches)[0].params, 1e-13)


def test_hierarchical_local_sgd_averages_within_nodes_then_over_all():
  batches, params = regression_data(8, steps=4, dtype=np.float32)
  algorithm = jaxdist.hierarchical_local_sgd(loss, sgd(), learning_rate=LR, local_steps=2,
                                             block_steps=2)
  state, _ = run_algorithm(algorithm, params, jax.tree.map(lambda b: b[:2], batches),
                           grid=(2, 4))
  nodes = np.asarray(state.params["w"])
  assert nodes.shape == (2, 4, 5)
  assert np.ptp(nodes, axis=1).max() == 0 and np.ptp(nodes, axis=0).max() > 1e-4
  state, metrics = run_algorithm(algorithm, params, batches, grid=(2, 4))
  assert np.ptp(np.asarray(state.params["w"]).reshape(8, 5), axis=0).max() == 0
  assert list(metrics["comm/rounds"]) == [0, 0, 0, 1]
  assert list(metrics["comm/bits_sent"]) == [0, 32 * 6, 0, 32 * 6]


def test_global_momentum_zero_is_local_sgd_and_positive_changes_the_average():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=9, dtype=np.float64)
    build = functools.partial(jaxdist.local_sgd, loss, sgd(), learning_rate=LR, local_steps=3)
    plain = run_algorithm(build(), params, batches)[0]
    zero, blocked = build(global_momentum=0.0), build(global_momentum=0.5)
    assert blocked.init(params, {}, None).averaging.anchor is not None
    _same(run_algorithm(zero, params, batches)[0].params, plain.params, 1e-13)
    state = run_algorithm(blocked, params, batches)[0]
    assert np.abs(np.asarray(state.params["w"] - plain.params["w"])).max() > 1e-4
    _same(state.params, state.averaging.anchor, 0)  # the anchor is the latest global model


def test_sign_compression_with_error_feedback():
  """Alg. 9/10: local steps move by lr*sign(direction); each worker sends sign(delta) and
  ||delta||_1/d per tensor. With error feedback, anchor - mean(e) moves exactly like the
  uncompressed average: anchor' - mean(e') = mean_k(x_k) - mean(e)."""
  with jax.enable_x64(True):
    batches, params = regression_data(4, steps=4, dtype=np.float64)
    algorithm = jaxdist.sign_sgd(loss, sgd(0.0), learning_rate=LR, local_steps=2,
                                 error_feedback=True)
    before, _ = run_algorithm(algorithm, params, jax.tree.map(lambda b: b[:3], batches))
    after, metrics = run_algorithm(algorithm, params, batches)
    before = jax.tree.map(np.asarray, before)
    grads = jax.tree.map(np.asarray, _grads(before.params, batches_at(batches, 3)))
    local = jax.tree.map(lambda x, g: x - LR * np.sign(g), before.params, grads)  # by hand
    assert metrics["comm/bits_sent"][3] == bits_per_sign_message(params) == 5 + 32 + 1 + 32
    averaging = before.averaging
    delta = jax.tree.map(lambda a, x, e: a - x + e, averaging.anchor, local, averaging.error)
    sent = jax.tree.map(lambda d: np.sign(d) * np.mean(np.abs(d), axis=tuple(
        range(1, np.ndim(d))), keepdims=True), delta)
    _same(after.params, jax.tree.map(lambda a, s: a - s.mean(0), averaging.anchor, sent), 1e-12)
    _same(after.averaging.error, jax.tree.map(np.subtract, delta, sent), 1e-12)
    _same(jax.tree.map(lambda a, e: a - np.asarray(e).mean(0), after.averaging.anchor,
                       after.averaging.error),
          jax.tree.map(lambda x, e: (x - e).mean(0), local, averaging.error), 1e-12)


def test_extrapolation_with_zero_rate_is_minibatch_sgd():
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=8, dtype=np.float64)
    extrap = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR,
                                   extrapolation=PastGradient(0.0))
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    _same(run_algorithm(extrap, params, batches)[0].params,
          run_algorithm(minibatch, params, batches)[0].params, 1e-13)


def test_extrap_sgd_takes_gradients_at_the_previous_local_gradient():
  """Alg. 1: no extrapolation at t=0; then worker k's gradient is taken at
  x - (lr/K) * (its previous local gradient)."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=2, dtype=np.float64)
    extrap = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR, extrapolation=PastGradient())
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    first = jax.tree.map(lambda b: b[:1], batches)
    after_one, _ = run_algorithm(extrap, params, first)
    _same(after_one.params, run_algorithm(minibatch, params, first)[0].params, 1e-14)
    _same(after_one.extrapolation.past_gradient, _grads(params, batches_at(batches, 0)), 1e-14)
    point = jax.tree.map(lambda x, g: np.asarray(x) - LR / 8 * np.asarray(g), after_one.params,
                         after_one.extrapolation.past_gradient)
    expected = _grads(point, batches_at(batches, 1))
    after_two, _ = run_algorithm(extrap, params, batches)
    _same(after_two.extrapolation.past_gradient, expected, 1e-13)


ADAM = functools.partial(jaxdist.optim.adam, weight_decay=1e-3, eps=1e-6)
VARIANTS = {
    "minibatch_sgd": lambda tx: jaxdist.minibatch_sgd(loss, tx, learning_rate=LR),
    "local_sgd": lambda tx: jaxdist.local_sgd(loss, tx, learning_rate=LR, local_steps=3),
    "hybrid_momentum": lambda tx: jaxdist.local_sgd(loss, tx, learning_rate=LR, local_steps=3,
                                                    global_momentum=0.3),
    "post_local_sgd": lambda tx: jaxdist.post_local_sgd(loss, tx, learning_rate=LR,
                                                        switch_step=3, local_steps=2),
    "hierarchical": lambda tx: jaxdist.hierarchical_local_sgd(loss, tx, learning_rate=LR,
                                                              local_steps=2, block_steps=2),
    "sign": lambda tx: jaxdist.sign_sgd(loss, tx, learning_rate=LR, local_steps=2,
                                        switch_step=2),
    "ef_sign": lambda tx: jaxdist.sign_sgd(loss, tx, learning_rate=LR, local_steps=2,
                                           error_feedback=True),
    "extrap_sgd": lambda tx: jaxdist.minibatch_sgd(loss, tx, learning_rate=LR,
                                                   extrapolation=PastGradient()),
    "extrap_post_local": lambda tx: jaxdist.post_local_sgd(
        loss, tx, learning_rate=LR, switch_step=3, local_steps=2, extrapolation=PastGradient()),
    "gradient_noise": lambda tx: jaxdist.minibatch_sgd(loss, tx, learning_rate=LR,
                                                       extrapolation=GradientNoise()),
    "gaussian": lambda tx: jaxdist.minibatch_sgd(loss, tx, learning_rate=LR,
                                                 extrapolation=FilterNoise()),
    "smoothout": lambda tx: jaxdist.minibatch_sgd(
        loss, tx, learning_rate=LR, extrapolation=FilterNoise(gaussian=False, shared=True)),
    "extrap_adam": lambda tx: jaxdist.minibatch_sgd(loss, ADAM, learning_rate=LR,
                                                    extrapolation=AdamDirection()),
}


NEW_VARIANTS = {
    "h_warmup": lambda tx: jaxdist.local_sgd(loss, tx, learning_rate=LR, local_steps=4,
                                             warmup_steps=3),
    "torch_averager": lambda tx: jaxdist.local_sgd(loss, tx, learning_rate=LR, local_steps=2,
                                                   average_start=2, average_offset=1),
    "post_local_grad_allreduce": lambda tx: jaxdist.post_local_sgd(
        loss, tx, learning_rate=LR, switch_step=2, local_steps=3,
        post_local_gradient_allreduce=True),
    "hierarchical_switch": lambda tx: jaxdist.hierarchical_local_sgd(
        loss, tx, learning_rate=LR, local_steps=2, block_steps=2, switch_step=2),
    "sign_majority": lambda tx: jaxdist.sign_sgd(loss, tx, learning_rate=LR, local_steps=2,
                                                 majority_vote=True),
    "ef_sign_sgd": lambda tx: jaxdist.ef_sign_sgd(loss, tx, learning_rate=LR),
    "nn_lamb_linf_trust_ratios": lambda tx: jaxdist.minibatch_sgd(
        loss, functools.partial(jaxdist.optim.lamb, variant="nn_lamb", trust_norm="linf",
                                weight_decay=1e-3), learning_rate=LR, log_trust_ratios=True),
    "neelakantan": lambda tx: jaxdist.minibatch_sgd(
        loss, jaxdist.optim.with_gradient_noise(tx, eta=1e-3), learning_rate=LR),
    "lars_alg15": lambda tx: jaxdist.minibatch_sgd(
        loss, functools.partial(jaxdist.optim.lars, lars_momentum="ema_normalized",
                                weight_decay=1e-3), learning_rate=LR),
}
ON_NODES = ("hierarchical", "hierarchical_switch", "post_local_grad_allreduce")
VARIANTS.update(NEW_VARIANTS)


@pytest.mark.parametrize("variant, num_workers", [
    (v, n) for v in VARIANTS for n in (8, 16) if n == 8 or v not in NEW_VARIANTS])
def test_simulated_and_shard_map_give_the_same_numbers(variant, num_workers):
  # A sign is discontinuous: a rounding difference in a mean can flip the sign of a coordinate
  # near zero a few steps later, so the sign variants are compared over fewer steps.
  batches, params = regression_data(num_workers, steps=4 if "sign" in variant else 7)
  algorithm = VARIANTS[variant](sgd(weight_decay=1e-3))
  grid = (4, num_workers // 4) if variant in ON_NODES else None
  results = [run_algorithm(algorithm, params, batches, grid=grid, backend=backend)
             for backend in ("simulated", "shard_map")]
  (sim, sim_metrics), (dist, dist_metrics) = results
  assert jax.tree.leaves(dist.params)[0].sharding.mesh.size == 8
  chex.assert_trees_all_close(sim, dist, rtol=2e-5, atol=2e-6)
  chex.assert_trees_all_close(sim_metrics, dist_metrics, rtol=2e-5, atol=2e-6)


def test_local_sgd_keeps_batchnorm_statistics_per_worker():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.BatchNorm(use_running_average=not train)(nn.Conv(4, (3, 3))(x))
      return nn.Dense(10)(x.reshape(x.shape[0], -1))

  model = jaxdist.models.from_flax(Net(), np.zeros((1, 8, 8, 1), np.float32))
  params, model_state = model.init(jax.random.PRNGKey(0))

  def bn_loss(params, model_state, batch, rng):
    logits, model_state = model.apply(params, model_state, batch["x"], True)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    return value, (model_state, {"loss": value})

  rng = np.random.default_rng(0)
  batches = {"x": rng.normal(size=(2, 4, 8, 8, 8, 1)).astype(np.float32),
             "y": rng.integers(0, 10, size=(2, 4, 8))}
  algorithm = LocalSGD(bn_loss, sgd(), LR, schedule=Periodic(2))
  state, _ = run_algorithm(algorithm, params, batches, model_state=model_state)
  means = jax.tree.leaves(state.model_state)[0]
  assert np.ptp(np.asarray(means), axis=0).max() > 1e-4  # each worker's own statistics
  first_kernel = jax.tree.leaves(state.params)[0]
  np.testing.assert_array_equal(first_kernel, np.broadcast_to(first_kernel[0], first_kernel.shape))


def test_message_sizes():
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4, jnp.float16)}
  assert bits_per_model(params) == 12 * 32 + 4 * 16
  assert bits_per_sign_message(params) == (12 + 32) + (4 + 32)


@pytest.mark.parametrize("build, message", [
    (lambda: jaxdist.local_sgd(loss, learning_rate=LR, local_steps=0),
     r"local_steps: must be >= 1, got 0 \(allowed: >= 1\)"),
    (lambda: jaxdist.local_sgd(loss, learning_rate=LR, global_momentum=1.5),
     r"global_momentum: 1.5 is not a momentum"),
    (lambda: jaxdist.local_sgd(loss, learning_rate=LR, extrapolation="lookahead"),
     r"extrapolation: 'lookahead' is not an extrapolation"),
    (lambda: jaxdist.local_sgd(loss, optax.sgd(0.1), learning_rate=0.1),
     r"learning_rate: given twice"),
    (lambda: jaxdist.local_sgd(loss, optax.sgd(0.1), global_momentum=0.5),
     r"learning_rate: global momentum needs the learning rate"),
    (lambda: jaxdist.local_sgd(loss), r"learning_rate: missing"),
    (lambda: jaxdist.local_sgd(loss, learning_rate=float("inf")),
     r"learning_rate: inf is not a number"),
    (lambda: jaxdist.local_sgd(loss, "sgd", learning_rate=0.1),
     r"optimizer: 'sgd' is not an optimizer"),
    (lambda: jaxdist.sign_sgd(loss, optax.sgd(0.1)), r"learning_rate: sign compression needs"),
    (lambda: LocalSGD(loss, optax.sgd(0.1), schedule=4), r"schedule: 4 is not an averaging"),
    (lambda: jaxdist.post_local_sgd(loss, learning_rate=LR, switch_step=-1),
     r"switch_step: must be >= 0"),
])
def test_bad_arguments_are_refused_by_name(build, message):
  with pytest.raises(ArgumentError, match=message):
    build()


def test_hierarchical_averaging_needs_a_grid_of_nodes():
  batches, params = regression_data(4, steps=2)
  algorithm = jaxdist.hierarchical_local_sgd(loss, learning_rate=LR, local_steps=2)
  with pytest.raises(ArgumentError, match=r"schedule: Hierarchical averages at 2 levels, but "
                     r"the worker grid has 1 dimension"):
    run_algorithm(algorithm, params, batches)


# -- variants of [Lin22] ch. 2 / App. 11 -----------------------------------------------------


def test_local_steps_warmup_ramps_h_from_one():
  """App. 11.2.5 / L2959: H = 1, 2, 4 in equal stages before H = 8 (exponential); 1, 2, 3 before
  4 (linear); 1 before 4 (constant). Each stage ends with an average."""
  t = jnp.arange(1, 21)
  exponential = [1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1] + [0] * 7 + [1]
  np.testing.assert_array_equal(LocalStepsWarmup(8, 12, "exponential").level(t), exponential)
  linear = [1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]
  np.testing.assert_array_equal(LocalStepsWarmup(4, 6, "linear").level(t), linear)
  constant = [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]
  np.testing.assert_array_equal(LocalStepsWarmup(4, 3, "constant").level(t), constant)
  np.testing.assert_array_equal(LocalStepsWarmup(4, 0).level(t), Periodic(4).level(t))
  with pytest.raises(ArgumentError, match=r"ramp: unknown value 'cubic'"):
    LocalStepsWarmup(4, 8, "cubic")


def test_periodic_offset_is_torchs_periodic_model_averager():
  """torch.distributed.algorithms.model_averaging.averagers.PeriodicModelAverager(period,
  warmup_steps), called after every optimizer step, averages at its call c (from 0) when
  c >= warmup_steps and (c - warmup_steps) % period == 0: after steps warmup + 1, + period."""
  t = np.arange(1, 30)
  for period, warmup in ((3, 5), (4, 0), (1, 2)):
    calls = t - 1
    torch = (calls >= warmup) & ((calls - warmup) % period == 0)
    np.testing.assert_array_equal(Periodic.torch(period, warmup).level(jnp.asarray(t)), torch)
  np.testing.assert_array_equal(Periodic(3, start=2, offset=2).level(jnp.asarray(t[:10])),
                                [0, 0, 0, 1, 0, 0, 1, 0, 0, 1])


def test_post_local_gradient_allreduce_averages_gradients_within_nodes_after_the_switch():
  """After the switch the gradients are averaged within each node every step: with plain SGD
  that is hierarchical local SGD with H = 1 inside the node and H_b = H across (float64, exact);
  with momentum the nodes' models and buffers stay identical inside the node."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=9, dtype=np.float64)
    plain = sgd(momentum=0.0, weight_decay=1e-3)
    post = jaxdist.post_local_sgd(loss, plain, learning_rate=LR, switch_step=3, local_steps=3,
                                  post_local_gradient_allreduce=True)
    hierarchical = jaxdist.hierarchical_local_sgd(loss, plain, learning_rate=LR, local_steps=1,
                                                  block_steps=3, switch_step=3)
    state, metrics = run_algorithm(post, params, batches, grid=(2, 4))
    _same(state.params, run_algorithm(hierarchical, params, batches, grid=(2, 4))[0].params,
          1e-13)
    d = 64 * 6  # gradients every step, and models every 3 steps after the switch
    assert list(metrics["comm/bits_sent"]) == [d] * 5 + [2 * d, d, d, 2 * d]
    assert list(metrics["comm/rounds"]) == [1, 1, 1, 0, 0, 1, 0, 0, 1]
    momentum = jaxdist.post_local_sgd(loss, sgd(), learning_rate=LR, switch_step=2, local_steps=4,
                                      post_local_gradient_allreduce=True)
    state, _ = run_algorithm(momentum, params, jax.tree.map(lambda b: b[:5], batches),
                             grid=(2, 4))
    for tree in (state.params["w"], _trace(state)["w"]):
      tree = np.asarray(tree)
      assert np.ptp(tree, axis=1).max() == 0 and np.ptp(tree, axis=0).max() > 1e-5
  with pytest.raises(ArgumentError, match=r"post_local_gradient_allreduce: .* 1 dimension"):
    run_algorithm(post, params, batches)


def test_hierarchical_local_sgd_behind_a_warmup_switch():
  """mini-batch SGD for switch_step steps (all-reduced gradients), then eq. 11.1."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=7, dtype=np.float64)
    switched = jaxdist.hierarchical_local_sgd(loss, sgd(), learning_rate=LR, local_steps=2,
                                              block_steps=2, switch_step=3)
    first = jax.tree.map(lambda b: b[:3], batches)
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    _same(run_algorithm(switched, params, first, grid=(2, 4))[0].params,
          run_algorithm(minibatch, params, first)[0].params, 1e-13)
    state, metrics = run_algorithm(switched, params, batches, grid=(2, 4))
    assert list(metrics["comm/rounds"]) == [1, 1, 1, 0, 0, 0, 1]
    assert list(metrics["comm/bits_sent"]) == [384, 384, 384, 0, 384, 0, 384]  # float64
    assert np.ptp(np.asarray(state.params["w"]).reshape(8, 5), axis=0).max() == 0


def test_sign_compression_with_majority_vote():
  """Table 11.10's other row: the model moves by the sign most workers sent, scaled by their
  mean ||delta||_1 / d, instead of by the mean of the messages."""
  with jax.enable_x64(True):
    batches, params = regression_data(4, steps=2, dtype=np.float64)
    vote = jaxdist.sign_sgd(loss, sgd(0.0), learning_rate=LR, local_steps=2, majority_vote=True)
    before, _ = run_algorithm(vote, params, jax.tree.map(lambda b: b[:1], batches))
    before = jax.tree.map(np.asarray, before)
    grads = jax.tree.map(np.asarray, _grads(before.params, batches_at(batches, 1)))
    local = jax.tree.map(lambda x, g: x - LR * np.sign(g), before.params, grads)
    anchor = jax.tree.map(np.asarray, params)
    delta = jax.tree.map(lambda a, x: a - x, anchor, local)
    axes = lambda d: tuple(range(1, np.ndim(d)))
    voted = jax.tree.map(lambda a, d: a - np.sign(np.sign(d).sum(0)) * np.mean(
        np.abs(d), axis=axes(d)).mean(0), anchor, delta)
    after, _ = run_algorithm(vote, params, batches)
    _same(after.params, voted, 1e-12)
    averaged = anchor["w"] - (np.sign(delta["w"]) * np.mean(np.abs(delta["w"]), 1, keepdims=True)
                              ).mean(0)
    assert np.abs(averaged - np.asarray(after.params["w"])).max() > 1e-4  # not the mean


def test_centralized_ef_sign_sgd():
  """Each step: p_k = lr g_k + e_k, message sign(p_k) ||p_k||_1/d, x <- x - mean_k(message),
  e_k <- p_k - message. So x - mean(e) takes exactly the uncompressed SGD step."""
  with jax.enable_x64(True):
    batches, params = regression_data(4, steps=3, dtype=np.float64)
    algorithm = jaxdist.ef_sign_sgd(loss, sgd(0.0, weight_decay=0.0), learning_rate=LR)
    before, _ = run_algorithm(algorithm, params, jax.tree.map(lambda b: b[:2], batches))
    after, metrics = run_algorithm(algorithm, params, batches)
    before, after = jax.tree.map(np.asarray, before), jax.tree.map(np.asarray, after)
    grads = jax.tree.map(np.asarray, _grads(before.params, batches_at(batches, 2)))
    p = jax.tree.map(lambda g, e: LR * g + e, grads, before.averaging.error)
    sent = jax.tree.map(lambda d: np.sign(d) * np.mean(np.abs(d), axis=tuple(
        range(1, np.ndim(d))), keepdims=True), p)
    _same(after.params, jax.tree.map(lambda x, s: x[0] - s.mean(0), before.params, sent), 1e-12)
    _same(after.averaging.error, jax.tree.map(np.subtract, p, sent), 1e-12)
    virtual = lambda s: jax.tree.map(lambda x, e: x[0] - e.mean(0), s.params, s.averaging.error)
    _same(virtual(after), jax.tree.map(lambda v, g: v - LR * g.mean(0), virtual(before), grads),
          1e-12)
    assert list(metrics["comm/bits_sent"]) == [bits_per_sign_message(params)] * 3




@pytest.mark.parametrize("variant", ["ef_sign_sgd", "neelakantan"])
def test_new_variants_resume_bit_exactly(variant, tmp_path):
  """Killed after the step-4 checkpoint and rerun: the same state as the unbroken run, for the
  new states (the error memory of centralized EF-signSGD, the noise key). The other new variants
  add none: their schedules are functions of the step, the rest is existing state."""
  rng = np.random.default_rng(0)
  arrays = {"x": rng.normal(size=(64, 5)).astype(np.float32)}
  arrays["y"] = (arrays["x"] @ rng.normal(size=5)).astype(np.float32)
  data = jaxdist.data.sampled(arrays, num_workers=8, batch_size=4)
  grid = (2, 4) if variant in ON_NODES else (8,)
  _, params = regression_data(1, steps=1)

  def run(directory):
    return jaxdist.train(NEW_VARIANTS[variant](sgd(weight_decay=1e-3)), params, data=data,
                         num_steps=8, grid=grid, steps_per_chunk=4, checkpoint_dir=str(directory),
                         checkpoint_every=4, progress=False)

  assert_resumes_bit_exactly(run, tmp_path)
