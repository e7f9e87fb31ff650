"""Registered clients and the cohort of a round ([Lin22] Alg. 5 and 17: S_t, a random C-fraction
of the K clients).

The clients' data stay on the host (numpy), the examples once and each client's indices into them;
a round gathers only its cohort's examples. Every client's examples are padded to the size of the
largest client with `mask` 0, so clients of unequal sizes and any cohort run as one program of
fixed shapes (one compilation), and only the real examples count. The cohort of round r is drawn
from (seed, r) alone: a resumed run samples the same clients.

`ClientData` is a data source of the runner: the round is the step, the cohort's slots are the
workers, and a slot's batch is its client's whole padded dataset
`{**arrays, "mask", "count", "client"}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxdist.errors import ArgumentError, check_at_least

_COHORT = 14  # the stream of the client sampling, apart from the seed's other uses


def cohort_size(num_clients: int, fraction: float) -> int:
  """Clients per round for a participation fraction C: max(1, round(C * K))."""
  check_at_least("num_clients", num_clients, 1, integer=True)
  if not 0 < fraction <= 1:
    raise ArgumentError("fraction", f"{fraction} is not in (0, 1]", "0 < fraction <= 1")
  return max(1, round(fraction * num_clients))


def sample_cohort(seed: int, round_index: int, num_clients: int, size: int) -> np.ndarray:
  """The ids of round `round_index`'s cohort, sorted: `size` of `num_clients` without
  replacement, a pure function of (seed, round)."""
  rng = np.random.default_rng([int(seed), _COHORT, int(round_index)])
  return np.sort(rng.choice(num_clients, size, replace=False))


class ClientData:
  """K registered clients: the examples on the host, each client's indices into them.

  Args:
    arrays: a dict of equal-length numpy arrays (e.g. `{"input": x, "label": y}`).
    clients: K index arrays, one per client (`jaxdist.data.partition.dirichlet_per_class`, a
      natural split, ...); sizes may differ.
    cohort_size: clients per round (`cohort_size(K, C)`).
    seed: the seed of the client sampling.
  """

  def __init__(self, arrays: dict[str, Any], clients: Sequence[Sequence[int]], *,
               cohort_size: int, seed: int = 0):
    if not isinstance(arrays, dict) or not arrays:
      raise ArgumentError("arrays", "is not a dict of arrays", "a dict of equal-length arrays")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    sizes = {len(v) for v in self.arrays.values()}
    if len(sizes) != 1:
      raise ArgumentError("arrays", f"lengths differ: {sorted(sizes)}", "equal lengths")
    for reserved in ("mask", "count", "client", "step"):
      if reserved in self.arrays:
        raise ArgumentError("arrays", f"has a key {reserved!r}, which the rounds set",
                            "keys other than mask, count, client, step")
    (total,) = sizes
    self.clients = [np.asarray(c, np.int64).reshape(-1) for c in clients]
    if not self.clients or min(len(c) for c in self.clients) == 0:
      raise ArgumentError("clients", "a client without examples, or no clients",
                          "K >= 1 non-empty index arrays")
    if max(int(c.max()) for c in self.clients) >= total or min(
        int(c.min()) for c in self.clients) < 0:
      raise ArgumentError("clients", f"indices outside 0..{total - 1}", f"0..{total - 1}")
    self.num_clients = len(self.clients)
    check_at_least("cohort_size", cohort_size, 1, integer=True)
    if cohort_size > self.num_clients:
      raise ArgumentError("cohort_size", f"{cohort_size} clients per round of "
                          f"{self.num_clients}", f"1..{self.num_clients}")
    self.num_workers = int(cohort_size)  # the runner's workers: the cohort's slots
    self.seed = int(seed)
    self.sizes = np.array([len(c) for c in self.clients])
    self.max_examples = int(self.sizes.max())

  def cohort(self, round_index: int) -> np.ndarray:
    """The client ids of round `round_index`."""
    return sample_cohort(self.seed, round_index, self.num_clients, self.num_workers)

  def client(self, client_id: int) -> dict[str, np.ndarray]:
    """One client's examples padded to `max_examples`, with `mask`, `count` and `client`."""
    index = self.clients[client_id]
    pad = self.max_examples - len(index)
    data = {k: np.concatenate([v[index], np.zeros((pad,) + v.shape[1:], v.dtype)])
            for k, v in self.arrays.items()}
    data["mask"] = (np.arange(self.max_examples) < len(index)).astype(np.float32)
    data["count"] = np.float32(len(index))
    data["client"] = np.int32(client_id)
    return data

  def batches(self, first_step: int, num_steps: int, workers: Sequence[int]) -> dict:
    """The cohort's datasets of rounds first_step.., laid out `[rounds, len(workers), ...]`."""
    rounds = [[self.client(int(self.cohort(r)[w])) for w in workers]
              for r in range(first_step, first_step + num_steps)]
    return jax.tree.map(lambda *xs: np.stack(xs).reshape(
        (num_steps, len(workers)) + np.shape(xs[0])), *[c for r in rounds for c in r])
