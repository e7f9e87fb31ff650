"""Topologies: the thesis's spectral gaps, valid mixing matrices, clear errors."""

import jax
import numpy as np
import pytest

from jaxdist.communication import topology
from jaxdist.errors import ArgumentError


@pytest.mark.parametrize("name, gaps", [
    ("ring", {4: 0.6667, 16: 0.0507, 36: 0.0101, 64: 0.0032}),
    ("torus", {4: 0.6667, 16: 0.4, 36: 0.2, 64: 0.1172}),
])
def test_spectral_gaps_of_table_4_2(name, gaps):
  """[Lin22] Table 4.2 (ring 0.67/0.05/0.01/0.003, torus 0.67/0.4/0.2/0.12), to four digits."""
  for n, gap in gaps.items():
    assert round(topology.make(name, n).spectral_gap(), 4) == gap


def test_social_network_gap_and_size():
  social = topology.make("social", 32)
  assert round(social.spectral_gap(), 3) == 0.082
  assert social.max_degree == 14


def test_ring_without_self_loop_in_the_degree_is_periodic():
  """Pitfall 10: with 1/deg weights (self excluded) an even ring never reaches consensus."""
  adjacency = topology.circulant_adjacency(16, [1])
  w = adjacency / 2.0
  assert topology.spectral_gap(w) == pytest.approx(0.0, abs=1e-12)
  assert topology.spectral_gap(topology.max_degree_weights(adjacency)) > 0.05


@pytest.mark.parametrize("name", topology.TOPOLOGIES)
def test_mixing_matrices_are_symmetric_and_doubly_stochastic(name):
  n = 32 if name == "social" else 16
  graph = topology.make(name, n)
  matrices = graph.matrices or [graph.matrix(t, jax.random.PRNGKey(0)) for t in range(5)]
  for w in matrices:
    if name != "directed_exponential":
      np.testing.assert_allclose(w, w.T, atol=1e-15)
    np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-12)
    assert (w >= 0).all()
  if name == "disconnected":  # W = I: no mixing at all
    assert graph.spectral_gap() == 0 and graph.max_degree == 0
  else:
    assert 0 < graph.spectral_gap() <= 1


def test_time_varying_graphs_change_with_the_step():
  one_peer = topology.make("one_peer_exponential", 16)
  assert one_peer.period == 4  # hops 1, 2, 4, 8
  assert not np.array_equal(one_peer.matrix(0), one_peer.matrix(1))
  np.testing.assert_array_equal(one_peer.matrix(1), one_peer.matrix(5))
  assert list(one_peer.degrees.max(1)) == [2, 2, 2, 1]  # hop 8 on 16 workers: one peer
  matching = topology.make("random_matching", 8)
  key = jax.random.PRNGKey(3)
  a, b = matching.matrix(0, key), matching.matrix(1, key)
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, matching.matrix(0, key))
  assert ((a > 0).sum(1) == 2).all()  # itself and one partner


def test_exponential_graph_mixes_fast_and_ring_slowly():
  """T3 ([Lin22] Fig. 5.4): n = 32, x ~ U[0, 10]; gossip error after 60 rounds. (Undirected
  one-peer rounds, w = 1/3 on i - 2^k, i, i + 2^k, are not exact averaging after log2 n rounds
  as the directed pairs (x_i + x_{i+2^k}) / 2 would be, but far ahead of the ring.)"""
  x = np.random.default_rng(0).uniform(0, 10, size=32)

  def error_after(graph, rounds):
    y = x.copy()
    for t in range(rounds):
      y = graph.matrix(t) @ y
    return np.sqrt(np.mean((y - x.mean())**2))

  assert error_after(topology.make("ring", 32), 60) > 1e-2
  assert error_after(topology.make("one_peer_exponential", 32), 60) < 1e-5
  assert error_after(topology.make("complete", 32), 1) < 1e-12


def test_shifts_reproduce_the_matrix():
  for name, n in [("ring", 8), ("torus", 16), ("exponential", 16), ("social", 32)]:
    graph = topology.make(name, n)
    rebuilt = np.zeros((n, n))
    for offset, weights in graph.shifts():
      rebuilt[np.arange(n), (np.arange(n) - offset) % n] += weights
    np.testing.assert_allclose(rebuilt, graph.matrices[0], atol=1e-15)


@pytest.mark.parametrize("name, n, message", [
    ("hypercube", 8, r"topology: unknown value 'hypercube'"),
    ("torus", 8, r"topology: a 2-D torus needs a square number of workers, got 8"),
    ("social", 16, r"topology: the social network has 32 nodes, not 16"),
    ("bipartite_exponential", 9, r"topology: a bipartite graph needs an even number"),
    ("ring", 0, r"n: must be >= 1, got 0"),
])
def test_impossible_graphs_are_refused(name, n, message):
  with pytest.raises(ArgumentError, match=message):
    topology.make(name, n)


def test_graphs_come_from_networkx_with_the_thesis_weights():
  """ring = nx.cycle_graph, torus = a periodic nx grid: 1/3 and 1/5 on each neighbour."""
  np.testing.assert_allclose(topology.ring(8).matrices[0][0, [7, 0, 1]], [1 / 3] * 3)
  np.testing.assert_allclose(topology.torus(16).matrices[0][5, [1, 4, 5, 6, 9]], [1 / 5] * 5)
