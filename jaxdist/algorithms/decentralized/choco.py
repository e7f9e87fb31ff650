"""CHOCO-SGD and CHOCO-Gossip ([Lin22] ch. 4, Alg. 2/3; App. 13.1.1, Alg. 15; Koloskova et al.
2019).

CHOCO-Gossip (App. 13.1.1: X+ = X + gamma Xhat (W - I), Xhat+ = Xhat + Q(X+ - Xhat)): a round
first pulls the private x towards the neighbours' public copies, x += gamma (s - xhat) with
s_i = sum_j w_ij xhat_j (`pull`), then publishes the compressed difference q = Q(x - xhat):
xhat += q, s += sum_j w_ij q_j (`publish`; one message to each neighbour). The average of the x_i
is preserved exactly whatever Q does; s_i is kept as one vector (L1109), so a worker stores three
model-sized vectors whatever its degree. Q acts per tensor. The public copies start at zero
(L1084, pitfall 9) or, with `public_init="x0"`, at the initial model.

`ErrorFeedbackGossip` is the same round in the error-feedback form of Alg. 15: the memory
m = x^(t-1) - xhat is added to the change x^(t) - x^(t-1) before compressing, m <- v - Q(v)
(Alg. 15 prints eta for gamma in its line 3; gamma is meant).

CHOCO-SGD (Alg. 2; with the optimizer's momentum, Alg. 3), in one of two orders:

* `gossip_first` (the thesis's Alg. 2, the default): x^(t) = pull(x^(t-1/2)), publish x^(t), then
  the gradient step at x^(t), x^(t+1/2) = x^(t) - eta g(x^(t)); communication overlaps the
  gradient computation. The state's params are x^(t+1/2), which is also what Alg. 2 returns.
* `step_first` (Koloskova et al. 2019): the step x^(t+1/2) = x^(t) - eta g(x^(t)), publish
  x^(t+1/2), then pull with the new copies.

Both send one compressed message to each neighbour per step. The mixing matrix must be fixed:
s_i = sum_j w_ij xhat_j accumulates messages mixed by one W, and the thesis analyses CHOCO on
static graphs only (Assumption 4).
"""

from __future__ import annotations

from typing import Any

import jax
import optax.tree_utils as otu

from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.communication.compression import Compressor
from jaxdist.communication.gossip import Gossip
from jaxdist.core.state import per_worker, state_class
from jaxdist.errors import ArgumentError, check_at_least, check_choice, is_traced

PyTree = Any
ORDERS = ("gossip_first", "step_first")
PUBLIC_INITS = ("zero", "x0")
FORMS = ("public_copies", "error_feedback")


@state_class
class PublicCopies:
  own: PyTree = per_worker()  # xhat_i
  mixed: PyTree = per_worker()  # s_i = sum_j w_ij xhat_j


@state_class
class Memory:
  previous: PyTree = per_worker()  # x_i^(t-1), the model last published from
  memory: PyTree = per_worker()  # m_i = x_i^(t-1) - xhat_i
  mixed: PyTree = per_worker()  # s_i = sum_j w_ij xhat_j


def _check_choco(gossip, compressor, consensus_step, public_init) -> None:
  if not isinstance(compressor, Compressor):
    raise ArgumentError("compressor", f"{compressor!r} is not a compressor",
                        "jaxdist.compression.TopK(a), RandomK(a), Sign(), QSGD(b), Identity()")
  if not compressor.is_contraction:
    raise ArgumentError("compressor", "CHOCO needs a contractive (biased, scaled down) "
                        "compressor", "the biased forms (unbiased=False)")
  check_at_least("consensus_step", consensus_step, 0)
  # past 1 the pull overshoots the neighbours' copies and diverges
  if not is_traced(consensus_step) and consensus_step > 1:
    raise ArgumentError("consensus_step", f"{consensus_step} overshoots: gamma moves x part "
                        "of the way to its neighbours' copies", "0 <= consensus_step <= 1")
  check_choice("public_init", public_init, PUBLIC_INITS)
  if not gossip.static:
    raise ArgumentError("topology", "CHOCO keeps s_i = sum_j w_ij xhat_j for one fixed W, and "
                        f"the thesis analyses it on static graphs only; {gossip.topology.name} "
                        "changes with the step", "ring, torus, complete, exponential, social, "
                        "disconnected")


class ChocoGossip:
  """CHOCO-Gossip with public copies: `pull(params, public)` and
  `publish(params, public, rounds, rng) -> (public, bits)`; a call is one round, pull then
  publish: `(params, public, rounds, rng) -> (params, public, bits)`."""

  def __init__(self, gossip: Gossip, compressor: Compressor, consensus_step: float,
               public_init: str = "zero"):
    _check_choco(gossip, compressor, consensus_step, public_init)
    self.gossip, self.compressor, self.consensus_step = gossip, compressor, consensus_step
    self.public_init = public_init

  def init(self, params: PyTree) -> PublicCopies:
    # every worker starts from the same x0, so s = W x0 = x0 with no communication
    start = otu.tree_zeros_like(params) if self.public_init == "zero" else params
    return PublicCopies(start, start)

  def public(self, state) -> PyTree:
    return state.own

  def pull(self, params, state):
    """x += gamma (s - xhat): towards the neighbours' public copies."""
    return jax.tree.map(lambda x, s, h: x + self.consensus_step * (s - h), params, state.mixed,
                        self.public(state))

  def publish(self, params, state: PublicCopies, rounds, rng):
    sent = self.compressor.tree(otu.tree_sub(params, state.own), rng)
    mixed = otu.tree_add(state.mixed, self.gossip.mix(sent, rounds))
    return PublicCopies(otu.tree_add(state.own, sent), mixed), self.compressor.tree_bits(sent)

  def __call__(self, params, state, rounds, rng):
    params = self.pull(params, state)
    state, bits = self.publish(params, state, rounds, rng)
    return params, state, bits


class ErrorFeedbackGossip(ChocoGossip):
  """CHOCO-Gossip in the error-feedback form of Alg. 15: v = x - x^(t-1) + m, q = Q(v),
  m <- v - q; the same rounds as `ChocoGossip` (xhat = x^(t-1) - m)."""

  def init(self, params: PyTree) -> Memory:
    zeros = otu.tree_zeros_like(params)
    start = zeros if self.public_init == "zero" else params  # x^(-1) = xhat^(0)
    return Memory(start, zeros, start)

  def public(self, state: Memory) -> PyTree:
    return otu.tree_sub(state.previous, state.memory)

  def publish(self, params, state: Memory, rounds, rng):
    v = jax.tree.map(lambda x, p, m: x - p + m, params, state.previous, state.memory)
    sent = self.compressor.tree(v, rng)
    mixed = otu.tree_add(state.mixed, self.gossip.mix(sent, rounds))
    return Memory(params, otu.tree_sub(v, sent), mixed), self.compressor.tree_bits(sent)


@state_class
class ChocoState(DecentralizedState):
  public: Any = None


class ChocoSGD(Decentralized):
  """CHOCO-SGD: CHOCO-Gossip and the local step, in `order`.

  Args:
    compressor: Q, a contractive compressor (`jaxdist.compression.TopK(0.01)`, `Sign()`, ...).
    consensus_step: gamma (tune it per compressor, [Lin22] Table 13.1).
    order: `gossip_first` (Alg. 2: gossip and compress x^(t), then the gradient step) or
      `step_first` (Koloskova et al.: the gradient step, then gossip).
    public_init: the public copies' start, `zero` (L1084) or `x0` (the initial model).
    form: `public_copies` (Alg. 2) or `error_feedback` (Alg. 15, the same algorithm).
    (the others as for `Decentralized`; the topology must be static)
  """

  def __init__(self, *args, compressor: Compressor, consensus_step: float,
               order: str = "gossip_first", public_init: str = "zero",
               form: str = "public_copies", **kwargs):
    super().__init__(*args, **kwargs)
    check_choice("order", order, ORDERS)
    check_choice("form", form, FORMS)
    kind = ChocoGossip if form == "public_copies" else ErrorFeedbackGossip
    self.choco = kind(self.gossip, compressor, consensus_step, public_init)
    self.order = order

  def init(self, params, model_state, rng) -> ChocoState:
    state = super().init(params, model_state, rng)
    return ChocoState(**vars(state), public=self.choco.init(params))

  def step(self, state: ChocoState, batch, rng):
    compress_rng = self.choco.compressor.leaf_key(rng, 2**31 - 1)  # apart from the loss's key
    if self.order == "gossip_first":
      pulled = self.choco.pull(state.params, state.public)
      public, message_bits = self.choco.publish(pulled, state.public, state.rounds,
                                                compress_rng)
      _, opt_state, params, model_state, metrics = self.local_step(
          state.replace(params=pulled), batch, rng)
    else:
      _, opt_state, half, model_state, metrics = self.local_step(state, batch, rng)
      public, message_bits = self.choco.publish(half, state.public, state.rounds, compress_rng)
      params = self.choco.pull(half, public)
    new = state.replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                        opt_state=opt_state, model_state=model_state, public=public)
    return new, self.metrics(metrics, params, 1, self.gossip.neighbours(state.rounds),
                             message_bits)
