"""Gossip averaging over a topology, and the consensus distance ([Lin22] §4.4, ch. 5).

`Gossip.mix(tree, step)` is one gossip round, x_i <- sum_j W_t[i, j] x_j, for the worker that
calls it from its step (through `jaxdist.core.collectives`). How the neighbours' values arrive:

* `shift`: one `Comm.shift` (a `ppermute` between devices) per distinct neighbour offset, so a
  ring or a torus costs O(degree * d) per worker; time-varying graphs switch between the
  exchanges of each phase;
* `dense`: an all-gather of every worker's value and a row of W (any graph; what a random
  matching uses);
* `mean`: the exact all-reduce mean, for the complete graph W = 11^T / n.

`auto` picks `mean` for the complete graph, `shift` when a graph needs at most two exchanges per
neighbour, `dense` otherwise.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu
from jax import lax

from jaxdist.communication.topology import Topology, random_partner
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_choice

EXCHANGES = ("auto", "shift", "dense", "mean")


class Gossip:
  """Gossip rounds over `topology` among the workers of a flat grid of `topology.n` workers.

  Args:
    topology: the graph and its mixing matrices (`jaxdist.topology.ring(n)`, ...).
    exchange: how neighbours' values arrive, one of EXCHANGES (see the module doc).
    seed: the seed of a random matching's draws.
  """

  def __init__(self, topology: Topology, exchange: str = "auto", seed: int = 0):
    if not isinstance(topology, Topology):
      raise ArgumentError("topology", f"{topology!r} is not a topology",
                          "jaxdist.topology.ring(n), torus(n), complete(n), ...")
    check_choice("exchange", exchange, EXCHANGES)
    complete = topology.name == "complete"
    if exchange == "mean" and not complete:
      raise ArgumentError("exchange", "an all-reduce mean is the gossip of the complete graph "
                          "only", ("auto", "shift", "dense"))
    if exchange == "shift" and not topology.period:
      raise ArgumentError("exchange", "a random matching has no fixed neighbour offsets to "
                          "shift by", ("auto", "dense"))
    if exchange == "auto":
      if complete:
        exchange = "mean"
      elif topology.period and all(
          len(topology.shifts(p)) - 1 <= 2 * topology.max_degree for p in range(topology.period)):
        exchange = "shift"
      else:
        exchange = "dense"
    self.topology, self.exchange = topology, exchange
    self.key = jax.random.PRNGKey(seed)

  def check_workers(self) -> None:
    """The grid of the traced step must be the topology's flat set of workers."""
    grid = collectives.grid()
    if len(grid) != 1 or grid[0][1] != self.topology.n:
      sizes = "x".join(str(size) for _, size in grid)
      raise ArgumentError("topology", f"a topology on {self.topology.n} workers cannot connect "
                          f"a worker grid of {sizes}", "a flat grid of the same size")

  @property
  def static(self) -> bool:
    return self.topology.static

  def mix(self, tree: Any, step: jax.Array) -> Any:
    """One gossip round at `step` (time-varying graphs change with it)."""
    self.check_workers()
    if self.exchange == "mean":
      return collectives.mean(tree)
    if self.exchange == "dense":
      return self._mix_dense(tree, step)
    if self.static:
      return self._mix_shifts(tree, 0)
    branches = [functools.partial(self._mix_shifts, phase=p) for p in range(self.topology.period)]
    return lax.switch(step % self.topology.period, branches, tree)

  def messages(self, step: jax.Array) -> jax.Array:
    """Messages this worker sends in a gossip round at `step` (an all-reduce counts one)."""
    return jnp.int32(1) if self.exchange == "mean" else self.neighbours(step)

  def neighbours(self, step: jax.Array) -> jax.Array:
    """How many other workers this worker sends its message to at `step`."""
    i = collectives.index()
    if not self.topology.period:
      return (random_partner(self.topology.n, self.key, step)[i] != i).astype(jnp.int32)
    degrees = jnp.asarray(self.topology.degrees, jnp.int32)
    return degrees[step % self.topology.period, i]

  def _mix_shifts(self, tree: Any, phase: int) -> Any:
    i = collectives.index()
    terms = self.topology.shifts(phase)

    def weight(weights, dtype):
      if np.all(weights == weights[0]):
        return jnp.asarray(weights[0], dtype)
      return jnp.asarray(weights, dtype)[i]

    total = None
    for offset, weights in terms:
      received = tree if offset == 0 else collectives.shift(tree, offset)
      term = jax.tree.map(lambda x: weight(weights, x.dtype) * x, received)
      total = term if total is None else otu.tree_add(total, term)
    return total

  def _mix_dense(self, tree: Any, step: jax.Array) -> Any:
    i = collectives.index()
    everyone = collectives.gather(tree)
    if not self.topology.period:
      partner = random_partner(self.topology.n, self.key, step)[i]
      return jax.tree.map(lambda x, all_x: 0.5 * x + 0.5 * all_x[partner], tree, everyone)
    matrices = np.stack(self.topology.matrices)

    def leaf(all_x):
      row = jnp.asarray(matrices, all_x.dtype)[step % self.topology.period, i]
      return jnp.tensordot(row, all_x, axes=1)

    return jax.tree.map(leaf, everyone)


def squared_norm(tree: Any) -> jax.Array:
  return otu.tree_norm(tree, squared=True)


def consensus_distance(params: Any) -> jax.Array:
  """Xi = sqrt((1/n) sum_i ||x_i - x_bar||^2) ([Lin22] §5.4; costs an all-reduce of the model)."""
  average = collectives.mean(params)
  return jnp.sqrt(collectives.mean(squared_norm(otu.tree_sub(params, average))))


def gossip_residual(before: Any, after: Any) -> jax.Array:
  """Theta = sqrt((1/n) sum_i ||sum_j w_ij x_j - x_i||^2), the cheap estimator of Xi after one
  gossip round: a scalar all-reduce (Lemma 14.1.1: Xi <= (2/p) Theta)."""
  return jnp.sqrt(collectives.mean(squared_norm(otu.tree_sub(after, before))))
