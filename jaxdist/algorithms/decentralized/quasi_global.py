"""QG-DSGDm: quasi-global momentum for decentralized learning ([Lin22] ch. 9, Alg. 6, 19, 20).

D-SGD whose local momentum buffer is replaced after every step by
m <- mu m + (1 - mu) (x_t - x_{t+1}) / lr_t, the model difference *after* gossip, which carries the
neighbours' directions (pitfall 7: this step's rate). With Nesterov it is QG-DSGDm-N;
`period` = tau updates the buffer every tau steps only (Alg. 20). With Adam (Alg. 19, QG-DAdam)
both moments are rebuilt from d / ||d||.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdist.algorithms.decentralized.base import DecentralizedState
from jaxdist.algorithms.decentralized.dsgd import DSGD
from jaxdist.errors import ArgumentError, check_at_least

PyTree = Any


class QGDSGDm(DSGD):
  """QG-DSGDm(-N) and QG-DAdam.

  Args:
    qg_mu: mu of the quasi-global buffer, in [0, 1).
    qg_period: tau, steps between buffer updates (Alg. 20).
    adam_betas: (b1, b2) of QG-DAdam's moments, when the optimizer is Adam.
    (the others as for `DSGD`)
  """

  needs_rate = "quasi-global momentum"

  def __init__(self, *args, qg_mu: float = 0.9, qg_period: int = 1,
               adam_betas: tuple[float, float] = (0.9, 0.999), **kwargs):
    super().__init__(*args, **kwargs)
    check_at_least("qg_mu", qg_mu, 0)
    if qg_mu >= 1:
      raise ArgumentError("qg_mu", f"{qg_mu} is not a momentum", "0 <= qg_mu < 1")
    check_at_least("qg_period", qg_period, 1, integer=True)
    self.qg_mu, self.qg_period, self.adam_betas = qg_mu, int(qg_period), adam_betas

  def init(self, params, model_state, rng) -> DecentralizedState:
    state = super().init(params, model_state, rng)
    quasi_global_buffers(state.opt_state)  # fails early without a momentum buffer
    return state

  def after_communication(self, state, opt_state, params):
    """m <- mu m + (1 - mu) d, d = (x_t - x_{t+1}) / lr_t; for Adam, both moments from d/||d||."""
    lr = self.learning_rate(state.step)
    d = jax.tree.map(lambda a, b: (a - b) / jnp.where(lr > 0, lr, 1.0), state.params, params)
    old = quasi_global_buffers(state.opt_state)
    mu = self.qg_mu
    if "nu" in old:  # QG-DAdam
      norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(d)))
      d = jax.tree.map(lambda x: (x / jnp.maximum(norm, 1e-12)).astype(x.dtype), d)
      b1, b2 = self.adam_betas
      new = {"mu": jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, old["mu"], d),
             "nu": jax.tree.map(lambda v, x: b2 * v + (1 - b2) * x * x, old["nu"], d)}
    else:
      new = {"trace": jax.tree.map(lambda m, x: mu * m + (1 - mu) * x, old["trace"], d)}
    if self.qg_period > 1:  # Alg. 20: the buffer moves every tau steps only
      due = (state.step + 1) % self.qg_period == 0
      new = jax.tree.map(lambda n, o: jnp.where(due, n, o), new, old)
    return optax.tree_utils.tree_set(opt_state, **new)


def quasi_global_buffers(opt_state: PyTree) -> dict[str, PyTree]:
  """The momentum buffer(s) that quasi-global momentum takes over: SGD's trace or Adam's
  moments."""
  for names in (("mu", "nu"), ("trace",)):
    buffers = {n: optax.tree_utils.tree_get(opt_state, n) for n in names}
    if all(b is not None for b in buffers.values()):
      return buffers
  raise ArgumentError("optimizer", "quasi-global momentum replaces a momentum buffer, and the "
                      "optimizer has none", "SGD with momentum > 0, or Adam")
