"""Server optimizers ([Lin22] ch. 8 baselines, App. 17.3.2): the server applies an optax transform
to the round's pseudo-gradient Delta = x_server - sum_k n_k x_k / sum_k n_k.

* `fedavg()`: SGD with rate 1, x <- x - Delta, the weighted average (FedAvg, Alg. 17);
* `fedavgm(beta)`: server momentum v <- beta v + Delta, x <- x - v (FedAvgM; the sign chosen so
  that beta = 0 is FedAvg exactly);
* `fedadam(...)`: Adam on Delta, as in the adaptive-federated literature (FedAdam).

Any other optax transform works the same way.
"""

from __future__ import annotations

from typing import Any

import optax
import optax.tree_utils as otu

from jaxdist.errors import check_at_least, check_fraction


def fedavg() -> optax.GradientTransformation:
  """x <- x - Delta: the server model becomes the cohort's weighted average."""
  return optax.sgd(1.0)


def fedavgm(beta: float, learning_rate: float = 1.0) -> optax.GradientTransformation:
  """Server momentum: v <- beta v + Delta, x <- x - learning_rate * v."""
  check_fraction("server_momentum", beta)
  check_at_least("server_learning_rate", learning_rate, 0)
  return optax.sgd(learning_rate, momentum=beta)


def fedadam(learning_rate: float = 1e-2, b1: float = 0.9, b2: float = 0.99,
            eps: float = 1e-3) -> optax.GradientTransformation:
  """Adam on the pseudo-gradient (eps 1e-3 as adaptive federated optimizers use it)."""
  check_at_least("server_learning_rate", learning_rate, 0)
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def apply(tx: optax.GradientTransformation, params: Any, opt_state: Any,
          average: Any) -> tuple[Any, Any]:
  """(new server params, new optimizer state) from the cohort's weighted `average`."""
  pseudo_gradient = otu.tree_sub(params, average)
  updates, opt_state = tx.update(pseudo_gradient, opt_state, params)
  return optax.apply_updates(params, updates), opt_state
