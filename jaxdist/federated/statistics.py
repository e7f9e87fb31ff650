"""Non-trainable state (BatchNorm statistics) in federated rounds, by option.

FedAvg averages parameters; what happens to running statistics is a choice that per-client
simulators often leave implicit ([Lin22] §16 pitfall 2: BN fails on non-i.i.d. clients). Each
option says where a client's statistics start and what the server keeps (the server's are what
its model is evaluated with):

* `Averaged()`: clients start from the server's; the server keeps their n_k-weighted average
  (like the parameters);
* `PerClient(num_clients)`: every registered client keeps its own across rounds (a table of K
  copies in the server state, the initial statistics until first sampled); the server keeps the
  cohort's weighted average;
* `Reset()`: clients start every round from the initial statistics; the server keeps the
  cohort's weighted average.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.core import collectives
from jaxdist.errors import check_at_least


def weighted_mean(tree: Any, weight: jax.Array) -> Any:
  """sum_k w_k x_k / sum_k w_k over the cohort (all-reduces)."""
  total = collectives.mean(weight)
  return jax.tree.map(lambda x: collectives.mean(x * weight.astype(x.dtype)) / total.astype(
      x.dtype), tree)


class Averaged:
  """Clients start from the server's statistics; the server averages theirs."""

  def init(self, model_state: Any) -> Any:
    return None

  def start(self, server: Any, kept: Any, client: jax.Array) -> Any:
    return server

  def finish(self, kept: Any, new: Any, client: jax.Array, weight: jax.Array) -> tuple[Any, Any]:
    return weighted_mean(new, weight), kept


class Reset(Averaged):
  """Clients start every round from the initial statistics."""

  def init(self, model_state: Any) -> Any:
    return model_state

  def start(self, server: Any, kept: Any, client: jax.Array) -> Any:
    return kept


class PerClient(Averaged):
  """Every registered client keeps its own statistics across rounds."""

  def __init__(self, num_clients: int):
    check_at_least("num_clients", num_clients, 1, integer=True)
    self.num_clients = int(num_clients)

  def init(self, model_state: Any) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_clients,) + x.shape),
                        model_state)

  def start(self, server: Any, kept: Any, client: jax.Array) -> Any:
    return jax.tree.map(lambda table: table[client], kept)

  def finish(self, kept: Any, new: Any, client: jax.Array, weight: jax.Array) -> tuple[Any, Any]:
    ids = collectives.gather(client)
    kept = jax.tree.map(lambda table, rows: table.at[ids].set(rows), kept,
                        collectives.gather(new))
    return weighted_mean(new, weight), kept
