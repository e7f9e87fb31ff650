"""Compression operators ([Lin22] Def. 4.4.1, App. 13.3): contraction, bias, bits, batching."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist.communication.compression import QSGD, Identity, RandomK, Sign, TopK
from jaxdist.errors import ArgumentError

SAMPLES = 2000
SHAPE = (4, 25)  # d = 100, flattened by the operators
D = 100


def _tensor(seed=0, shape=SHAPE):
  """Gaussian entries of varied magnitude, no zeros, no ties."""
  return jax.random.normal(jax.random.key(seed), shape)


def _samples(compressor, x, seed=1):
  """C(x) for SAMPLES independent keys, as float64 numpy `[SAMPLES, *x.shape]`."""
  keys = jax.random.split(jax.random.key(seed), SAMPLES)
  samples = jax.jit(jax.vmap(compressor, in_axes=(None, 0)))(x, keys)
  return np.asarray(samples, np.float64)


def _sq_norm(x, axes=None):
  return np.sum(np.asarray(x, np.float64)**2, axis=axes)


def test_identity_is_exact():
  x = _tensor()
  identity = Identity()
  np.testing.assert_array_equal(identity(x, jax.random.key(0)), x)
  assert identity.delta(D) == 1.0


@pytest.mark.parametrize("fraction, k", [(0.29, 29), (0.001, 1), (1.0, 100)])
def test_top_k_keeps_the_k_largest_magnitudes(fraction, k):
  """k = max(1, floor(a d)) entries survive, exactly the largest |x|, unchanged."""
  x = np.asarray(_tensor()).ravel()
  out = np.asarray(TopK(fraction)(x.reshape(SHAPE), None)).ravel()
  kept = np.flatnonzero(out)
  assert len(kept) == k
  np.testing.assert_array_equal(np.sort(kept), np.sort(np.argsort(-np.abs(x))[:k]))
  np.testing.assert_array_equal(out[kept], x[kept])


@pytest.mark.parametrize("k", [1, 3, 8, 9, 20, 40])
def test_top_k_in_float64_selects_the_float64_largest(k):
  """float64 magnitudes closer than float32 rounding still give the float64 top-k, in both
  selection paths (argmax passes for small k, float32 preselection otherwise)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    ties = 1.0 + rng.permutation(30) * 1e-12  # 30 values equal in float32
    x = rng.permutation(np.concatenate([ties, np.linspace(0.1, 0.9, 370)]))
    x = x * np.where(np.arange(400) % 2, -1.0, 1.0)
    out = np.asarray(jax.jit(TopK(k / 400))(jnp.asarray(x), None))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(np.sort(np.flatnonzero(out)), np.sort(np.argsort(-np.abs(x))[:k]))


@pytest.mark.parametrize("x", [_tensor(), jnp.where(_tensor() > 0, 1.0, -1.0)],
                         ids=["gaussian", "equal_magnitudes"])
def test_top_k_contracts(x):
  """||C(x) - x||^2 <= (1 - k/d) ||x||^2, with equality when all |x_i| are equal."""
  top_k = TopK(0.1)
  error = _sq_norm(top_k(x, None) - x)
  bound = (1 - top_k.delta(D)) * _sq_norm(x)
  assert error <= bound * (1 + 1e-6)
  if np.all(np.abs(x) == 1):
    np.testing.assert_allclose(error, bound, rtol=1e-6)


def test_sign_contracts_with_its_data_dependent_delta():
  """||C(x) - x||^2 = (1 - ||x||_1^2 / (d ||x||_2^2)) ||x||^2 for x without zeros."""
  x = _tensor()
  sign = Sign()
  out = np.asarray(sign(x, None), np.float64)
  x64 = np.asarray(x, np.float64)
  np.testing.assert_allclose(out, np.mean(np.abs(x64)) * np.sign(x64), rtol=1e-6)
  delta = np.sum(np.abs(x64))**2 / (D * _sq_norm(x64))
  np.testing.assert_allclose(_sq_norm(out - x64), (1 - delta) * _sq_norm(x64), rtol=1e-5)
  assert sign.delta(D) is None and sign.is_contraction


@pytest.mark.parametrize("compressor", [
    RandomK(0.1), RandomK(0.5),
    QSGD(2), QSGD(4), QSGD(8)],
                         ids=str)
def test_random_compressors_contract_in_expectation(compressor):
  """E||C(x) - x||^2 <= (1 - delta) ||x||^2 by Monte Carlo; for random_k with equality."""
  x = _tensor()
  errors = _sq_norm(_samples(compressor, x) - np.asarray(x, np.float64), axes=(1, 2))
  bound = (1 - compressor.delta(D)) * _sq_norm(x)
  standard_error = errors.std() / math.sqrt(SAMPLES)
  assert errors.mean() <= bound + 4 * standard_error
  if isinstance(compressor, RandomK):
    assert abs(errors.mean() - bound) <= 4 * standard_error


@pytest.mark.parametrize("compressor, scale", [
    (RandomK(0.1, unbiased=True), 1.0),
    (RandomK(0.1), 0.1),
    (QSGD(2, unbiased=True), 1.0),
    (QSGD(4, unbiased=True), 1.0),
    (QSGD(2), 1 / 6),  # tau = 1 + min(100/4, 10/2)
], ids=str)
def test_mean_of_compressed_tensor(compressor, scale):
  """E[C(x)] = x for the unbiased forms, x k/d for random_k and x/tau for qsgd, to 5 standard
  errors per entry (an entry whose rare outcome never occurred in the samples: to the rule of
  three's 5/SAMPLES chance of it)."""
  x = np.asarray(_tensor(), np.float64)
  samples = _samples(compressor, x)
  standard_error = samples.std(axis=0) / math.sqrt(SAMPLES)
  never_seen = 5 / SAMPLES * np.abs(samples).max()  # times the largest value C(x) takes
  assert np.all(np.abs(samples.mean(axis=0) - scale * x) <=
                5 * standard_error + never_seen + 1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_random_k_sends_k_values(unbiased):
  """Every sample keeps exactly k entries, x itself or x d/k, at positions that vary."""
  x = np.asarray(_tensor(), np.float64)
  samples = _samples(RandomK(0.05, unbiased=unbiased), x)
  kept = samples != 0
  assert np.all(kept.sum(axis=(1, 2)) == 5)
  scale = 20.0 if unbiased else 1.0
  np.testing.assert_allclose(samples[kept], (scale * np.broadcast_to(x, samples.shape))[kept],
                             rtol=1e-6)
  assert np.all(kept.any(axis=0))  # 2000 draws of 5 of 100 cover every position


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_qsgd_values_lie_on_the_levels(bits):
  """|Q(x)| s / ||x||_2 is an integer level in 0..s with s = 2^(b-1), signs those of x."""
  x = _tensor()
  levels = 2**(bits - 1)
  samples = _samples(QSGD(bits, unbiased=True), x)[:100]
  scaled = np.abs(samples) * levels / math.sqrt(_sq_norm(x))
  np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-4)
  assert scaled.max() <= levels + 1e-4
  assert np.all(samples * np.asarray(x) >= 0)


def test_qsgd_of_zero_is_zero():
  for unbiased in (False, True):
    out = QSGD(unbiased=unbiased)(jnp.zeros(SHAPE), jax.random.key(0))
    np.testing.assert_array_equal(out, np.zeros(SHAPE))


@pytest.mark.parametrize("compressor, bits", [
    (Identity(), 32 * 1000),
    (TopK(0.1), (32 + 10) * 100),  # an index of 1000 positions in ceil(log2 1000) = 10 bits
    (TopK(0.1, index_bits=32), 64 * 100),
    (RandomK(0.05), 32 * 50),
    (RandomK(0.05, unbiased=True), 32 * 50),
    (Sign(), 1000 + 32),
    (QSGD(4), 4 * 1000 + 32),
    (QSGD(8, unbiased=True), 8 * 1000 + 32),
], ids=str)
def test_message_bits(compressor, bits):
  assert compressor.message_bits(1000) == bits


def test_small_tensors_send_one_entry():
  assert TopK(0.01).message_bits(5) == 32 + 3
  assert TopK(0.01).message_bits(1) == 32  # one position: no index to send
  assert RandomK(0.01).message_bits(5) == 32


def test_tree_bits_sum_one_message_per_leaf():
  tree = {"w": jax.ShapeDtypeStruct((10, 30), jnp.float32), "b": jnp.zeros(30)}
  assert TopK(0.1).tree_bits(tree) == (32 + 9) * 30 + (32 + 5) * 3
  assert Sign().tree_bits(tree) == 300 + 32 + 30 + 32


def test_delta_and_contraction():
  assert TopK(0.1).delta(1000) == 0.1
  assert RandomK(0.1).delta(1000) == 0.1
  assert QSGD(4).delta(100) == pytest.approx(1 / 2.25)  # 1 + min(100/64, 10/8)
  for compressor in (RandomK(unbiased=True), QSGD(unbiased=True)):
    assert compressor.delta(100) is None and not compressor.is_contraction
  assert all(c.is_contraction for c in (Identity(), TopK(), RandomK(), QSGD()))


@pytest.mark.parametrize("compressor", [
    TopK(0.25), Sign(), RandomK(0.25),
    QSGD(3)], ids=str)
def test_tree_compresses_each_leaf(compressor):
  """Each leaf is compressed alone (top_k keeps k of the small leaf too), with its own key."""
  leaf = _tensor(shape=(3, 4))
  tree = {"big": 100 * leaf, "small": leaf}
  rng = jax.random.key(3)
  out = compressor.tree(tree, rng)
  for i, name in enumerate(sorted(tree)):
    expected = compressor(tree[name], compressor.leaf_key(rng, i))
    np.testing.assert_allclose(out[name], expected, rtol=1e-6)
  if isinstance(compressor, RandomK):  # same entries, independent positions
    assert np.any((out["big"] != 0) != (out["small"] != 0))
  if isinstance(compressor, TopK):
    assert np.count_nonzero(out["small"]) == 3


@pytest.mark.parametrize("make, argument", [
    (lambda: TopK(0.0), "fraction"), (lambda: TopK(1.5), "fraction"),
    (lambda: RandomK(True), "fraction"), (lambda: QSGD(1), "bits"), (lambda: QSGD(4.0), "bits"),
])
def test_bad_arguments_are_named(make, argument):
  with pytest.raises(ArgumentError) as error:
    make()
  assert error.value.argument == argument


@pytest.mark.parametrize("compressor", [
    Identity(), TopK(0.2), RandomK(0.2),
    RandomK(0.2, unbiased=True), Sign(),
    QSGD(), QSGD(unbiased=True)], ids=str)
def test_vmap_over_workers_and_jit(compressor):
  """Vmapped over 8 workers under jit, each worker gets what it would alone; shapes, dtypes and
  scalar leaves are kept."""
  x = _tensor(shape=(8, 3, 5)).astype(jnp.bfloat16)
  keys = jax.random.split(jax.random.key(5), 8)
  batched = jax.jit(jax.vmap(compressor))(x, keys)
  assert batched.shape == x.shape and batched.dtype == jnp.bfloat16
  for worker in range(8):
    np.testing.assert_array_equal(batched[worker], compressor(x[worker], keys[worker]))
  tree = {"scale": jnp.float32(2.0), "w": x[0]}
  out = jax.jit(compressor.tree)(tree, keys[0])
  assert out["scale"].shape == () and out["w"].dtype == jnp.bfloat16
