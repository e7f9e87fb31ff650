"""The local SGD family ([Lin22] ch. 2, App. 11): constructors from plain arguments.

Each returns a `LocalSGD` built from its pieces (schedules, averaging rules, sign steps); build
`LocalSGD` directly for other combinations.
"""

from __future__ import annotations

import optax

from jaxdist.algorithms.base import LearningRate, LossFn, Optimizer, resolve_optimizer
from jaxdist.algorithms.extrapolation import Extrapolation
from jaxdist.algorithms.local_sgd.algorithm import LocalSGD, LocalSGDState
from jaxdist.algorithms.local_sgd.averaging import Averaging, GlobalMomentum, ModelAverage
from jaxdist.algorithms.local_sgd.schedules import (
  Hierarchical,
  LocalStepsWarmup,
  Periodic,
  PostLocal,
)
from jaxdist.algorithms.local_sgd.sign import SignAveraging, sign_steps
from jaxdist.errors import ArgumentError, check_at_least

__all__ = [
  "Averaging",
  "GlobalMomentum",
  "Hierarchical",
  "LocalSGD",
  "LocalSGDState",
  "LocalStepsWarmup",
  "ModelAverage",
  "Periodic",
  "PostLocal",
  "SignAveraging",
  "algorithm",
  "averaging",
  "ef_sign_sgd",
  "hierarchical_local_sgd",
  "local_sgd",
  "post_local_sgd",
  "schedules",
  "sign",
  "sign_sgd",
  "sign_steps",
]


def _averaging(global_momentum: float) -> Averaging:
  check_at_least("global_momentum", global_momentum, 0)
  return GlobalMomentum(global_momentum) if global_momentum else ModelAverage()


def local_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
              learning_rate: LearningRate = None,
              local_steps: int = 4, global_momentum: float = 0.0,
              extrapolation: Extrapolation | None = None, average_start: int = 0,
              average_offset: int = 0, warmup_steps: int = 0,
              warmup_ramp: str = "exponential") -> LocalSGD:
  """Local SGD (eq. 2.2, Alg. 7): `local_steps` = H optimizer steps on every worker, then the
  models are averaged.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate (default `optax.sgd`).
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    local_steps: H, local steps between two averagings; 1 is mini-batch SGD's numbers for SGD.
    global_momentum: block momentum on the averaged model differences (App. 11.2.4); 0 for
      plain averaging.
    extrapolation: where the gradients are taken (`jaxdist.extrapolation.PastGradient()`, ...).
    average_start: local steps before the periodic averaging starts (none are averaged).
    average_offset: the first average comes this many steps after `average_start` (0: after
      H), then every H; `average_start=w, average_offset=1` is PyTorch's
      `PeriodicModelAverager(H, warmup_steps=w)`.
    warmup_steps: H grows from 1 to `local_steps` over these first steps ([Lin22] L2959,
      App. 11.2.5); 0 for none.
    warmup_ramp: "exponential" (1, 2, 4, ...), "linear" (1, 2, 3, ...) or "constant" (1).

  Returns:
    The algorithm, to run with `jaxdist.train` or `jaxdist.Runner`.
  """
  if warmup_steps:
    if average_start or average_offset:
      raise ArgumentError("warmup_steps", "a warm-up of H replaces the averaging offset",
                          "warmup_steps = 0 with average_start or average_offset")
    schedule = LocalStepsWarmup(local_steps, warmup_steps, warmup_ramp)
  else:
    schedule = Periodic(local_steps, average_start, average_offset)
  return LocalSGD(loss_fn, optimizer, learning_rate, schedule=schedule,
                  averaging=_averaging(global_momentum), extrapolation=extrapolation)


def post_local_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                   learning_rate: LearningRate = None,
                   switch_step: int, local_steps: int = 16, global_momentum: float = 0.0,
                   extrapolation: Extrapolation | None = None,
                   post_local_gradient_allreduce: bool = False) -> LocalSGD:
  """Post-local SGD (Alg. 8): mini-batch SGD for `switch_step` steps (the thesis switches at the
  first learning-rate decay), local SGD with H = `local_steps` afterwards.

  Args:
    switch_step: steps of mini-batch SGD before the local steps start.
    post_local_gradient_allreduce: after the switch, keep averaging the gradients within each
      node every step (PyTorch's `PostLocalSGDState(post_local_gradient_allreduce=True)`); run
      it on a grid of (nodes, workers per node).
    (the others as for `local_sgd`)
  """
  check_at_least("switch_step", switch_step, 0, integer=True)
  return LocalSGD(loss_fn, optimizer, learning_rate,
                  schedule=Periodic(local_steps, start=int(switch_step)),
                  averaging=_averaging(global_momentum), minibatch_steps=switch_step,
                  extrapolation=extrapolation,
                  subgroup_gradients=post_local_gradient_allreduce)


def hierarchical_local_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                           learning_rate: LearningRate = None, local_steps: int = 1,
                           block_steps: int = 1,
                           extrapolation: Extrapolation | None = None,
                           switch_step: int = 0) -> LocalSGD:
  """Hierarchical local SGD (eq. 11.1): on a (nodes, workers per node) grid, average within the
  node every `local_steps` = H steps and over all workers every H * `block_steps` steps; with
  `switch_step`, mini-batch SGD over all workers first (post-local SGD's warm-up, Alg. 8).

  Run it with `grid=(nodes, workers_per_node)` in the runner.
  """
  check_at_least("switch_step", switch_step, 0, integer=True)
  return LocalSGD(loss_fn, optimizer, learning_rate,
                  schedule=Hierarchical(local_steps, block_steps, start=int(switch_step)),
                  minibatch_steps=switch_step, extrapolation=extrapolation)


def sign_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
             learning_rate: LearningRate = None,
             local_steps: int = 1, error_feedback: bool = False, switch_step: int = 0,
             extrapolation: Extrapolation | None = None,
             majority_vote: bool = False) -> LocalSGD:
  """(Post-)local signSGD (Alg. 9) or EF-signSGD (Alg. 10, `error_feedback=True`): local steps
  by lr * sign(direction), averaging by sign(delta) * ||delta||_1 / d per tensor.

  Args:
    local_steps: H after the switch.
    error_feedback: keep the compression error and add it to the next delta.
    switch_step: steps with H = 1 first (post-local); 0 for none.
    majority_vote: the new model moves by the workers' majority sign, scaled by their mean
      scale, instead of the mean of their messages (Table 11.10).
    (the others as for `local_sgd`; the learning rate is required, the steps use it. Sign steps
    move every weight by the learning rate: models without normalisation layers need rates
    near 1e-3 to 1e-2, [Lin22]'s 0.1 is for ResNet-20 with BatchNorm)
  """
  resolve_optimizer(optimizer, learning_rate, "sign compression")  # the steps need the rate
  check_at_least("switch_step", switch_step, 0, integer=True)
  plan = PostLocal(int(switch_step), local_steps) if switch_step else Periodic(local_steps)

  def signed(schedule):
    return optax.chain(optimizer(schedule), sign_steps(schedule))

  return LocalSGD(loss_fn, signed, learning_rate, schedule=plan,
                  averaging=SignAveraging(error_feedback, majority_vote),
                  extrapolation=extrapolation)


def ef_sign_sgd(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
                learning_rate: LearningRate = None) -> LocalSGD:
  """Centralized EF-signSGD (Karimireddy et al. 2019 on K workers; [Lin22] Table 4.1's
  baseline): every step each worker sends sign(p) ||p||_1 / d per tensor of p = its optimizer
  update plus its error memory, keeps the error, and all move by the mean of the messages.

  Args:
    (as for `local_sgd`)
  """
  return LocalSGD(loss_fn, optimizer, learning_rate, schedule=Periodic(1),
                  averaging=SignAveraging(error_feedback=True))
