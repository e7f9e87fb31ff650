"""Algorithm states that say, once, which of their fields are per worker and which are shared.

A state is a `flax.struct` dataclass whose fields are declared `per_worker()` (one value per worker,
stacked over the worker grid: parameters, optimizer and BatchNorm state) or `shared()` (one value
that every worker holds identically: counters, the replicated model of mini-batch SGD, a shared
random key). `worker_axes(state)` derives the vmap-style prefix (0 per worker, None shared) that
the runner maps with; nothing keeps a parallel list by hand.

    @jaxdist.state_class
    class State:
      step: jax.Array = jaxdist.shared()
      params: Any = jaxdist.per_worker()

A field without a declaration inherits its parent's (per worker at the top); a field holding
another declared state (the averaging rule's, the extrapolation's) uses that state's own
declarations. Any other pytree — a NamedTuple, a dict — is per worker throughout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax

PER_WORKER = 0
SHARED = None
_AXIS = "jaxdist_axis"

state_class = flax.struct.dataclass


def per_worker(default: Any = dataclasses.MISSING) -> Any:
  """A state field with one value per worker."""
  return dataclasses.field(default=default, metadata={_AXIS: PER_WORKER})


def shared(default: Any = dataclasses.MISSING) -> Any:
  """A state field that every worker holds identically (one copy)."""
  return dataclasses.field(default=default, metadata={_AXIS: SHARED})


def worker_axes(tree: Any, default: int | None = PER_WORKER) -> Any:
  """The tree with every leaf replaced by its worker axis: 0 per worker, None shared."""
  if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
    fields = {f.name: worker_axes(getattr(tree, f.name), f.metadata.get(_AXIS, default))
              for f in dataclasses.fields(tree) if f.init}
    return dataclasses.replace(tree, **fields)
  return jax.tree.map(lambda x: worker_axes(x, default) if _is_state(x) else default, tree,
                      is_leaf=_is_state)


def _is_state(x: Any) -> bool:
  return dataclasses.is_dataclass(x) and not isinstance(x, type)
