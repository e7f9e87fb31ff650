"""The worker axis: collectives agree with numpy, simulated and on an 8-device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from helpers import make_workers
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError

BACKENDS = ("simulated", "shard_map")


def _grid(shape, backend):
  return make_workers(shape, backend)


def _run(w, fn, x):
  """Applies a per-worker fn to a [K, ...] array laid out on the grid; returns [K, ...]."""
  stacked = jnp.asarray(x).reshape(w.shape + x.shape[1:])
  out = jax.jit(w.map(fn, in_axes=0, out_axes=0))(stacked)
  return np.asarray(out).reshape(x.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_workers", [8, 16])
def test_mean_index_and_shift_match_numpy(backend, num_workers):
  w = _grid((num_workers,), backend)
  x = np.random.default_rng(0).normal(size=(num_workers, 3)).astype(np.float32)
  np.testing.assert_allclose(_run(w, w.comm.mean, x), np.broadcast_to(x.mean(0), x.shape),
                             atol=1e-6)
  index = _run(w, lambda v: jnp.broadcast_to(w.comm.index(), v.shape).astype(v.dtype), x)
  np.testing.assert_array_equal(index[:, 0], np.arange(num_workers))
  for offset in (1, -1, 3, -5, num_workers + 2):
    np.testing.assert_array_equal(_run(w, lambda v: w.comm.shift(v, offset), x),
                                  np.roll(x, offset, axis=0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 4), (4, 4), (2, 8)])
def test_subgroup_mean_on_a_two_level_grid(backend, shape):
  w = _grid(shape, backend)
  k = shape[0] * shape[1]
  x = np.random.default_rng(1).normal(size=(k, 2)).astype(np.float32)
  nodes = x.reshape(shape + (2,))
  within_node = np.broadcast_to(nodes.mean(1, keepdims=True), nodes.shape).reshape(x.shape)
  np.testing.assert_allclose(_run(w, lambda v: w.comm.mean(v, "workers"), x), within_node,
                             atol=1e-6)
  np.testing.assert_allclose(_run(w, w.comm.mean, x), np.broadcast_to(x.mean(0), x.shape),
                             atol=1e-6)
  flat = _run(w, lambda v: jnp.broadcast_to(w.comm.index(), v.shape).astype(v.dtype), x)
  np.testing.assert_array_equal(flat[:, 0], np.arange(k))
  rolled = np.roll(nodes, 1, axis=1).reshape(x.shape)
  np.testing.assert_array_equal(_run(w, lambda v: w.comm.shift(v, 1, "workers"), x), rolled)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_leaves_stay_single_copies(backend):
  w = _grid((16,), backend)
  per_worker = jnp.arange(16.0)

  def fn(shared, mine):
    return shared + w.comm.mean(mine), mine * 2

  shared, doubled = jax.jit(w.map(fn, in_axes=(None, 0), out_axes=(None, 0)))(1.0, per_worker)
  assert shared.shape == () and float(shared) == 8.5
  np.testing.assert_array_equal(doubled, np.arange(16.0) * 2)


def test_ring_exchange_is_a_collective_permute_not_an_all_gather():
  w = _grid((16,), "shard_map")
  fn = jax.jit(w.map(lambda v: w.comm.shift(v, 1) + w.comm.shift(v, -1), in_axes=0, out_axes=0))
  hlo = fn.lower(jnp.zeros((16, 1000))).compile().as_text()
  assert "collective-permute" in hlo
  assert "all-gather" not in hlo and "all-reduce" not in hlo


def test_the_collectives_reach_the_workers_of_the_mapped_function():
  """Inside `Workers.map` the module-level collectives are this grid's; outside they raise."""
  w = _grid((2, 4), "simulated")
  out = jax.jit(w.map(lambda v: (collectives.mean(v, "workers"), collectives.index(),
                                 jnp.float32(collectives.num_workers())), in_axes=0,
                      out_axes=0))(jnp.arange(8.0).reshape(2, 4))
  np.testing.assert_array_equal(out[0], [[1.5] * 4, [5.5] * 4])
  np.testing.assert_array_equal(out[1], np.arange(8).reshape(2, 4))
  assert float(out[2][0, 0]) == 8
  with pytest.raises(RuntimeError, match="collectives work inside a per-worker function"):
    collectives.mean(jnp.zeros(3))


def test_bad_layouts_are_refused_with_the_argument_named():
  with pytest.raises(ArgumentError, match=r"num_workers: 12 workers .* 8 devices"):
    _grid((12,), "shard_map")
  with pytest.raises(ArgumentError, match=r"num_devices: 16 devices asked for"):
    jaxdist.Sharded(num_devices=16).workers((16,), ("workers",))
  with pytest.raises(ArgumentError, match=r"num_devices: must be >= 0, got -1"):
    jaxdist.Sharded(num_devices=-1)
