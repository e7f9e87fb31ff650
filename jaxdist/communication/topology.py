"""Communication topologies and their mixing matrices ([Lin22] §4.4, Table 4.2; App. 14.5.1).

A mixing matrix W is symmetric and doubly stochastic (the directed exponential graph of SGP is
column stochastic and not symmetric); worker i's gossip step is
x_i <- sum_j W[i, j] x_j. Static graphs get the thesis's max-degree weights
w_ij = 1 / max(deg_i, deg_j) with the self-loop counted in the degree (without it an even ring is
periodic and never reaches consensus), diagonal 1 - sum of the row.

Time-varying topologies cycle through a list of matrices with the step (one-peer exponential,
bipartite exponential) or draw a random matching every step. Their `spectral_gap` is that of
the expected matrix E[W]. Graphs come from networkx generators; `make(name, n)` builds one by
name.

    jaxdist.topology.ring(16), torus(16), complete(8), exponential(16), one_peer_exponential(16),
    bipartite_exponential(16), random_matching(16), social(), disconnected(16),
    directed_exponential(16)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from jaxdist.errors import ArgumentError, check_at_least, check_choice

SOCIAL_SIZE = 32  # the Davis Southern Women graph: 18 women and 14 events


def max_degree_weights(edges: np.ndarray) -> np.ndarray:
  """W with w_ij = 1/max(deg_i, deg_j) on edges, degrees counting the self-loop ([Lin22] L1068)."""
  edges = np.asarray(edges, bool) & ~np.eye(len(edges), dtype=bool)
  degree = edges.sum(1) + 1
  w = np.where(edges, 1.0 / np.maximum(degree[:, None], degree[None, :]), 0.0)
  return w + np.diag(1.0 - w.sum(1))


def adjacency(graph: nx.Graph) -> np.ndarray:
  """The 0/1 adjacency matrix of a graph whose nodes sort into worker order."""
  return nx.to_numpy_array(graph, nodelist=sorted(graph.nodes)) > 0


def circulant_adjacency(n: int, offsets) -> np.ndarray:
  """Undirected graph joining every i to i + o (mod n) for each offset o."""
  return adjacency(nx.circulant_graph(n, list(offsets)))


def spectral_gap(w: np.ndarray) -> float:
  """rho = 1 - |lambda_2(W)|, the second largest eigenvalue in absolute value (of a directed
  graph's matrix too)."""
  if len(w) == 1:
    return 1.0
  symmetric = np.allclose(w, w.T)
  eigenvalues = np.sort(np.abs(np.linalg.eigvalsh(w) if symmetric else np.linalg.eigvals(w)))
  return float(1.0 - eigenvalues[-2])


def exponential_hops(n: int) -> list[int]:
  """2^0, 2^1, ..., 2^floor(log2(n - 1)): the peers of the exponential graph."""
  return [2**k for k in range(int(math.log2(n - 1)) + 1)] if n > 1 else []


@dataclasses.dataclass(frozen=True, eq=False)
class Topology:
  """A named graph on n workers; `matrices` are cycled through with the step (empty: random)."""

  name: str
  n: int
  matrices: tuple[np.ndarray, ...]

  @property
  def period(self) -> int:
    """Number of matrices cycled through; 1 for a static graph, 0 for a random matching."""
    return len(self.matrices)

  @property
  def static(self) -> bool:
    return self.period == 1

  def matrix(self, step: int, key: jax.Array | None = None) -> np.ndarray:
    """W at `step` (a random matching needs the run's `key`)."""
    if self.period:
      return self.matrices[step % self.period]
    partner = np.asarray(random_partner(self.n, key, step))
    w = np.zeros((self.n, self.n))
    w[np.arange(self.n), partner] += 0.5
    w[np.arange(self.n), np.arange(self.n)] += 0.5
    return w

  def expected_matrix(self) -> np.ndarray:
    if self.period:
      return np.mean(self.matrices, axis=0)
    off_diagonal = (np.ones((self.n, self.n)) - np.eye(self.n)) / max(self.n - 1, 1)
    return 0.5 * np.eye(self.n) + 0.5 * off_diagonal if self.n > 1 else np.eye(1)

  def spectral_gap(self) -> float:
    return spectral_gap(self.expected_matrix())

  @functools.cached_property
  def degrees(self) -> np.ndarray:
    """[period, n]: neighbours (self excluded) each worker sends to at each phase (W[j, i] != 0:
    j receives from i)."""
    if not self.period:
      return np.full((1, self.n), 1 if self.n > 1 else 0)
    return np.stack([(w != 0).sum(0) - 1 for w in self.matrices])

  @property
  def max_degree(self) -> int:
    return int(self.degrees.max())

  def shifts(self, phase: int = 0) -> list[tuple[int, np.ndarray]]:
    """W at `phase` as neighbour exchanges: pairs (offset, weights) with
    W[i, (i - offset) % n] = weights[i], offset 0 the worker itself."""
    w = self.matrices[phase]
    rows = np.arange(self.n)
    terms = []
    for offset in range(self.n):
      weights = w[rows, (rows - offset) % self.n]
      if np.any(weights != 0):
        terms.append((offset if offset <= self.n // 2 else offset - self.n, weights))
    return terms


def random_partner(n: int, key: jax.Array, step) -> jax.Array:
  """A random perfect matching at `step` (one worker left alone when n is odd): partner[i]."""
  order = jax.random.permutation(jax.random.fold_in(key, step), n)
  pairs = n // 2 * 2
  first, second = order[0:pairs:2], order[1:pairs:2]
  partner = jnp.arange(n).at[first].set(second).at[second].set(first)
  return partner


def _bipartite_matchings(n: int) -> list[np.ndarray]:
  """Odd worker i pairs with even worker i + 2^k - 1 for k = 1, 2, ... (App. 14.5.1; k = 0 would
  pair a worker with itself): one peer per step, w = 1/2."""
  matrices = []
  for hop in exponential_hops(n):
    offset = 2 * hop - 1
    w = 0.5 * np.eye(n)
    for i in range(1, n, 2):
      j = (i + offset) % n
      w[i, j] = w[j, i] = 0.5
    matrices.append(w)
  return matrices


def _check_size(n: int) -> None:
  check_at_least("n", n, 1, integer=True)


def ring(n: int) -> Topology:
  """A cycle, w = 1/3 on each worker and its two neighbours (Table 4.2: rho = O(1/n^2))."""
  _check_size(n)
  return Topology("ring", n, (max_degree_weights(adjacency(nx.cycle_graph(n))),))


def torus(n: int) -> Topology:
  """A periodic sqrt(n) x sqrt(n) grid, w = 1/5 (Table 4.2)."""
  _check_size(n)
  side = math.isqrt(n)
  if side**2 != n:
    raise ArgumentError("topology", f"a 2-D torus needs a square number of workers, got {n}",
                        "ring, complete, ... or a number of workers in 4, 9, 16, 25, ...")
  graph = nx.grid_2d_graph(side, side, periodic=True)
  return Topology("torus", n, (max_degree_weights(adjacency(graph)),))


def complete(n: int) -> Topology:
  """Every worker with every other, W = 11^T / n: exact averaging."""
  _check_size(n)
  return Topology("complete", n, (np.full((n, n), 1.0 / n),))


def exponential(n: int) -> Topology:
  """Worker i joined to i +- 2^0, 2^1, ..., 2^floor(log2(n - 1)) ([Lin22] L4696)."""
  _check_size(n)
  matrix = max_degree_weights(circulant_adjacency(n, exponential_hops(n)))
  return Topology("exponential", n, (matrix,))


def one_peer_exponential(n: int) -> Topology:
  """The exponential graph's hops one at a time, cycled through with the gossip round."""
  _check_size(n)
  matrices = [max_degree_weights(circulant_adjacency(n, [hop])) for hop in exponential_hops(n)]
  return Topology("one_peer_exponential", n, tuple(matrices) or (np.eye(n),))


def directed_exponential(n: int) -> Topology:
  """The directed one-peer exponential graph of SGP (Assran et al. 2019; [Lin22] Table 9.3):
  at round t worker i keeps half and pushes half to i + 2^(t mod (floor(log2(n - 1)) + 1)).
  Column stochastic (so push-sum de-biases it); here also row stochastic, not symmetric."""
  _check_size(n)
  matrices = []
  for hop in exponential_hops(n):
    w = 0.5 * np.eye(n)
    w[(np.arange(n) + hop) % n, np.arange(n)] += 0.5  # W[receiver, sender]
    matrices.append(w)
  return Topology("directed_exponential", n, tuple(matrices) or (np.eye(n),))


def bipartite_exponential(n: int) -> Topology:
  """Odd workers cycle through even partners i + 2^k - 1, one peer per round (App. 14.5.1)."""
  _check_size(n)
  if n % 2:
    raise ArgumentError("topology", f"a bipartite graph needs an even number of workers, got {n}",
                        "an even number of workers")
  return Topology("bipartite_exponential", n, tuple(_bipartite_matchings(n)) or (np.eye(n),))


def disconnected(n: int) -> Topology:
  """No edges, W = I: every worker trains alone (the floor of Table 4.1-style comparisons)."""
  _check_size(n)
  return Topology("disconnected", n, (np.eye(n),))


def random_matching(n: int) -> Topology:
  """A new random perfect matching every round, w = 1/2 with the partner."""
  _check_size(n)
  return Topology("random_matching", n, () if n > 1 else (np.eye(1),))


def social(n: int = SOCIAL_SIZE) -> Topology:
  """The Davis Southern Women graph (networkx), 32 workers, max-degree weights ([Lin22] L1213)."""
  if n != SOCIAL_SIZE:
    raise ArgumentError("topology", f"the social network has {SOCIAL_SIZE} nodes, not {n}",
                        f"{SOCIAL_SIZE} workers")
  graph = nx.davis_southern_women_graph()
  matrix = nx.to_numpy_array(graph, nodelist=list(graph.nodes)) > 0
  return Topology("social", n, (max_degree_weights(matrix),))


_BY_NAME = {"ring": ring, "torus": torus, "complete": complete, "exponential": exponential,
            "one_peer_exponential": one_peer_exponential,
            "bipartite_exponential": bipartite_exponential, "random_matching": random_matching,
            "directed_exponential": directed_exponential,
            "social": social, "disconnected": disconnected}
TOPOLOGIES = tuple(_BY_NAME)


def make(name: str, n: int) -> Topology:
  """The topology `name` (one of TOPOLOGIES) on n workers."""
  check_choice("topology", name, TOPOLOGIES)
  return _BY_NAME[name](n)
