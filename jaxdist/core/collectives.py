"""The collectives an algorithm uses to talk to the other workers, from inside its `step`.

An algorithm is written for one worker; when the runner (or `Workers.map`) runs it for all
workers, these functions reach the others, like `torch.distributed` calls in a training script:

    params = collectives.mean(params)              # all-reduce mean over all workers
    params = collectives.mean(params, "workers")   # over a sub-group (the workers of a node)
    left = collectives.shift(params, 1)            # neighbour exchange (a ppermute between devices)
    everyone = collectives.gather(params)          # all-gather, stacked in worker order
    i, n = collectives.index(), collectives.num_workers()

They are the same calls simulated on one device (vmap) and spread over a device mesh (shard_map
with vmap inside), so an algorithm never knows where its workers live. Outside a mapped function
they raise.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
  from jaxdist.core.workers import Comm

_ACTIVE: contextvars.ContextVar[Comm | None] = contextvars.ContextVar("jaxdist_comm",
                                                                       default=None)


@contextlib.contextmanager
def active(comm: Comm) -> Iterator[None]:
  """Makes `comm` the workers the collectives talk to while a mapped function is traced."""
  token = _ACTIVE.set(comm)
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def current() -> Comm:
  """The worker grid of the function being traced."""
  comm = _ACTIVE.get()
  if comm is None:
    raise RuntimeError("jaxdist collectives work inside a per-worker function run for all "
                       "workers (jaxdist.Runner, jaxdist.train or Workers.map), not outside it")
  return comm


def mean(tree: Any, dims: str | Sequence[str] | None = None) -> Any:
  """Mean over all workers, or over the workers that differ only along the grid `dims`."""
  return current().mean(tree, dims)


def shift(tree: Any, offset: int, dim: str | None = None) -> Any:
  """Every worker receives the value of the worker `offset` places before it along `dim`
  (like `jnp.roll` over the workers); one or two `ppermute`s between devices."""
  return current().shift(tree, offset, dim)


def gather(tree: Any, dim: str | None = None) -> Any:
  """Every worker's value along `dim`, stacked in worker order on a new leading axis."""
  return current().gather(tree, dim)


def index(dim: str | None = None) -> jax.Array:
  """This worker's position along `dim`, or its flat (row-major) index."""
  return current().index(dim)


def num_workers(dim: str | None = None) -> int:
  """Workers along `dim`, or in all."""
  comm = current()
  return comm.num_workers if dim is None else comm.size(dim)


def grid() -> tuple[tuple[str, int], ...]:
  """The worker grid as (dimension name, size) pairs, outermost first."""
  return tuple((d.name, d.size) for d in current().dims)
