"""Learning-rate schedules of the large-batch recipes, counted in samples ([Lin22] §2.2, App.
11.1.3; [You20] ch. 5-6).

The rate is scaled with the global batch K*B (linear or square-root rule), reached by a linear
warmup (whose length grows with the batch under LEGW), then decays in steps (e.g. /10 at 50% and
75% of all samples), polynomially to zero, or along a cosine. Everything is defined on the number
of samples seen, never on rounds, so runs with different H or K stay comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optax

from jaxdist.errors import ArgumentError, check_at_least, check_choice

LR_SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("step", "constant", "cosine", "poly")
WARMUP_SCALINGS = ("none", "legw")


def learning_rate(base_lr: float, *, global_batch: int, train_size: int, total_steps: int,
                  base_batch: int | None = None, lr_scaling: str = "none",
                  warmup_epochs: float = 0.0, warmup_scaling: str = "none",
                  warmup_start_lr: float | None = None, schedule: str = "constant",
                  decay_at: Sequence[float] = (0.5, 0.75), decay_factor: float = 0.1,
                  decay_power: float = 2.0) -> optax.Schedule:
  """The learning rate as a function of the step.

  Args:
    base_lr: the rate at `base_batch` samples per step.
    global_batch: samples per step over all workers (K * B).
    train_size: training examples (an epoch).
    total_steps: steps of the run.
    base_batch: the batch `base_lr` is tuned for; default `global_batch` (no scaling).
    lr_scaling: `linear` or `sqrt` scaling of the rate by global_batch / base_batch, or `none`.
    warmup_epochs: epochs of linear warmup from `warmup_start_lr` (default `base_lr`).
    warmup_scaling: `legw` grows the warmup epochs with the batch ratio (constant steps).
    warmup_start_lr: the rate the warmup starts from.
    schedule: after the warmup, `constant`, `step` (times `decay_factor` at the fractions
      `decay_at` of all samples), `poly` (to zero with `decay_power`) or `cosine`.
    decay_at: fractions of the run at which a step schedule decays.
    decay_factor: factor of each step decay.
    decay_power: power of the polynomial decay.

  Returns:
    An optax schedule of the step.
  """
  check_at_least("base_lr", base_lr, 0)
  check_at_least("global_batch", global_batch, 1, integer=True)
  check_at_least("train_size", train_size, 1, integer=True)
  check_at_least("total_steps", total_steps, 1, integer=True)
  base_batch = global_batch if base_batch is None else base_batch
  check_at_least("base_batch", base_batch, 1)
  check_choice("lr_scaling", lr_scaling, LR_SCALINGS)
  check_choice("schedule", schedule, SCHEDULES)
  check_choice("warmup_scaling", warmup_scaling, WARMUP_SCALINGS)
  check_at_least("warmup_epochs", warmup_epochs, 0)
  check_at_least("decay_factor", decay_factor, 0)
  check_at_least("decay_power", decay_power, 0)
  if warmup_start_lr is not None:
    check_at_least("warmup_start_lr", warmup_start_lr, 0)
  ratio = global_batch / base_batch
  peak = base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[lr_scaling]
  total = total_steps * global_batch
  # LEGW: warmup epochs grow with the batch, so the warmup keeps its number of iterations.
  warmup_epochs = warmup_epochs * (ratio if warmup_scaling == "legw" else 1.0)
  warmup = round(warmup_epochs * train_size)
  if not 0 <= warmup < total:
    raise ArgumentError("warmup_epochs", f"{warmup_epochs:g} epochs of warmup do not fit the run",
                        f"0 <= warmup epochs < {total / train_size:g}")
  if schedule == "step":
    fractions = tuple(decay_at)
    if list(fractions) != sorted(fractions) or not all(
        warmup / total < f < 1 for f in fractions):
      raise ArgumentError("decay_at", f"{fractions} are not increasing fractions of the run "
                          "after the warmup", f"increasing values in ({warmup / total:g}, 1)")
    after_warmup = optax.piecewise_constant_schedule(
        peak, {round(f * total) - warmup: decay_factor for f in fractions})
  elif schedule == "cosine":
    after_warmup = optax.cosine_decay_schedule(peak, total - warmup)
  elif schedule == "poly":
    after_warmup = optax.polynomial_schedule(peak, 0.0, decay_power, total - warmup)
  else:
    after_warmup = optax.constant_schedule(peak)
  per_sample = after_warmup
  if warmup:
    start = base_lr if warmup_start_lr is None else warmup_start_lr
    per_sample = optax.join_schedules(
        [optax.linear_schedule(start, peak, warmup), after_warmup], [warmup])
  return lambda step: per_sample(step * global_batch)


def decay_steps(decay_at: Sequence[float], *, global_batch: int,
                total_steps: int) -> tuple[int, ...]:
  """First steps of the learning-rate phases after the first: where a step schedule decays."""
  total = total_steps * global_batch
  return tuple(math.ceil(round(f * total) / global_batch) for f in decay_at)


def as_schedule(learning_rate: float | optax.Schedule, name: str = "learning_rate"
                ) -> optax.Schedule:
  """A constant rate as a schedule; a schedule as it is."""
  if callable(learning_rate):
    return learning_rate
  check_at_least(name, learning_rate, 0)
  return optax.constant_schedule(learning_rate)
