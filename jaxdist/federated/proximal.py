"""FedProx ([Lin22] ch. 8 baselines, App. 17.3.2): the local loss plus (mu/2)||x - x_server||^2,
which keeps each client near the model it received (mu in {0.001, 0.01, 0.1, 1} in the thesis).

mu = 0 is FedAvg exactly: the term and its gradient are zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.errors import check_at_least


def proximal(mu: float) -> Callable[[Any, Any], jax.Array]:
  """`term(params, anchor) = mu / 2 * ||params - anchor||^2`, added to every local loss."""
  check_at_least("proximal_mu", mu, 0)

  def term(params, anchor):
    squares = jax.tree.map(lambda p, a: jnp.sum(jnp.square(p - a)), params, anchor)
    return 0.5 * mu * sum(jax.tree.leaves(squares))

  return term
