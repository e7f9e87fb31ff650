"""Decentralized training ([Lin22] ch. 4, 5, 9): workers gossip with their neighbours instead of
all-reducing. Constructors from plain arguments; the classes compose further.
"""

from __future__ import annotations

import functools

import optax

from jaxdist.algorithms.base import LearningRate, LossFn, Optimizer
from jaxdist.algorithms.decentralized.base import Decentralized, DecentralizedState
from jaxdist.algorithms.decentralized.choco import ChocoGossip, ChocoSGD, ChocoState
from jaxdist.algorithms.decentralized.compressed import DCDPSGD, ECDPSGD, DeepSqueeze
from jaxdist.algorithms.decentralized.consensus_control import ConsensusControl, xi_max_per_phase
from jaxdist.algorithms.decentralized.d2 import D2, D2State
from jaxdist.algorithms.decentralized.dsgd import DSGD, GossipOnce
from jaxdist.algorithms.decentralized.gradient_tracking import GradientTracking, TrackingState
from jaxdist.algorithms.decentralized.momentum import DMSGD, ExchangedMomentum, GradientGossip
from jaxdist.algorithms.decentralized.push_sum import SGP, PushSumState
from jaxdist.algorithms.decentralized.quasi_global import QGDSGDm, qg_adam
from jaxdist.algorithms.decentralized.slowmo import SlowMo, SlowMoState
from jaxdist.communication.compression import Compressor
from jaxdist.communication.topology import Topology

__all__ = [
  "D2",
  "DCDPSGD",
  "DMSGD",
  "DSGD",
  "ECDPSGD",
  "SGP",
  "ChocoGossip",
  "ChocoSGD",
  "ChocoState",
  "ConsensusControl",
  "D2State",
  "Decentralized",
  "DecentralizedState",
  "DeepSqueeze",
  "ExchangedMomentum",
  "GossipOnce",
  "GradientGossip",
  "GradientTracking",
  "PushSumState",
  "QGDSGDm",
  "SlowMo",
  "SlowMoState",
  "TrackingState",
  "base",
  "choco",
  "choco_sgd",
  "compressed",
  "consensus_control",
  "d2",
  "d2_plus",
  "dcd_psgd",
  "deepsqueeze",
  "dmsgd",
  "dsgd",
  "ecd_psgd",
  "gradient_gossip",
  "gradient_tracking",
  "momentum",
  "push_sum",
  "qg_adam",
  "qg_dadam",
  "qg_dsgdm",
  "quasi_global",
  "sgp",
  "shared_momentum",
  "slowmo",
  "xi_max_per_phase",
]


def dsgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, learning_rate: LearningRate = None,
         topology: Topology, exchange: str = "auto", measure_consensus: bool = True,
         consensus_control: ConsensusControl | None = None, seed: int = 0) -> DSGD:
  """D-SGD (§4.4): a local optimizer step, then one gossip round over `topology`; DSGDm and
  DSGDm-N with a momentum optimizer.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    topology: the graph on the run's workers, e.g. `jaxdist.topology.ring(16)`.
    exchange: how neighbours' values arrive: `auto`, `shift` (a ppermute per neighbour offset),
      `dense` (all-gather), `mean` (all-reduce, complete graph only).
    measure_consensus: log the consensus distance every step (an all-reduce of the model).
    consensus_control: extra gossip rounds or exact phases (§5.5); None for one round a step.
    seed: the seed of a random matching's draws.
  """
  return DSGD(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
              measure_consensus=measure_consensus, communication=consensus_control, seed=seed)


def qg_dsgdm(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
             learning_rate: LearningRate = None,
             topology: Topology, qg_mu: float = 0.9, qg_period: int = 1,
             adam_betas: tuple[float, float] = (0.9, 0.999), exchange: str = "auto",
             measure_consensus: bool = True,
             consensus_control: ConsensusControl | None = None, seed: int = 0) -> QGDSGDm:
  """QG-DSGDm (Alg. 6): D-SGD whose momentum buffer is rebuilt from the model difference after
  gossip. The optimizer must have a momentum buffer (SGD with momentum > 0, or Adam for
  QG-DAdam, `quasi_global.qg_adam` of Alg. 19, whose `adam_betas` rebuild both moments; see
  `qg_dadam`).

  Args:
    qg_mu: mu of the quasi-global buffer.
    qg_period: tau, steps between buffer updates (Alg. 20).
    (the others as for `dsgd`)
  """
  return QGDSGDm(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                 measure_consensus=measure_consensus, communication=consensus_control,
                 seed=seed, qg_mu=qg_mu, qg_period=qg_period, adam_betas=adam_betas)


def qg_dadam(loss_fn: LossFn, *, learning_rate: LearningRate, topology: Topology,
             b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
             decay_norm_and_bias: bool = False, grad_clip_norm: float = 0.0,
             qg_period: int = 1, exchange: str = "auto", measure_consensus: bool = True,
             consensus_control: ConsensusControl | None = None, seed: int = 0) -> QGDSGDm:
  """QG-DAdam (Alg. 19): Adam without bias correction, epsilon inside the square root, whose
  moments are rebuilt after gossip from the normalised model difference.

  Args:
    b1, b2: decay rates of the moments (also of their rebuild, lines 10-11).
    eps: added to v inside the square root (line 6).
    weight_decay: L2 decay added to the gradient, of the weight matrices.
    decay_norm_and_bias: also decay the leaves of rank < 2.
    grad_clip_norm: clip the gradient's global norm first; 0 = off.
    (the others as for `qg_dsgdm`)
  """
  optimizer = functools.partial(qg_adam, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                decay_norm_and_bias=decay_norm_and_bias,
                                grad_clip_norm=grad_clip_norm)
  return qg_dsgdm(loss_fn, optimizer, learning_rate=learning_rate, topology=topology,
                  qg_period=qg_period, adam_betas=(b1, b2), exchange=exchange,
                  measure_consensus=measure_consensus, consensus_control=consensus_control,
                  seed=seed)


def d2(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, learning_rate: LearningRate = None,
       topology: Topology, exchange: str = "auto", measure_consensus: bool = True) -> D2:
  """D^2 (App. 18.2): gossip of x_t + u_t + (x_t - x_{t-1} - r_t u_{t-1}), r_t = lr_t/lr_{t-1}."""
  return D2(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
            measure_consensus=measure_consensus, rescale_all=False)


def d2_plus(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
            learning_rate: LearningRate = None,
            topology: Topology, exchange: str = "auto", measure_consensus: bool = True) -> D2:
  """D^2_+ (L2752): D^2 with its whole correction rescaled by lr_t / lr_{t-1}."""
  return D2(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
            measure_consensus=measure_consensus, rescale_all=True)


def gradient_tracking(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                      learning_rate: LearningRate = None,
                      topology: Topology, exchange: str = "auto",
                      measure_consensus: bool = True) -> GradientTracking:
  """Gradient tracking: y_t = W y_{t-1} + g_t - g_{t-1} replaces the gradient; two gossip rounds
  a step."""
  return GradientTracking(loss_fn, optimizer, learning_rate, topology=topology,
                          exchange=exchange, measure_consensus=measure_consensus)


def choco_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
              learning_rate: LearningRate = None,
              topology: Topology, compressor: Compressor, consensus_step: float,
              order: str = "gossip_first", public_init: str = "zero",
              form: str = "public_copies", exchange: str = "auto",
              measure_consensus: bool = True) -> ChocoSGD:
  """CHOCO-SGD (Alg. 2/3): one CHOCO-Gossip round of compressed differences to the public
  copies and the local step.

  Args:
    compressor: a contractive compressor, e.g. `jaxdist.compression.TopK(0.01)`.
    consensus_step: gamma; tune it per compressor (Table 13.1: 0.45 for sign, 0.0375 top-1%).
    order: `gossip_first` (Alg. 2: gossip and compress x^(t), then the gradient step at it) or
      `step_first` (Koloskova et al. 2019: the gradient step, then gossip).
    public_init: where the public copies start, `zero` (L1084) or `x0`.
    form: `public_copies` (Alg. 2) or `error_feedback` (Alg. 15, the same algorithm).
    (the others as for `dsgd`; the topology must be static)
  """
  return ChocoSGD(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                  measure_consensus=measure_consensus, compressor=compressor,
                  consensus_step=consensus_step, order=order, public_init=public_init,
                  form=form)


def dcd_psgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
             learning_rate: LearningRate = None, topology: Topology, compressor: Compressor,
             exchange: str = "auto", measure_consensus: bool = True) -> DCDPSGD:
  """DCD-PSGD (Tang et al. 2018a; [Lin22] Table 4.1): x_{t+1} = x_t + C(sum_j w_ij x_j + u_t -
  x_t), the compressed difference sent to each neighbour. (The arguments as for `choco_sgd`.)"""
  return DCDPSGD(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                 measure_consensus=measure_consensus, compressor=compressor)


def ecd_psgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
             learning_rate: LearningRate = None, topology: Topology, compressor: Compressor,
             exchange: str = "auto", measure_consensus: bool = True) -> ECDPSGD:
  """ECD-PSGD (Tang et al. 2018a; [Lin22] Table 4.1): gossip of extrapolated estimates
  y <- (1 - 2/t) y + (2/t) C((1 - t/2) x_t + (t/2) x_{t+1}); for unbiased compressors."""
  return ECDPSGD(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                 measure_consensus=measure_consensus, compressor=compressor)


def deepsqueeze(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                learning_rate: LearningRate = None, topology: Topology,
                compressor: Compressor, consensus_step: float, exchange: str = "auto",
                measure_consensus: bool = True) -> DeepSqueeze:
  """DeepSqueeze (Tang et al. 2019; [Lin22] Table 4.1): error-compensated compression of
  v = x + u + e, x <- x + u + gamma (sum_j w_ij C(v_j) - C(v_i)).

  Args:
    consensus_step: gamma (Table 13.3: 0.0005-0.05, far below CHOCO's).
    (the others as for `choco_sgd`)
  """
  return DeepSqueeze(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                     measure_consensus=measure_consensus, compressor=compressor,
                     consensus_step=consensus_step)


def sgp(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, learning_rate: LearningRate = None,
        topology: Topology, exchange: str = "auto", measure_consensus: bool = True) -> SGP:
  """Stochastic gradient push (Assran et al. 2019; [Lin22] Table 9.3): push-sum gossip of the
  model and a weight over a column-stochastic W (`jaxdist.topology.directed_exponential(n)`),
  gradients at the de-biased model x / w. (The arguments as for `dsgd`.)"""
  return SGP(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
             measure_consensus=measure_consensus)


def shared_momentum(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                    learning_rate: LearningRate = None, topology: Topology,
                    momentum_exchange: str = "allreduce", exchange: str = "auto",
                    measure_consensus: bool = True) -> ExchangedMomentum:
  """DSGDm(-N) with its momentum buffer all-reduced or gossiped every step ([Lin22] Table 9.6,
  "momentum buffer (complete / ring)"); the optimizer must have momentum.

  Args:
    momentum_exchange: `allreduce` or `gossip`.
    (the others as for `dsgd`)
  """
  return ExchangedMomentum(loss_fn, optimizer, learning_rate, topology=topology,
                           exchange=exchange, measure_consensus=measure_consensus,
                           momentum_exchange=momentum_exchange)


def gradient_gossip(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                    learning_rate: LearningRate = None, topology: Topology,
                    exchange: str = "auto", measure_consensus: bool = True,
                    consensus_control: ConsensusControl | None = None) -> GradientGossip:
  """D-SGD on gossiped local gradients ([Lin22] Table 9.6, "gradient gossip"). (The arguments as
  for `dsgd`; phi_t of consensus control is the norm of the local gradients, before their
  gossip.)"""
  return GradientGossip(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                        measure_consensus=measure_consensus, communication=consensus_control)


def dmsgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
          learning_rate: LearningRate = None, topology: Topology, qg_mu: float = 0.9,
          exchange: str = "auto", measure_consensus: bool = True) -> DMSGD:
  """DMSGD (Balu et al. 2021; [Lin22] Alg. 23-25, Table 9.6): the momentum buffer after gossip
  is mu (beta mhat + g) + (1 - mu) (x_t - x_{t+1}) / lr; heavy-ball SGD with momentum beta.

  Args:
    qg_mu: mu.
    (the others as for `dsgd`)
  """
  return DMSGD(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
               measure_consensus=measure_consensus, qg_mu=qg_mu)


def slowmo(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
           learning_rate: LearningRate = None, topology: Topology, slow_period: int = 12,
           slow_momentum: float = 0.7, slow_lr: float = 1.0, exchange: str = "auto",
           measure_consensus: bool = True,
           consensus_control: ConsensusControl | None = None) -> SlowMo:
  """SlowMo on D-SGD ([Lin22] Alg. 22, Tables 9.6/14.5): every `slow_period` gossip steps an
  exact average and an outer step with slow momentum (defaults alpha = 1, tau = 12,
  beta = 0.7, the thesis's CIFAR-10 values).

  Args:
    slow_period: tau.
    slow_momentum: beta.
    slow_lr: alpha.
    (the others as for `dsgd`)
  """
  return SlowMo(loss_fn, optimizer, learning_rate, topology=topology, exchange=exchange,
                measure_consensus=measure_consensus, slow_period=slow_period,
                slow_momentum=slow_momentum, slow_lr=slow_lr, communication=consensus_control)
