"""Decentralized training: workers gossip with their neighbours instead of all-reducing
([Lin22] ch. 4, 5 and 9; App. 13, 14 and 18).

Every worker runs its own optimizer (momentum, Adam moments and BatchNorm statistics stay local);
only parameters travel, through `Gossip` rounds over a topology.

* D-SGD (§4.4, eq. at L1354; Alg. 14): x_i <- sum_j w_ij (x_j + u_j), u_j the local optimizer's
  update. With `optim.momentum` it is DSGDm, with `optim.nesterov` DSGDm-N.
* Quasi-global momentum (Alg. 6, QG-DSGDm): the local momentum buffer is replaced after every
  step by m <- mu m + (1 - mu) (x_t - x_{t+1}) / lr_t, the model difference *after* gossip, which
  carries the neighbours' directions; `qg_period` tau updates it every tau steps only (Alg. 20).
  With Adam (Alg. 19, QG-DAdam) both moments are rebuilt from d / ||d||.
* D^2 and D^2_+ (App. 18.2, L2752): x_{t+1} = W(x_t + u_t + c_t), the correction
  c_t = x_t - x_{t-1} - u_{t-1} of the previous step; D^2 rescales only the update part with
  r_t = lr_t / lr_{t-1} (Tang et al.'s eta_t (g_t - g_{t-1})), D^2_+ the whole of it, so that a
  learning-rate decay does not turn the stale correction into a huge step.
* Gradient tracking: y_t = W y_{t-1} + g_t - g_{t-1} tracks the mean gradient and replaces g in
  the local optimizer; a second gossip round per step.
* CHOCO-SGD (Alg. 2/3, in the order of Koloskova et al. 2019): after the local step x_{t+1/2},
  q_i = Q(x_{t+1/2} - xhat_i) is sent, every public copy moves by its q, and
  x_{t+1} = x_{t+1/2} + gamma (s_i - xhat_i), s_i = sum_j w_ij xhat_j kept as one vector
  (L1109). Public copies start at zero (pitfall 9); Q acts per tensor.

Consensus (ch. 5): every step measures Xi = sqrt(mean_i ||x_i - x_bar||^2) after communication
and the cheap estimator Theta of the gossip round (§5.6). Consensus control (§5.5): in the
learning-rate phases `control_phases`, gossip rounds are repeated until Xi <= `consensus_target`
(at most `max_gossip_rounds` per step); in `exact_phases` the workers average exactly instead
(the "dec-phase-x" runs).

Bits sent per worker per step: each gossip round sends the worker's message to each neighbour;
an all-reduce (the complete graph) counts one model.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxdist.algorithms.local_sgd import bits_per_model
from jaxdist.compression import Compressor
from jaxdist.errors import ConfigError
from jaxdist.gossip import Gossip, consensus_distance, gossip_residual
from jaxdist.workers import PER_WORKER, SHARED, Comm

PyTree = Any
MOMENTUM_KINDS = ("local", "quasi_global")


class State(NamedTuple):
  step: jax.Array
  rounds: jax.Array  # gossip rounds so far: the time of a time-varying topology
  params: PyTree
  opt_state: PyTree
  model_state: PyTree
  previous: PyTree = None  # D^2: (x_{t-1}, u_{t-1}); gradient tracking: (y_{t-1}, g_{t-1})
  public: PyTree = None  # CHOCO: (xhat_i, s_i = sum_j w_ij xhat_j)


STATE_AXES = State(step=SHARED, rounds=SHARED, params=PER_WORKER, opt_state=PER_WORKER,
                   model_state=PER_WORKER, previous=PER_WORKER, public=PER_WORKER)


def _sub(a, b):
  return jax.tree.map(jnp.subtract, a, b)


def _add(a, b):
  return jax.tree.map(jnp.add, a, b)


def _scale(c, tree):
  return jax.tree.map(lambda x: (c * x).astype(x.dtype), tree)


class _Decentralized:
  """The local step and the measurements shared by the decentralized algorithms."""

  state_axes = STATE_AXES

  def __init__(self, loss_fn: Callable, tx: optax.GradientTransformation, comm: Comm,
               gossip: Gossip, learning_rate: optax.Schedule, measure_consensus: bool = True):
    self.loss_fn, self.tx, self.comm, self.gossip = loss_fn, tx, comm, gossip
    self.learning_rate, self.measure_consensus = learning_rate, measure_consensus

  def init(self, params, model_state, rng) -> State:
    del rng
    zero = jnp.zeros((), jnp.int32)
    return State(zero, zero, params, self.tx.init(params), model_state)

  def deployed(self, state: State):
    return state.params, state.model_state

  def _gradients(self, state: State, batch, rng):
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, rng)
    return grads, model_state, metrics

  def _metrics(self, metrics, params, rounds, messages, message_bits, residual=None):
    """`rounds` gossip rounds of `messages` messages of `message_bits` bits each."""
    rounds = jnp.asarray(rounds, jnp.float32)
    bits = rounds * jnp.asarray(messages, jnp.float32) * float(message_bits)
    out = {**metrics, "comm/bits_sent": bits, "comm/rounds": rounds}
    if self.measure_consensus:
      out["consensus/distance"] = consensus_distance(self.comm, params)
      if residual is not None:
        out["consensus/residual"] = residual
    return out

  def _messages(self, rounds) -> jax.Array:
    """Messages this worker sends in a gossip round at time `rounds`."""
    if self.gossip.exchange == "mean":
      return jnp.int32(1)
    return self.gossip.neighbours(rounds)


class DecentralizedSGD(_Decentralized):
  """D-SGD / DSGDm(-N), QG-DSGDm(-N), QG-DAdam; with consensus control. See the module doc."""

  def __init__(self, loss_fn, tx, comm, gossip, learning_rate, *, momentum: str = "local",
               qg_mu: float = 0.9, qg_period: int = 1, phase_steps: Sequence[int] = (),
               consensus_target: float = 0.0, control_phases: Sequence[int] = (),
               exact_phases: Sequence[int] = (), max_gossip_rounds: int = 1,
               adam_betas: tuple[float, float] = (0.9, 0.999), measure_consensus: bool = True):
    super().__init__(loss_fn, tx, comm, gossip, learning_rate, measure_consensus)
    if momentum not in MOMENTUM_KINDS:
      raise ValueError(f"momentum must be one of {MOMENTUM_KINDS}, got {momentum!r}")
    num_phases = len(phase_steps) + 1
    for field, phases in (("algo.control_phases", control_phases),
                          ("algo.exact_phases", exact_phases)):
      if any(not 0 <= p < num_phases for p in phases):
        raise ConfigError(field, f"{tuple(phases)} names a phase the learning-rate schedule "
                          f"does not have", f"phase indices 0..{num_phases - 1}")
    self.momentum, self.qg_mu, self.qg_period = momentum, qg_mu, qg_period
    self.adam_betas = adam_betas
    self.phase_steps = np.asarray(phase_steps, np.int32)
    self.consensus_target, self.max_gossip_rounds = consensus_target, max_gossip_rounds
    self.control_phases = tuple(control_phases) or tuple(range(num_phases))
    self.exact_phases = tuple(exact_phases)

  def init(self, params, model_state, rng) -> State:
    state = super().init(params, model_state, rng)
    if self.momentum == "quasi_global":
      _quasi_global_buffers(state.opt_state)  # fails early without a momentum buffer
    return state

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    half = optax.apply_updates(state.params, updates)
    params, rounds, messages, residual = self._communicate(half, state)
    if self.momentum == "quasi_global":
      opt_state = self._quasi_global(state, opt_state, params)
    new = state._replace(step=state.step + 1, rounds=state.rounds + rounds, params=params,
                         opt_state=opt_state, model_state=model_state)
    return new, self._metrics(metrics, params, rounds, messages, bits_per_model(params), residual)

  def _phase(self, step) -> jax.Array:
    return jnp.searchsorted(jnp.asarray(self.phase_steps), step, side="right")

  def _communicate(self, half, state: State):
    """One gossip round, exact averaging in `exact_phases`, and extra rounds under control:
    (params, rounds, messages per round, Theta)."""
    phase = self._phase(state.step)
    messages = self._messages(state.rounds)
    if self.exact_phases:
      exact = jnp.isin(phase, jnp.asarray(self.exact_phases))
      mixed = lax.cond(exact, self.comm.mean, lambda x: self.gossip.mix(x, state.rounds), half)
      messages = jnp.where(exact, 1, messages)  # one all-reduce
    else:
      mixed = self.gossip.mix(half, state.rounds)
    residual = gossip_residual(self.comm, half, mixed) if self.measure_consensus else None
    if not self.consensus_target:
      return mixed, 1, messages, residual
    controlled = jnp.isin(phase, jnp.asarray(self.control_phases))
    if self.exact_phases:
      controlled &= ~exact

    def more(carry):
      params, rounds = carry
      return (controlled & (rounds < self.max_gossip_rounds) &
              (consensus_distance(self.comm, params) > self.consensus_target))

    def gossip_again(carry):
      params, rounds = carry
      return self.gossip.mix(params, state.rounds + rounds), rounds + 1

    params, rounds = lax.while_loop(more, gossip_again, (mixed, jnp.int32(1)))
    return params, rounds, messages, residual

  def _quasi_global(self, state: State, opt_state, params):
    """m <- mu m + (1 - mu) d, d = (x_t - x_{t+1}) / lr_t (Alg. 6, pitfall 7: this step's rate);
    for Adam, both moments from d / ||d|| (Alg. 19)."""
    lr = self.learning_rate(state.step)
    d = jax.tree.map(lambda a, b: (a - b) / jnp.where(lr > 0, lr, 1.0), state.params, params)
    old = _quasi_global_buffers(state.opt_state)
    mu = self.qg_mu
    if "nu" in old:  # QG-DAdam
      norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(d)))
      d = _scale(1.0 / jnp.maximum(norm, 1e-12), d)
      b1, b2 = self.adam_betas
      new = {"mu": jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, old["mu"], d),
             "nu": jax.tree.map(lambda v, x: b2 * v + (1 - b2) * x * x, old["nu"], d)}
    else:
      new = {"trace": jax.tree.map(lambda m, x: mu * m + (1 - mu) * x, old["trace"], d)}
    if self.qg_period > 1:  # Alg. 20: the buffer moves every tau steps only
      due = (state.step + 1) % self.qg_period == 0
      new = jax.tree.map(lambda n, o: jnp.where(due, n, o), new, old)
    return optax.tree_utils.tree_set(opt_state, **new)


def _quasi_global_buffers(opt_state) -> dict[str, PyTree]:
  """The momentum buffer(s) that quasi-global momentum takes over: SGD's trace or Adam's
  moments."""
  for names in (("mu", "nu"), ("trace",)):
    buffers = {n: optax.tree_utils.tree_get(opt_state, n) for n in names}
    if all(b is not None for b in buffers.values()):
      return buffers
  raise ConfigError("optim.momentum", "quasi-global momentum replaces a momentum buffer, and the "
                    "optimizer has none", "optim.optimizer='sgd' with optim.momentum > 0, or "
                    "'adam'")


class D2(_Decentralized):
  """D^2 (`rescale_all=False`) and D^2_+ (`rescale_all=True`); see the module doc."""

  def __init__(self, loss_fn, tx, comm, gossip, learning_rate, *, rescale_all: bool,
               measure_consensus: bool = True):
    super().__init__(loss_fn, tx, comm, gossip, learning_rate, measure_consensus)
    self.rescale_all = rescale_all

  def init(self, params, model_state, rng) -> State:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return super().init(params, model_state, rng)._replace(previous=(params, zeros))

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    previous_params, previous_updates = state.previous
    lr, previous_lr = self.learning_rate(state.step), self.learning_rate(state.step - 1)
    ratio = jnp.where((state.step > 0) & (previous_lr > 0), lr / previous_lr, 1.0)
    drift = _sub(state.params, previous_params)
    if self.rescale_all:
      correction = _scale(ratio, _sub(drift, previous_updates))
    else:
      correction = _sub(drift, _scale(ratio, previous_updates))
    half = _add(_add(state.params, updates), correction)
    params = self.gossip.mix(half, state.rounds)
    residual = gossip_residual(self.comm, half, params) if self.measure_consensus else None
    new = state._replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                         opt_state=opt_state, model_state=model_state,
                         previous=(state.params, updates))
    return new, self._metrics(metrics, params, 1, self._messages(state.rounds),
                              bits_per_model(params), residual)


class GradientTracking(_Decentralized):
  """y_t = W y_{t-1} + g_t - g_{t-1}; x_{t+1} = W(x_t + opt(y_t)). Two gossip rounds a step."""

  def init(self, params, model_state, rng) -> State:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return super().init(params, model_state, rng)._replace(previous=(zeros, zeros))

  def step(self, state: State, batch, rng):
    grads, model_state, metrics = self._gradients(state, batch, rng)
    tracker, previous_grads = state.previous
    tracker = _add(self.gossip.mix(tracker, state.rounds), _sub(grads, previous_grads))
    updates, opt_state = self.tx.update(tracker, state.opt_state, state.params)
    half = optax.apply_updates(state.params, updates)
    params = self.gossip.mix(half, state.rounds)
    residual = gossip_residual(self.comm, half, params) if self.measure_consensus else None
    new = state._replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                         opt_state=opt_state, model_state=model_state, previous=(tracker, grads))
    return new, self._metrics(metrics, params, 2, self._messages(state.rounds),
                              bits_per_model(params), residual)


class ChocoGossip:
  """CHOCO-Gossip ([Lin22] App. 13.1.1; Koloskova et al. 2019): one round moves this worker's
  public copy xhat by the compressed difference q = Q(x - xhat), accumulates s += sum_j w_ij q_j,
  and pulls the private x towards its neighbours' public copies, x += gamma (s - xhat). The
  average of the x_i is preserved exactly whatever Q does."""

  def __init__(self, gossip: Gossip, compressor: Compressor, consensus_step: float):
    self.gossip, self.compressor, self.consensus_step = gossip, compressor, consensus_step

  def init(self, params) -> tuple[PyTree, PyTree]:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return zeros, zeros  # public copies start at zero (L1084)

  def __call__(self, params, public, rounds, rng):
    """One round at gossip time `rounds`: (new params, new (xhat, s), bits per message)."""
    own, mixed = public
    sent = self.compressor.tree(_sub(params, own), rng)
    own = _add(own, sent)
    mixed = _add(mixed, self.gossip.mix(sent, rounds))
    params = jax.tree.map(lambda x, s, h: x + self.consensus_step * (s - h), params, mixed, own)
    return params, (own, mixed), self.compressor.tree_bits(sent)


class ChocoSGD(_Decentralized):
  """CHOCO-SGD (Alg. 2; with the optimizer's momentum, Alg. 3): the local step, then one
  CHOCO-Gossip round."""

  def __init__(self, loss_fn, tx, comm, gossip, learning_rate, *, compressor: Compressor,
               consensus_step: float, measure_consensus: bool = True):
    super().__init__(loss_fn, tx, comm, gossip, learning_rate, measure_consensus)
    if not gossip.static:
      raise ConfigError("topology.name", "CHOCO keeps s_i = sum_j w_ij xhat_j for one fixed W; "
                        f"{gossip.topology.name} changes with the step",
                        "ring, torus, complete, exponential, social")
    if not compressor.is_contraction:
      raise ConfigError("algo.compress_unbiased", "CHOCO needs a contractive (biased, scaled "
                        "down) compressor", "False")
    self.choco = ChocoGossip(gossip, compressor, consensus_step)

  def init(self, params, model_state, rng) -> State:
    return super().init(params, model_state, rng)._replace(public=self.choco.init(params))

  def step(self, state: State, batch, rng):
    compress_rng, rng = jax.random.split(rng)
    grads, model_state, metrics = self._gradients(state, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    half = optax.apply_updates(state.params, updates)
    params, public, message_bits = self.choco(half, state.public, state.rounds, compress_rng)
    new = state._replace(step=state.step + 1, rounds=state.rounds + 1, params=params,
                         opt_state=opt_state, model_state=model_state, public=public)
    return new, self._metrics(metrics, params, 1, self.gossip.neighbours(state.rounds),
                              message_bits)
