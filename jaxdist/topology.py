"""Communication topologies and their mixing matrices ([Lin22] §4.4, Table 4.2; App. 14.5.1).

A mixing matrix W is symmetric and doubly stochastic; worker i's gossip step is
x_i <- sum_j W[i, j] x_j. Static graphs get the thesis's max-degree weights
w_ij = 1 / max(deg_i, deg_j) with the self-loop counted in the degree (without it an even ring is
periodic and never reaches consensus), diagonal 1 - sum of the row.

Time-varying topologies cycle through a list of matrices with the step (one-peer exponential,
bipartite exponential) or draw a random matching every step. Their `spectral_gap` is that of
the expected matrix E[W].
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from jaxdist.errors import ConfigError

TOPOLOGIES = ("ring", "torus", "complete", "exponential", "one_peer_exponential",
              "bipartite_exponential", "random_matching", "social")
SOCIAL_SIZE = 32  # the Davis Southern Women graph: 18 women and 14 events


def max_degree_weights(adjacency: np.ndarray) -> np.ndarray:
  """W with w_ij = 1/max(deg_i, deg_j) on edges, degrees counting the self-loop ([Lin22] L1068)."""
  adjacency = np.asarray(adjacency, bool) & ~np.eye(len(adjacency), dtype=bool)
  degree = adjacency.sum(1) + 1
  w = np.where(adjacency, 1.0 / np.maximum(degree[:, None], degree[None, :]), 0.0)
  return w + np.diag(1.0 - w.sum(1))


def circulant_adjacency(n: int, offsets) -> np.ndarray:
  """Undirected graph joining every i to i + o (mod n) for each offset o."""
  adjacency = np.zeros((n, n), bool)
  for o in offsets:
    i = np.arange(n)
    adjacency[i, (i + o) % n] = adjacency[(i + o) % n, i] = True
  return adjacency


def spectral_gap(w: np.ndarray) -> float:
  """rho = 1 - |lambda_2(W)|, the second largest eigenvalue in absolute value."""
  if len(w) == 1:
    return 1.0
  eigenvalues = np.sort(np.abs(np.linalg.eigvalsh(w)))
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
    """[period, n]: neighbours (self excluded) each worker exchanges with at each phase."""
    if not self.period:
      return np.full((1, self.n), 1 if self.n > 1 else 0)
    return np.stack([(w != 0).sum(1) - 1 for w in self.matrices])

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


def _torus_adjacency(n: int) -> np.ndarray:
  side = math.isqrt(n)
  adjacency = np.zeros((n, n), bool)
  for r in range(side):
    for c in range(side):
      for dr, dc in ((0, 1), (1, 0)):
        i, j = r * side + c, ((r + dr) % side) * side + (c + dc) % side
        adjacency[i, j] = adjacency[j, i] = True
  return adjacency


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


def make(name: str, n: int) -> Topology:
  """The topology `name` on n workers; one clear error for graphs that do not exist at that n."""
  if name not in TOPOLOGIES:
    raise ConfigError("topology.name", f"unknown topology {name!r}", TOPOLOGIES)
  if name == "torus" and math.isqrt(n) ** 2 != n:
    raise ConfigError("topology.name", f"a 2-D torus needs a square number of workers, got {n}",
                      "ring, complete, ... or workers.num_workers in 4, 9, 16, 25, ...")
  if name == "social" and n != SOCIAL_SIZE:
    raise ConfigError("topology.name", f"the social network has {SOCIAL_SIZE} nodes, not {n}",
                      f"workers.num_workers = {SOCIAL_SIZE}")
  if name == "bipartite_exponential" and n % 2:
    raise ConfigError("topology.name", f"a bipartite graph needs an even number of workers, "
                      f"got {n}", "workers.num_workers even")
  if name == "ring":
    matrices = [max_degree_weights(circulant_adjacency(n, [1]))]
  elif name == "torus":
    matrices = [max_degree_weights(_torus_adjacency(n))]
  elif name == "complete":
    matrices = [np.full((n, n), 1.0 / n)]
  elif name == "exponential":
    matrices = [max_degree_weights(circulant_adjacency(n, exponential_hops(n)))]
  elif name == "one_peer_exponential":
    matrices = [max_degree_weights(circulant_adjacency(n, [hop]))
                for hop in exponential_hops(n)] or [np.eye(n)]
  elif name == "bipartite_exponential":
    matrices = _bipartite_matchings(n) or [np.eye(n)]
  elif name == "social":
    graph = nx.davis_southern_women_graph()
    matrices = [max_degree_weights(nx.to_numpy_array(graph, nodelist=list(graph.nodes)) > 0)]
  else:
    matrices = [] if n > 1 else [np.eye(1)]
  return Topology(name, n, tuple(matrices))
