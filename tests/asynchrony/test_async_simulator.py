"""The discrete-event parameter-server simulator: serial SGD at zero delay, seeded, resumable."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdist import asynchrony
from jaxdist.errors import ArgumentError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype(np.float32)
Y = (X @ RNG.normal(size=5)).astype(np.float32)
DATA = asynchrony.sampler({"x": X, "y": Y}, batch_size=4, seed=1)
PARAMS = {"w": jnp.zeros(5), "b": jnp.zeros(())}


def loss(params, batch):
  return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)


def simulator(num_workers, compute_time=None, tx=None, **kwargs):
  kwargs.setdefault("reduction", "sum")
  return asynchrony.async_ps(loss, tx or optax.sgd(0.02), DATA, num_workers=num_workers,
                             compute_time=compute_time or asynchrony.Exponential(), **kwargs)


def serial(tx, steps, gradient=None):
  """Plain serial SGD on the same batches, one jitted step per update."""
  gradient = gradient or (lambda p, i: jax.grad(loss)(p, DATA(i, 0)))

  @jax.jit
  def step(params, opt_state, i):
    updates, opt_state = tx.update(gradient(params, i), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = PARAMS, tx.init(PARAMS)
  for i in range(steps):
    params, opt_state = step(params, opt_state, i)
  return params


def assert_equal(a, b):
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))


def test_one_worker_is_serial_sgd_exactly():
  tx = optax.sgd(0.02)
  sim = simulator(1, tx=tx)
  state, trace = sim.run(sim.init(PARAMS, seed=3), 20)
  assert int(state.version) == 20 and (np.asarray(trace["staleness"]) == 0).all()
  assert_equal(state.params, serial(tx, 20))


def test_downpour_push_period_accrues_gradients_at_the_read_point():
  # one worker, two local steps without a local step size: the push is g(x, b_2j) + g(x, b_2j+1)
  sim = simulator(1, push_every=2, fetch_every=2)
  state, _ = sim.run(sim.init(PARAMS), 20)
  grad = jax.grad(loss)
  expected = serial(optax.sgd(0.02), 20, lambda p, i: jax.tree.map(
      lambda a, b: jnp.stack([a, b]).sum(0), grad(p, DATA(2 * i, 0)), grad(p, DATA(2 * i + 1, 0))))
  assert_equal(state.params, expected)


def test_bit_reproducible_from_the_seed_and_resumes_bit_exactly():
  # Adagrad on the server (Dean et al.), Downpour periods, heavy-tailed times
  sim = simulator(6, asynchrony.LogNormal(sigma=1.0), tx=optax.adagrad(0.1), push_every=2,
                  fetch_every=4, local_learning_rate=0.01)
  whole, trace = sim.run(sim.init(PARAMS, seed=5), 20)
  half, first = sim.run(sim.init(PARAMS, seed=5), 10)
  half_again, _ = sim.run(sim.init(PARAMS, seed=5), 10)
  assert_equal(half, half_again)
  resumed, second = sim.run(jax.tree.map(np.asarray, half), 10)  # through host arrays
  assert_equal(resumed, whole)
  assert_equal(jax.tree.map(lambda a, b: np.concatenate([a, b]), first, second), trace)
  other, _ = sim.run(sim.init(PARAMS, seed=6), 20)
  assert not np.array_equal(other.clock, whole.clock)
  assert float(loss(whole.params, {"x": X, "y": Y})) < float(loss(PARAMS, {"x": X, "y": Y}))


def test_staleness_from_the_clock_sum_and_mean():
  constant = simulator(4, asynchrony.Constant(1.0), tx=optax.sgd(0.02))
  state, trace = constant.run(constant.init(PARAMS), 20)
  staleness = np.asarray(trace["staleness"])
  assert (staleness[0] == [0, 1, 2, 3]).all() and (staleness[1:] == 3).all()  # P - 1
  assert np.asarray(trace["clock"])[-1] == 20.0
  # "mean" divides every gradient by P: the same run as "sum" with a P times smaller step
  mean = simulator(4, asynchrony.Constant(1.0), tx=optax.sgd(0.08), reduction="mean")
  np.testing.assert_allclose(mean.run(mean.init(PARAMS), 20)[0].params["w"], state.params["w"],
                             rtol=1e-5)
  exponential = simulator(8, asynchrony.Exponential())
  _, trace = exponential.run(exponential.init(PARAMS), 300)
  summary = asynchrony.staleness_summary(trace)
  assert 6.0 < summary["staleness/mean"] < 8.0 and summary["staleness/max"] > 16


def test_a_straggler_is_stale_and_the_others_are_not_held_up():
  sim = simulator(4, asynchrony.Straggler(asynchrony.Constant(1.0), worker=0, slowdown=10.0))
  _, trace = sim.run(sim.init(PARAMS), 40)
  workers, staleness = np.asarray(trace["workers"]), np.asarray(trace["staleness"])
  straggler = staleness[workers == 0]
  assert straggler.size == 4 and straggler[0] == 27 and (straggler[1:] == 30).all()
  assert (np.bincount(workers[workers >= 0])[1:] >= 30).all()


def test_arguments_are_named():
  with pytest.raises(ArgumentError, match="reduction: unknown value 'avg'"):
    simulator(2, reduction="avg")
  with pytest.raises(ArgumentError, match="fetch_every: 3 is not a multiple of push_every"):
    simulator(2, push_every=2, fetch_every=3)
  with pytest.raises(ArgumentError, match="compute_time"):
    simulator(2, compute_time=1.0)
  with pytest.raises(ArgumentError, match="slowdown: must be >= 1"):
    asynchrony.Straggler(slowdown=0.5)
