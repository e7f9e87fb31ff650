"""The local solvers against scikit-learn: kernels, SMO vs SVC, KRR vs KernelRidge (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.svm import SVC

from jaxdist.errors import ArgumentError
from jaxdist.kernels import krr, smo
from jaxdist.kernels.kernels import Kernel, block_diagonal_error, gaussian, gram, matvec

SKLEARN = {"linear": "linear", "polynomial": "poly", "gaussian": "rbf", "sigmoid": "sigmoid"}


def problem(m=160, seed=0):
  x, y = make_classification(m, 5, n_informative=4, n_redundant=0, random_state=seed)
  return x / 2, 2.0 * y - 1


@pytest.mark.parametrize("name", list(SKLEARN))
def test_kernels_are_table_2_1_as_sklearn_has_them_and_blocks_change_nothing(name):
  x, _ = problem(40)
  params = dict(gamma=0.3, coef0=0.5, degree=2)
  kernel = Kernel(name, **params)
  with jax.enable_x64(True):
    ours = np.asarray(gram(kernel, jnp.asarray(x), jnp.asarray(x[:25]), block=7))
    extra = {"linear": {}, "poly": params, "rbf": dict(gamma=0.3),
             "sigmoid": dict(gamma=0.3, coef0=0.5)}[SKLEARN[name]]
    np.testing.assert_allclose(ours, pairwise_kernels(x, x[:25], metric=SKLEARN[name],
                                                      **extra), rtol=1e-12, atol=1e-12)
    v = np.arange(25.0)
    np.testing.assert_allclose(np.asarray(matvec(kernel, jnp.asarray(x), jnp.asarray(x[:25]),
                                                    jnp.asarray(v), block=9)),
                                  np.asarray(matvec(kernel, jnp.asarray(x), jnp.asarray(x[:25]),
                                                    jnp.asarray(v), block=40)), rtol=1e-13)


@pytest.mark.parametrize("name,gamma", [("gaussian", 0.5), ("linear", 1.0)])
def test_smo_matches_svc_dual_objective_and_predictions(name, gamma):
  x, y = problem()
  kernel = Kernel(name, gamma=gamma)
  with jax.enable_x64(True):
    result = jax.jit(lambda x, y: smo.solve(kernel, x, y, C=1.0, tol=1e-4))(x, y)
    svc = SVC(C=1.0, kernel=SKLEARN[name], gamma=gamma, tol=1e-4).fit(x, y)
    alpha = np.zeros(len(y))
    alpha[svc.support_] = np.abs(svc.dual_coef_[0])
    extra = dict(gamma=gamma) if name == "gaussian" else {}
    q = pairwise_kernels(x, x, metric=SKLEARN[name], **extra) * np.outer(y, y)
    theirs = alpha.sum() - 0.5 * alpha @ q @ alpha
    ours = float(smo.dual_objective(result, jnp.asarray(y)))
    assert float(result.gap) <= 1e-4
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(ours, np.sum(result.alpha) - 0.5 * result.alpha @ q @ result.alpha,
                               rtol=1e-12)
    decision = np.asarray(smo.decision(kernel, x, y, result.alpha, result.b, x))
    np.testing.assert_allclose(decision, svc.decision_function(x), atol=2e-3)
    assert abs(float(np.dot(result.alpha, y))) < 1e-10  # the equality constraint
    assert np.all((result.alpha >= 0) & (result.alpha <= 1.0))


def test_smo_ignores_padding_rows():
  x, y = problem(60)
  with jax.enable_x64(True):
    kernel = Kernel("gaussian", gamma=0.5)
    plain = smo.solve(kernel, jnp.asarray(x), jnp.asarray(y))
    padded_x = np.concatenate([x, np.full((4, 5), 9.0)])
    padded_y = np.concatenate([y, np.ones(4)])
    mask = np.arange(64) < 60
    padded = smo.solve(kernel, jnp.asarray(padded_x), jnp.asarray(padded_y), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(padded.alpha[:60]), np.asarray(plain.alpha))
    assert np.all(np.asarray(padded.alpha[60:]) == 0)


def test_krr_matches_kernel_ridge_with_the_local_m():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(120, 4))
  y = np.sin(x).sum(1)
  with jax.enable_x64(True):
    sigma, lam = 1.3, 1e-3
    alpha = krr.solve(gaussian(sigma), jnp.asarray(x), jnp.asarray(y), lam)
    theirs = KernelRidge(alpha=lam * 120, kernel="rbf", gamma=1 / (2 * sigma**2)).fit(x, y)
    np.testing.assert_allclose(np.asarray(alpha), theirs.dual_coef_, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.asarray(krr.predict(gaussian(sigma), jnp.asarray(x), alpha,
                                                      jnp.asarray(x[:30]))),
                               theirs.predict(x[:30]), rtol=1e-10, atol=1e-11)


def test_block_diagonal_error_is_zero_for_the_clusters_and_large_for_a_random_split():
  rng = np.random.default_rng(0)
  centres = np.eye(4) * 20
  labels = np.repeat(np.arange(4), 30)
  x = centres[labels] + rng.normal(size=(120, 4))
  kernel = Kernel("gaussian", gamma=0.5)
  clustered = float(block_diagonal_error(kernel, jnp.asarray(x), jnp.asarray(labels), block=16))
  random = float(block_diagonal_error(kernel, jnp.asarray(x),
                                      jnp.asarray(rng.permutation(labels)), block=16))
  assert clustered < 1e-6 < 0.1 < random


def test_bad_kernel_arguments_are_named():
  with pytest.raises(ArgumentError, match=r"kernel: unknown value 'rbf' \(allowed: 'linear'"):
    Kernel("rbf")
  with pytest.raises(ArgumentError, match="gamma: must be >= 0"):
    Kernel("gaussian", gamma=-1.0)
