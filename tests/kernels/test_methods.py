"""The partitioned methods: P = 1 is the single solver exactly, simulated and mesh runs agree,
Dis-SMO is the global SMO, the partitioners keep their capacities, communication is counted."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from jaxdist.errors import ArgumentError
from jaxdist.kernels import data, ensemble, krr, krr_family, partition, smo
from jaxdist.kernels import kernels as kernels_lib

KERNEL = kernels_lib.Kernel("gaussian", gamma=0.2)
SVM = dict(kernel=KERNEL, C=1.0, tol=1e-3)
SVMS = ["dis_smo", "cascade", "dc_svm", "dc_filter", "cp_svm", "fcfs_svm", "bkm_svm", "ca_svm",
        "random_assign"]


@pytest.fixture(scope="module")
def problem():
  x, y = data.stand_in("ijcnn", 160, seed=1)
  return data.split(x[:, :6], y, 32)


def test_every_svm_method_with_one_worker_is_the_single_smo(problem):
  x, y, x_test, y_test = problem
  single = smo.solve(KERNEL, jnp.asarray(x), jnp.asarray(y), C=1.0, tol=1e-3)
  expected = np.asarray(smo.decision(KERNEL, jnp.asarray(x), jnp.asarray(y), single.alpha,
                                     single.b, jnp.asarray(x_test)))
  for name in SVMS:
    report = jaxdist.kernels.SVM_METHODS[name](x, y, x_test, y_test, num_workers=1, **SVM)
    np.testing.assert_array_equal(report.predictions, expected, err_msg=name)
    assert report.words == 0 and report.messages == 0, name


def test_every_krr_method_with_one_worker_is_the_single_solve(problem):
  x, y, x_test, y_test = problem
  sigma, lam = 1.5, 1e-3
  alpha = krr.solve(kernels_lib.gaussian(sigma), jnp.asarray(x), jnp.asarray(y), lam)
  expected = np.asarray(krr.predict(kernels_lib.gaussian(sigma), jnp.asarray(x), alpha,
                                    jnp.asarray(x_test)))
  for name in jaxdist.kernels.KRR_METHODS:
    report = krr_family.krr_method(x, y, x_test, y_test, method=name, num_workers=1,
                                   lambdas=(lam,), sigmas=(sigma,))
    np.testing.assert_allclose(report.predictions, expected, rtol=2e-6, atol=2e-6,
                               err_msg=name)
    assert report.extra["oracle"] == (name in krr_family.ORACLES)


@pytest.mark.parametrize("name", ["ca_svm", "dis_smo"])
def test_simulated_and_mesh_give_the_same_svm(problem, name):
  x, y, x_test, y_test = problem
  method = jaxdist.kernels.SVM_METHODS[name]
  simulated = method(x, y, x_test, y_test, num_workers=8, layout=jaxdist.Simulated(), **SVM)
  mesh = method(x, y, x_test, y_test, num_workers=8, layout=jaxdist.Sharded(), **SVM)
  np.testing.assert_allclose(mesh.predictions, simulated.predictions, rtol=1e-5, atol=1e-5)
  assert mesh.score == simulated.score and mesh.partitioner == simulated.partitioner
  if name == "dis_smo":  # the global SMO, its iterations and Table 2.6's count of them
    one = method(x, y, x_test, y_test, num_workers=1, **SVM)
    its = simulated.extra["smo/iterations"]
    assert its == one.extra["smo/iterations"]
    np.testing.assert_allclose(simulated.predictions, one.predictions, rtol=1e-5, atol=1e-5)
    # per iteration two all-reduces of a pair and a broadcast of two samples
    assert simulated.messages == its * (2 * 2 * 7 + 7) + 2 * 7
    assert simulated.words == its * (2 * 2 * 7 * 2 + 7 * 2 * (6 + 2)) + 2 * 7 * len(x_test)


def test_simulated_and_mesh_give_the_same_krr(problem):
  x, y, x_test, y_test = problem
  run = lambda layout: krr_family.krr_method(x, y, x_test, y_test, method="bkrr2",
                                             num_workers=4, lambdas=(1e-3, 1e-2),
                                             sigmas=(1.0,), layout=layout)
  simulated, mesh = run(jaxdist.Simulated()), run(jaxdist.Sharded())
  np.testing.assert_allclose(mesh.extra["grid_mse"], simulated.extra["grid_mse"], rtol=1e-4)


def test_ca_svm_trains_without_communication_and_reports_its_partitioner(problem):
  x, y, x_test, y_test = problem
  ca = ensemble.ca_svm(x, y, x_test, y_test, num_workers=8, **SVM)
  cp = ensemble.cp_svm(x, y, x_test, y_test, num_workers=8, **SVM)
  assert ca.partitioner == "as_placed" and cp.partitioner == "kmeans"
  assert ca.extra["comm/train_words"] == 0 == ca.extra["comm/train_messages"]
  assert ca.words == 2 * 7 * 2 * len(x_test)  # only the argmin reduce per test point
  assert cp.words > ca.words
  assert 0.5 < ca.score <= 1 and 0.5 < cp.score <= 1


@pytest.mark.parametrize("name", ["fcfs", "bkm", "kbalance"])
def test_balanced_partitioners_respect_the_capacity(name):
  x, _ = data.stand_in("covtype", 203, seed=0)
  part = partition.make(name, x, 8, seed=0)
  assert part.sizes.sum() == 203 and part.sizes.max() <= math.ceil(203 / 8)
  assert part.name == name and part.centres.shape == (8, 54)


def test_bkm_moves_only_out_of_overfull_clusters():
  x, _ = data.stand_in("ijcnn", 200, seed=3)
  plain, balanced = partition.make("kmeans", x, 4), partition.make("bkm", x, 4)
  moved = plain.assignment != balanced.assignment
  overfull = np.flatnonzero(plain.sizes > 50)
  assert np.all(np.isin(plain.assignment[moved], overfull))


def test_pack_pads_with_a_mask():
  x = np.arange(10.0)[:, None]
  part = partition.Partition("t", np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0]), np.zeros((2, 1)))
  xp, mask, index = partition.pack(part, x, multiple=4)
  assert xp.shape == (2, 8, 1) and mask.sum(1).tolist() == [4, 6]
  np.testing.assert_array_equal(xp[mask][:, 0], x[index[mask]][:, 0])


def test_bad_arguments_are_named(problem):
  x, y, x_test, y_test = problem
  with pytest.raises(ArgumentError, match=r"partitioner: unknown value 'random' \(allowed: "):
    ensemble.partitioned_svm(x, y, x_test, partitioner="random", **SVM)
  with pytest.raises(ArgumentError, match="num_workers: 3 is not a power of two"):
    jaxdist.kernels.cascade_svm(x, y, x_test, num_workers=3, **SVM)
  with pytest.raises(ArgumentError, match="method: unknown value 'krr'"):
    krr_family.krr_method(x, y, x_test, y_test, method="krr")
