"""Training algorithms, each written for one worker and run on K workers by `jaxdist.workers`.

An algorithm is an object with

* `state_axes`: a prefix of its state marking every field PER_WORKER (stacked over the workers) or
  SHARED (one copy, identical on every worker), as vmap's in_axes;
* `init(params, model_state) -> state`, called on every worker with the same initial model;
* `step(state, batch, rng) -> (state, metrics)`: one iteration on this worker's batch; metrics is a
  flat dict of scalars, averaged over the workers by the runner;
* `deployed(state) -> (params, model_state)`: the model this worker evaluates.

States are NamedTuples with a SHARED `step` field (iterations done), from which the runner derives
the data position and the random streams. Algorithms talk to other workers only through the
`Comm` they are built with.
"""

from typing import Any, Protocol

import jax
import ml_collections
import optax

from jaxdist.algorithms import local_sgd
from jaxdist.errors import ConfigError
from jaxdist.workers import Comm

Metrics = dict[str, jax.Array]


class Algorithm(Protocol):
  state_axes: Any

  def init(self, params: Any, model_state: Any) -> Any: ...

  def step(self, state: Any, batch: Any, rng: jax.Array) -> tuple[Any, Metrics]: ...

  def deployed(self, state: Any) -> tuple[Any, Any]: ...


ALGORITHMS = ("minibatch_sgd", "local_sgd")


def build(config: ml_collections.ConfigDict, loss_fn, tx: optax.GradientTransformation,
          comm: Comm) -> Algorithm:
  """The algorithm named by `config.name` (config is the `algo` section)."""
  if config.name == "minibatch_sgd":
    return local_sgd.MinibatchSGD(loss_fn, tx, comm)
  if config.name == "local_sgd":
    if config.local_steps < 1:
      raise ConfigError("algo.local_steps", f"must be >= 1, got {config.local_steps}",
                        "integers >= 1")
    return local_sgd.LocalSGD(loss_fn, tx, comm, config.local_steps)
  raise ConfigError("algo.name", f"unknown algorithm {config.name!r}", ALGORITHMS)
