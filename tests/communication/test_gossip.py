"""Gossip rounds: W x on every topology and exchange, averages kept, neighbour exchange."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import make_workers
from jaxdist.communication import topology
from jaxdist.communication.gossip import Gossip, consensus_distance, gossip_residual
from jaxdist.errors import ArgumentError

GRAPHS = [("ring", 8), ("torus", 16), ("exponential", 16), ("one_peer_exponential", 16),
          ("bipartite_exponential", 16), ("random_matching", 8), ("social", 32),
          ("complete", 8)]


def _mixer(name, n, exchange, backend, seed=0):
  workers = make_workers((n,), backend)
  gossip = Gossip(topology.make(name, n), exchange, seed)
  mix = jax.jit(workers.map(gossip.mix, in_axes=(0, None), out_axes=0))
  return gossip, workers, mix


def _values(n, seed=0):
  rng = np.random.default_rng(seed)
  return {"w": rng.normal(size=(n, 3, 2)).astype(np.float32),
          "b": rng.normal(size=(n,)).astype(np.float32)}


@pytest.mark.parametrize("backend", ["simulated", "shard_map"])
@pytest.mark.parametrize("name, n", GRAPHS)
def test_gossip_is_the_mixing_matrix_and_keeps_the_average(name, n, backend):
  exchanges = ["dense"] + (["shift"] if name != "random_matching" else [])
  x = _values(n)
  for exchange in exchanges:
    gossip, _, mix = _mixer(name, n, exchange, backend)
    for t in range(3):
      w = gossip.topology.matrix(t, gossip.key)
      mixed = mix(x, jnp.int32(t))
      for key in x:
        expected = np.einsum("ij,j...->i...", w, x[key].astype(np.float64))
        np.testing.assert_allclose(mixed[key], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.mean(mixed[key], 0), np.mean(x[key], 0), atol=1e-5)


@pytest.mark.parametrize("exchange", ["shift", "dense", "mean"])
def test_complete_graph_gossip_is_the_all_reduce_mean(exchange):
  x = _values(8)
  _, _, mix = _mixer("complete", 8, exchange, "shard_map")
  mixed = mix(x, jnp.int32(0))
  for key in x:
    np.testing.assert_allclose(mixed[key], np.broadcast_to(x[key].mean(0), x[key].shape),
                               rtol=1e-6, atol=1e-6)


def test_ring_on_a_mesh_is_neighbour_exchange_not_all_gather():
  """A sparse static graph costs O(degree * d) per worker: collective-permutes only."""
  gossip, _, mix = _mixer("ring", 16, "auto", "shard_map")
  assert gossip.exchange == "shift"
  hlo = mix.lower(_values(16), jnp.int32(0)).as_text()
  assert "collective_permute" in hlo or "collective-permute" in hlo
  assert "all_gather" not in hlo and "all-gather" not in hlo
  assert "all_reduce" not in hlo and "all-reduce" not in hlo


def test_auto_exchange_choices():
  assert Gossip(topology.make("complete", 16)).exchange == "mean"
  assert Gossip(topology.make("one_peer_exponential", 16)).exchange == "shift"
  assert Gossip(topology.make("random_matching", 16)).exchange == "dense"
  social = topology.make("social", 32)  # neighbours at 21 offsets <= 2 * max degree 14
  assert len(social.shifts()) - 1 == 21
  assert Gossip(social).exchange == "shift"


def test_consensus_distance_and_its_estimator():
  """Xi = sqrt(mean ||x_i - x_bar||^2); Theta after one ring round bounds it: Xi <= (2/p) Theta
  with p = 1 - (1 - rho)^2 (Lemma 14.1.1)."""
  n = 32
  workers = make_workers((n,), "simulated")
  graph = topology.make("ring", n)
  gossip = Gossip(graph)
  x = _values(n, seed=4)

  def measure(x):
    mixed = gossip.mix(x, 0)
    return consensus_distance(x), gossip_residual(x, mixed)

  xi, theta = jax.jit(workers.map(measure, in_axes=0, out_axes=None))(x)
  flat = np.concatenate([x["w"].reshape(n, -1), x["b"][:, None]], 1).astype(np.float64)
  expected_xi = np.sqrt(np.mean(np.sum((flat - flat.mean(0))**2, 1)))
  expected_theta = np.sqrt(np.mean(np.sum((graph.matrices[0] @ flat - flat)**2, 1)))
  np.testing.assert_allclose(xi, expected_xi, rtol=1e-5)
  np.testing.assert_allclose(theta, expected_theta, rtol=1e-5)
  p = 1 - (1 - graph.spectral_gap())**2
  assert xi <= 2 / p * theta


@pytest.mark.parametrize("kwargs, message", [
    ({"exchange": "broadcast"}, r"exchange: unknown value 'broadcast'"),
    ({"exchange": "mean", "name": "ring"}, r"exchange: an all-reduce mean is"),
    ({"exchange": "shift", "name": "random_matching"}, r"exchange: a random matching"),
])
def test_bad_exchanges_are_refused(kwargs, message):
  with pytest.raises(ArgumentError, match=message):
    Gossip(topology.make(kwargs.get("name", "complete"), 8), kwargs["exchange"])


def test_a_topology_must_match_the_workers():
  workers = make_workers((8,), "simulated")
  gossip = Gossip(topology.make("ring", 16))
  mix = jax.jit(workers.map(gossip.mix, in_axes=(0, None), out_axes=0))
  with pytest.raises(ArgumentError, match=r"topology: a topology on 16 workers cannot connect a "
                     r"worker grid of 8"):
    mix(_values(8), jnp.int32(0))
