"""Training algorithms, each written for one worker and run on K workers by the runner.

An algorithm is an object with

* `init(params, model_state, rng) -> state`, called on every worker with the same initial model
  and the same (shared) key, without communicating;
* `step(state, batch, rng) -> (state, metrics)`: one iteration on this worker's batch with this
  worker's key, talking to the others only through `jaxdist.core.collectives`; metrics is a flat
  dict of scalars, averaged over the workers by the runner, except that `comm/*` counts (bits
  sent, rounds) are summed over the steps;
* `deployed(state) -> (params, model_state)`: the model this worker evaluates.

States declare which fields are per worker and which are shared (`jaxdist.core.state`); the
runner derives the worker axes from them.
"""

from jaxdist.algorithms import decentralized, extrapolation, local_sgd, minibatch

__all__ = ["decentralized", "extrapolation", "local_sgd", "minibatch"]
