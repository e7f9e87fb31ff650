"""QG-DSGDm: quasi-global momentum for decentralized learning ([Lin22] ch. 9, Alg. 6, 19, 20).

D-SGD whose local momentum buffer is replaced after every step by
m <- mu m + (1 - mu) (x_t - x_{t+1}) / lr_t, the model difference *after* gossip, which carries the
neighbours' directions (pitfall 7: this step's rate). With Nesterov it is QG-DSGDm-N;
`period` = tau updates the buffer every tau steps only (Alg. 20).

QG-DAdam (Alg. 19) runs `qg_adam`, Adam as Alg. 19 writes it: m = b1 mhat + (1 - b1) g,
v = b2 vhat + (1 - b2) g^2, x <- x - lr m / sqrt(v + eps), no bias correction and epsilon inside
the square root (lines 4-6; the "ghat" there read as the local gradient g); after gossip both
buffers are rebuilt from dhat = d / ||d||_2, d = x_t - x_{t+1} (lines 8-11). optax's Adam (bias
corrected, epsilon outside) is refused.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxdist.algorithms.decentralized.base import DecentralizedState
from jaxdist.algorithms.decentralized.dsgd import DSGD
from jaxdist.errors import ArgumentError, check_at_least
from jaxdist.optim.optimizers import clip_gradients, decay_weights
from jaxdist.optim.schedules import as_schedule

PyTree = Any


# steps (for the schedule); mhat and vhat, rebuilt from the model difference after gossip
QGAdamState = NamedTuple(  # noqa: UP014 (the API reference cannot read string annotations)
    "QGAdamState", [("count", Any), ("mu", Any), ("nu", Any)])


def qg_adam(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: float = 0.0, decay_norm_and_bias: bool = False,
            grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """Alg. 19's local Adam step: m = b1 mhat + (1 - b1) g, v = b2 vhat + (1 - b2) g^2, update
  -lr m / sqrt(v + eps); no bias correction, epsilon inside the square root. The state keeps
  mhat and vhat, which only `QGDSGDm` moves (from the model difference after gossip).

  Args:
    learning_rate: a float or a schedule.
    b1, b2: the moments' decay rates.
    eps: added to v inside the square root.
    weight_decay: L2 decay added to the gradient (of the weight matrices, as
      `jaxdist.optim.adam`'s).
    decay_norm_and_bias: also decay the leaves of rank < 2.
    grad_clip_norm: clip the gradient's global norm first; 0 = off.
  """
  return optax.chain(clip_gradients(grad_clip_norm),
                     decay_weights(weight_decay, decay_norm_and_bias),
                     _alg19_adam(learning_rate, b1, b2, eps))


def _alg19_adam(learning_rate, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
  for name, beta in (("b1", b1), ("b2", b2)):
    check_at_least(name, beta, 0)
    if beta >= 1:
      raise ArgumentError(name, f"{beta} is not a decay rate", f"0 <= {name} < 1")
  check_at_least("eps", eps, 0)
  schedule = as_schedule(learning_rate)

  def init(params):
    zeros = otu.tree_zeros_like(params)
    return QGAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

  def update(grads, state, params=None):
    del params
    lr = schedule(state.count)

    def leaf(g, m, v):
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * g * g
      return (-lr * m / jnp.sqrt(v + eps)).astype(g.dtype)

    updates = jax.tree.map(leaf, grads, state.mu, state.nu)
    return updates, state._replace(count=state.count + 1)

  return optax.GradientTransformation(init, update)


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
    buffers = quasi_global_buffers(state.opt_state)  # fails early without a momentum buffer
    alg19 = any(isinstance(node, QGAdamState) for node in jax.tree.leaves(
        state.opt_state, is_leaf=lambda node: isinstance(node, QGAdamState)))
    if "nu" in buffers and not alg19:
      raise ArgumentError("optimizer", "QG-DAdam follows Alg. 19 (no bias correction, epsilon "
                          "inside the square root), and this Adam does not",
                          "jaxdist.qg_dadam(...), or quasi_global.qg_adam as the optimizer")
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
