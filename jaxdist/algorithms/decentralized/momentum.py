"""The momentum baselines of [Lin22] ch. 9 (App. 18.2, Table 9.6) beside quasi-global momentum:
DSGDm whose momentum buffer is also all-reduced or gossiped, D-SGD on gossiped local gradients,
and DMSGD (Balu et al. 2021; Alg. 23-25).

* `ExchangedMomentum`: after the step the heavy-ball buffer m is replaced by its all-reduce
  mean (`exchange="allreduce"`, "momentum buffer (complete)") or one gossip round of it
  (`"gossip"`, "(ring)"): twice the communication of DSGDm (pitfall 1).
* `GradientGossip`: the local gradients are gossiped once before the optimizer step, then the
  parameters as in D-SGD.
* `DMSGD` (option II of Alg. 24, unified with QG-DSGDm in Alg. 25): the buffer after gossip is
  mhat = mu (beta mhat + g) + (1 - mu) (x_t - x_{t+1}) / lr, the local heavy-ball direction mixed
  with the model difference; QG-DSGDm instead keeps mu mhat + (1 - mu) (x_t - x_{t+1}) / lr.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.dsgd import DSGD
from jaxdist.algorithms.decentralized.quasi_global import QGDSGDm
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_choice

MOMENTUM_EXCHANGES = ("allreduce", "gossip")


def _trace(opt_state):
  trace = otu.tree_get(opt_state, "trace")
  if trace is None:
    raise ArgumentError("optimizer", "this variant exchanges a momentum buffer, and the "
                        "optimizer has none", "SGD with momentum > 0")
  return trace


class ExchangedMomentum(DSGD):
  """DSGDm(-N) whose momentum buffer is all-reduced or gossiped after every step.

  Args:
    momentum_exchange: `allreduce` or `gossip`.
    (the others as for `DSGD`)
  """

  def __init__(self, *args, momentum_exchange: str = "allreduce", **kwargs):
    super().__init__(*args, **kwargs)
    check_choice("momentum_exchange", momentum_exchange, MOMENTUM_EXCHANGES)
    self.momentum_exchange = momentum_exchange

  def init(self, params, model_state, rng):
    state = super().init(params, model_state, rng)
    _trace(state.opt_state)
    return state

  def after_communication(self, state, opt_state, params):
    trace = _trace(opt_state)
    if self.momentum_exchange == "allreduce":
      trace = collectives.mean(trace)
    else:
      trace = self.gossip.mix(trace, state.rounds)
    return otu.tree_set(opt_state, trace=trace)

  def extra_bits(self, state, params):
    if self.momentum_exchange == "allreduce":
      return jnp.asarray(bits_per_model(params), jnp.float32)  # one all-reduce of the buffer
    return (self.gossip.messages(state.rounds) * bits_per_model(params)).astype(jnp.float32)


class GradientGossip(DSGD):
  """D-SGD on gossiped local gradients: g_i <- sum_j w_ij g_j, then the step and the gossip of
  the parameters."""

  def step_gradients(self, state, grads):
    return self.gossip.mix(grads, state.rounds)

  def extra_bits(self, state, params):
    return (self.gossip.messages(state.rounds) * bits_per_model(params)).astype(jnp.float32)


class DMSGD(QGDSGDm):
  """DMSGD (Alg. 24 option II in Alg. 25's form): mhat = mu (beta mhat + g) + (1 - mu) d,
  d = (x_t - x_{t+1}) / lr; `qg_mu` is mu. The optimizer: heavy-ball SGD with momentum beta."""

  def after_communication(self, state, opt_state, params):
    lr = self.learning_rate(state.step)
    d = jax.tree.map(lambda a, b: (a - b) / jnp.where(lr > 0, lr, 1.0), state.params, params)
    local = _trace(opt_state)  # beta mhat + g, this step's heavy-ball direction
    mu = self.qg_mu
    return otu.tree_set(opt_state, trace=jax.tree.map(lambda m, x: mu * m + (1 - mu) * x,
                                                      local, d))
