"""Imposed staleness, Hogwild! on sparse objectives, CYCLADES, the sparsity statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist import asynchrony
from jaxdist.asynchrony import cyclades
from jaxdist.asynchrony.sparse import example_gradient
from jaxdist.errors import ArgumentError

DATA = asynchrony.random_sparse(300, 60, 4, seed=0, noise=0.05)
SVM = asynchrony.SparseSVM(DATA, regularization=0.01)


def serial_sgd(objective, learning_rate, order, x0=None):
  """Serial SGD on the full vector, through the gradient of f_e(x) in all coordinates."""
  full = jax.jit(jax.grad(lambda x, e: objective.example_loss(x[objective.support(e)[0]], e)))
  x = jnp.zeros(objective.dim) if x0 is None else x0
  for e in order:
    x = x - learning_rate * full(x, e)
  return x


def sampled_examples(state, steps, num_examples):
  keys = [jax.random.fold_in(state.key, j) for j in range(steps)]
  return [jax.random.randint(jax.random.fold_in(k, 0), (), 0, num_examples) for k in keys]


@pytest.mark.parametrize("reads", [asynchrony.WholeVector(), asynchrony.TornReads()],
                         ids=["whole", "torn"])
def test_zero_delay_is_serial_sgd_exactly(reads):
  sgd = asynchrony.StaleSGD(SVM, 0.1, asynchrony.Fixed(0), reads)
  start = sgd.init(jnp.zeros(60), seed=4)
  state, trace = sgd.run(start, 40)
  assert (np.asarray(trace["delay"]) == 0).all()
  expected = serial_sgd(SVM, 0.1, sampled_examples(start, 40, 300))
  assert jnp.array_equal(state.x, expected)


def test_staleness_models_reads_seed_and_resume():
  torn = asynchrony.hogwild(SVM, 0.1, asynchrony.Bounded(6))
  whole = asynchrony.StaleSGD(SVM, 0.1, asynchrony.Bounded(6), asynchrony.WholeVector())
  unbroken, trace = torn.run(torn.init(jnp.zeros(60), seed=1), 200)
  half, _ = torn.run(torn.init(jnp.zeros(60), seed=1), 100)
  resumed, _ = torn.run(jax.tree.map(np.asarray, half), 100)  # through host arrays
  assert jnp.array_equal(unbroken.x, resumed.x) and jnp.array_equal(unbroken.history,
                                                                    resumed.history)
  assert 2.5 < float(np.mean(trace["delay"])) < 3.5  # uniform on 0..6
  other, _ = whole.run(whole.init(jnp.zeros(60), seed=1), 100)
  assert not jnp.array_equal(other.x, half.x)  # torn reads are another model
  fixed = asynchrony.StaleSGD(SVM, 0.1, asynchrony.Fixed(3))
  _, trace = fixed.run(fixed.init(jnp.zeros(60)), 10)
  assert (np.asarray(trace["delay"]) == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]).all()  # capped at j
  drawn = asynchrony.Drawn((0.0, 1.0, 0.0))
  assert (np.asarray(drawn.sample(jax.random.PRNGKey(0), (50,))) == 1).all()


@pytest.mark.parametrize("tau", [1, 4])
def test_critical_step_size_of_the_delayed_quadratic(tau):
  critical = 2 * np.sin(np.pi / (2 * (2 * tau + 1)))
  ends = []
  for factor in (0.95, 1.05):
    sgd = asynchrony.StaleSGD(asynchrony.Quadratic(1.0), factor * critical, asynchrony.Fixed(tau))
    ends.append(abs(float(sgd.run(sgd.init(jnp.ones(1)), 2000)[0].x[0])))
  assert ends[0] < 1e-3 and ends[1] > 1e3


def test_sparsity_statistics_and_the_spread_regulariser():
  data = asynchrony.SparseData(jnp.asarray([[0, 1], [1, 2], [3, 0]]),
                               jnp.ones((3, 2)), jnp.asarray([[True, True], [True, True],
                                                              [True, False]]),
                               jnp.ones(3), 5)
  stats = asynchrony.sparsity(data)
  assert stats == {"omega": 2, "delta": 2 / 3, "rho": 2 / 3}  # example 0 meets itself and 1
  svm = asynchrony.SparseSVM(data, regularization=0.5)
  x = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0])
  margins = (np.asarray(data.values) * np.asarray(x)[np.asarray(data.indices)] *
             np.asarray(data.mask)).sum(1)
  losses = jax.jit(jax.vmap(lambda e: svm.example_loss(x[svm.support(e)[0]], e)))(jnp.arange(3))
  spread = float(np.sum(losses) - np.maximum(1 - margins, 0).sum())
  assert spread == pytest.approx(0.5 * (1 + 4 + 9 + 16))  # lambda ||x||^2 where touched
  grad = example_gradient(svm, x[data.indices[2]], 2)
  assert float(grad[1]) == 0.0  # padding gets no gradient


def test_cyclades_equals_a_serial_order_exactly():
  logistic = asynchrony.SparseLogistic(DATA, regularization=0.01)
  plan = cyclades.schedule(logistic, batch_size=24, num_cores=4, num_batches=6, seed=2)
  incidence = DATA.incidence()
  for cores in plan:  # no coordinate touched by two cores within a batch
    touched = [set(incidence[c[c >= 0]].indices) for c in cores]
    assert all(not (touched[a] & touched[b]) for a in range(4) for b in range(a + 1, 4))
  x = asynchrony.Cyclades(logistic, 0.5).run(jnp.zeros(60), plan)
  assert jnp.array_equal(x, serial_sgd(logistic, 0.5, cyclades.serial_order(plan)))
  assert cyclades.serial_order(plan).size == 6 * 24


def test_arguments_are_named():
  with pytest.raises(ArgumentError, match="staleness"):
    asynchrony.StaleSGD(SVM, 0.1, 3)
  with pytest.raises(ArgumentError, match="x0: shape"):
    asynchrony.StaleSGD(SVM, 0.1, asynchrony.Fixed(1)).init(jnp.zeros(3))
  with pytest.raises(ArgumentError, match="probabilities"):
    asynchrony.Drawn((-1.0, 2.0))
  with pytest.raises(ArgumentError, match="nonzeros: 9 is more than dim"):
    asynchrony.random_sparse(5, 4, 9)
