"""SlowMo on a gossip base ([Lin22] Alg. 22, Tables 9.6 and 14.5; Wang et al. 2020d): tau steps
of D-SGD (the base optimizer, gossiping every step), then an exact average x_tau, the slow
momentum m <- beta m + (x_0 - x_tau) / lr and the outer step x_0 <- x_0 - alpha lr m, from which
every worker restarts; the base momentum buffers are averaged with the model (line 3). The
thesis's CIFAR-10 values: alpha = 1, tau = 12, beta = 0.7.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax.tree_utils as otu
from jax import lax

from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized.dsgd import DSGD, ControlledState
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, state_class
from jaxdist.errors import check_at_least, check_fraction

PyTree = Any


@state_class
class SlowMoState(ControlledState):  # control: consensus control's phi_ema, or None
  outer: PyTree = per_worker(None)  # x_0 of the round (the same on every worker)
  slow_momentum: PyTree = per_worker(None)  # m


class SlowMo(DSGD):
  """SlowMo over D-SGD.

  Args:
    slow_period: tau, base steps between outer steps.
    slow_momentum: beta of the slow momentum.
    slow_lr: alpha, the outer step size (times the base learning rate).
    (the others as for `DSGD`)
  """

  needs_rate = "SlowMo's outer step"

  def __init__(self, *args, slow_period: int = 12, slow_momentum: float = 0.7,
               slow_lr: float = 1.0, **kwargs):
    super().__init__(*args, **kwargs)
    check_at_least("slow_period", slow_period, 1, integer=True)
    check_fraction("slow_momentum", slow_momentum)
    check_at_least("slow_lr", slow_lr, 0)
    self.slow_period, self.beta, self.alpha = int(slow_period), slow_momentum, slow_lr

  def init(self, params, model_state, rng) -> SlowMoState:
    state = super().init(params, model_state, rng)
    return SlowMoState(**vars(state), outer=params, slow_momentum=otu.tree_zeros_like(params))

  def step(self, state: SlowMoState, batch, rng):
    new, metrics = super().step(state, batch, rng)
    lr = self.learning_rate(state.step)

    def outer_step(new):
      average = collectives.mean(new.params)
      momentum = jax.tree.map(lambda m, x0, x: self.beta * m + (x0 - x) / lr,
                              new.slow_momentum, new.outer, average)
      outer = jax.tree.map(lambda x0, m: x0 - self.alpha * lr * m, new.outer, momentum)
      trace = otu.tree_get(new.opt_state, "trace")
      opt_state = (new.opt_state if trace is None else
                   otu.tree_set(new.opt_state, trace=collectives.mean(trace)))
      return new.replace(params=outer, outer=outer, slow_momentum=momentum,
                         opt_state=opt_state)

    due = (state.step + 1) % self.slow_period == 0
    new = lax.cond(due, outer_step, lambda new: new, new)
    extra = jnp.where(due, 2 * bits_per_model(new.params), 0).astype(jnp.float32)
    metrics["comm/bits_sent"] = metrics["comm/bits_sent"] + extra  # model and buffer all-reduce
    return new, metrics
