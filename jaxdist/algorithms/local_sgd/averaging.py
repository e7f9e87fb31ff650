"""What local SGD averages over all workers ([Lin22] Alg. 7 and App. 11.2.4).

An averaging rule turns the workers' models into the new common model at each global averaging:

* `ModelAverage()`: x <- mean_k x_k (Alg. 7; its extra learning rate on the average is a
  misprint: averaging the models is averaging the updates). Sends d floats.
* `GlobalMomentum(momentum)`: block momentum on the averaged model differences,
  u <- m u + (anchor - mean_k x_k) / lr, x <- anchor - lr u, the anchor being the model of the
  previous global averaging and lr the rate of the last local step (App. 11.2.4; SlowMo with
  alpha = 1 on an exact-average base). With the optimizer's own momentum it is hybrid momentum.

`jaxdist.algorithms.local_sgd.sign` adds the sign-compressed rules (Alg. 9, 10). Averages within
a node (hierarchical local SGD) are always plain means.
"""

from __future__ import annotations

from typing import Any

import jax
import optax.tree_utils as otu

from jaxdist.algorithms.base import bits_per_model
from jaxdist.core import collectives
from jaxdist.core.state import shared, state_class
from jaxdist.errors import ArgumentError, check_at_least

PyTree = Any


class Averaging:
  """An averaging rule: `init(params)`, `__call__(params, state, lr) -> (params, state)` for the
  worker calling it, `message_bits(params)` sent per worker."""

  needs_learning_rate = False

  def init(self, params: PyTree) -> Any:
    return None

  def __call__(self, params: PyTree, state: Any, learning_rate: jax.Array) -> tuple[PyTree, Any]:
    raise NotImplementedError

  def message_bits(self, params: PyTree) -> int:
    return bits_per_model(params)


class ModelAverage(Averaging):
  """x <- mean_k x_k."""

  def __call__(self, params, state, learning_rate):
    return collectives.mean(params), state


@state_class
class GlobalMomentumState:
  anchor: PyTree = shared()  # the model after the last global averaging
  momentum: PyTree = shared()


class GlobalMomentum(Averaging):
  """Block (global) momentum on the averaged model differences; `momentum` = 0 is plain
  averaging (App. 11.2.4; Table 11.3: it collapses at >= 0.7)."""

  needs_learning_rate = True

  def __init__(self, momentum: float):
    check_at_least("global_momentum", momentum, 0)
    if momentum >= 1:
      raise ArgumentError("global_momentum", f"{momentum} is not a momentum",
                          "0 <= global_momentum < 1")
    self.momentum = momentum

  def init(self, params):
    return GlobalMomentumState(params, otu.tree_zeros_like(params))

  def __call__(self, params, state, learning_rate):
    average = collectives.mean(params)
    momentum = jax.tree.map(lambda u, a, x: self.momentum * u + (a - x) / learning_rate,
                            state.momentum, state.anchor, average)
    params = jax.tree.map(lambda a, u: a - learning_rate * u, state.anchor, momentum)
    return params, GlobalMomentumState(params, momentum)
