"""Synchronous SGD with a parameter server, and with backup workers ([S3 L553-668, L1449-1469];
Chen et al. 2016, "Revisiting distributed synchronous SGD" [ext]).

Every step, N + b workers compute a gradient at the same x_t, each taking a time drawn from its
compute-time model; the server aggregates the first N to arrive and drops the b late ones, then
steps. No stale gradient is ever applied, so per step it is synchronous SGD on N workers; a step
lasts the N-th smallest of the N + b times (H_{N+b} - H_b for Exp(1) times, against H_N with no
backup: the spec's check 6). With b = 0 it is the plain synchronous parameter server, which is
mini-batch SGD (`jaxdist.minibatch_sgd`), bit for bit.

Sum or mean over the N gradients is explicit (pitfall 4): the slides' sum [S3 L556], or the mean
that mini-batch SGD uses. Written for one worker with the collectives (one all-gather of a scalar
time, one all-reduce of the gradients), so it runs simulated or over a device mesh.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdist.algorithms import base
from jaxdist.asynchrony.compute_time import ComputeTime, Exponential, check_compute_time
from jaxdist.asynchrony.simulator import REDUCTIONS
from jaxdist.core import collectives
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.errors import ArgumentError, check_at_least, check_choice

EXP1 = Exponential()  # Exp(1) times, the order-statistics model of check 6


@state_class
class BackupState:
  step: jax.Array = shared()
  params: Any = shared()
  opt_state: Any = shared()
  model_state: Any = per_worker()
  clock: jax.Array = shared()  # model time: the sum of the steps' waits


class BackupSGD:
  """Synchronous SGD that uses the first N = K - `num_backup` of K workers' gradients.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`.
    optimizer: an optax optimizer, or a function of the learning rate.
    learning_rate: a float or a schedule, when `optimizer` is a function of it.
    num_backup: b, the workers launched beyond the N whose gradients are used.
    compute_time: each worker's compute time per step (default Exp(1)).
    reduction: `"mean"` (over the N used: mini-batch SGD) or `"sum"` (their sum, the slides').
  """

  def __init__(self, loss_fn: base.LossFn, optimizer: base.Optimizer,
               learning_rate: base.LearningRate = None, *, num_backup: int = 0,
               compute_time: ComputeTime = EXP1, reduction: str = "mean"):
    base.check_loss(loss_fn)
    check_at_least("num_backup", num_backup, 0, integer=True)
    check_compute_time("compute_time", compute_time)
    check_choice("reduction", reduction, REDUCTIONS)
    self.loss_fn, self.num_backup = loss_fn, num_backup
    self.compute_time, self.reduction = compute_time, reduction
    self.tx, self.learning_rate = base.resolve_optimizer(optimizer, learning_rate)

  def init(self, params, model_state, rng) -> BackupState:
    del rng
    return BackupState(jnp.zeros((), jnp.int32), params, self.tx.init(params), model_state,
                       jnp.zeros((), jnp.float32))

  def step(self, state: BackupState, batch, rng):
    workers = collectives.num_workers()
    used = workers - self.num_backup
    if used < 1:
      raise ArgumentError("num_backup", f"{self.num_backup} leaves no worker of {workers} to "
                          "wait for", f"0 .. {workers - 1}")
    grad_rng, time_rng = jax.random.split(rng)
    grads, model_state, metrics = base.gradients(self.loss_fn, state.params, state.model_state,
                                                 batch, grad_rng)
    time = self.compute_time.sample(time_rng, collectives.index())
    times = collectives.gather(time)
    me = collectives.index()
    rank = jnp.sum((times < time) | ((times == time) & (jnp.arange(workers) < me)))
    arrived = (rank < used).astype(jnp.float32)  # among the first N (ties by worker index)
    scale = workers / used if self.reduction == "mean" else float(workers)
    kept = collectives.mean(jax.tree.map(lambda g: g * arrived, grads))
    aggregate = kept if scale == 1.0 else jax.tree.map(lambda g: g * scale, kept)
    _, opt_state, params = base.local_update(self.tx, aggregate, state.opt_state, state.params)
    wait = jnp.sort(times)[used - 1]  # the N-th arrival ends the step
    new = BackupState(state.step + 1, params, opt_state, model_state, state.clock + wait)
    return new, {**metrics, "time/step": wait, "time/total": new.clock,
                 "comm/bits_sent": jnp.float32(base.bits_per_model(state.params)),
                 "comm/rounds": jnp.float32(1)}

  def deployed(self, state: BackupState):
    return state.params, state.model_state


def backup_sgd(loss_fn: base.LossFn, optimizer: base.Optimizer, *,
               learning_rate: base.LearningRate = None, num_backup: int,
               compute_time: ComputeTime = EXP1, reduction: str = "mean") -> BackupSGD:
  """Synchronous SGD with `num_backup` backup workers: the first N = K - b gradients of K."""
  return BackupSGD(loss_fn, optimizer, learning_rate, num_backup=num_backup,
                   compute_time=compute_time, reduction=reduction)


def sync_ps(loss_fn: base.LossFn, optimizer: base.Optimizer, *,
            learning_rate: base.LearningRate = None, reduction: str,
            compute_time: ComputeTime = EXP1) -> BackupSGD:
  """The plain synchronous parameter server: waits for all K workers' gradients every step."""
  return BackupSGD(loss_fn, optimizer, learning_rate, num_backup=0, compute_time=compute_time,
                   reduction=reduction)


def expected_wait(needed: int, backup: int) -> float:
  """E[N-th smallest of N + b Exp(1) times] = H_{N+b} - H_b."""
  return float(sum(1.0 / k for k in range(backup + 1, needed + backup + 1)))
