"""The thesis's large-batch training recipe ([Lin22] §2.2 and App. 11.1.3) on optax.

* learning rate scaled with the global batch K*B (linear or square-root rule), reached by a gradual
  linear warmup from the unscaled rate (or a given start) over some epochs;
* decays counted in samples seen (e.g. /10 at 50% and 75% of all samples), never in rounds;
* SGD with Nesterov momentum in PyTorch's form (m <- beta*m + g; x <- x - lr*(g + beta*m)), weight
  decay added to the gradient before the momentum, and not applied to biases and normalisation
  parameters (every leaf of rank < 2).
"""

import math

import jax
import ml_collections
import optax

from jaxdist.errors import ConfigError

LR_SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("step", "constant", "cosine")
OPTIMIZERS = ("sgd",)


def learning_rate(config: ml_collections.ConfigDict, *, global_batch: int, train_size: int,
                  total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step, defined on the number of samples seen."""
  if config.lr_scaling not in LR_SCALINGS:
    raise ConfigError("optim.lr_scaling", f"unknown rule {config.lr_scaling!r}", LR_SCALINGS)
  if config.schedule not in SCHEDULES:
    raise ConfigError("optim.schedule", f"unknown schedule {config.schedule!r}", SCHEDULES)
  ratio = global_batch / config.base_batch
  peak = config.base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[
      config.lr_scaling]
  total = total_steps * global_batch
  warmup = round(config.warmup_epochs * train_size)
  if not 0 <= warmup < total:
    raise ConfigError("optim.warmup_epochs",
                      f"{config.warmup_epochs} epochs of warmup do not fit the run",
                      f"0 <= warmup_epochs < {total / train_size:g}")
  if config.schedule == "step":
    fractions = tuple(config.decay_at)
    if list(fractions) != sorted(fractions) or not all(
        warmup / total < f < 1 for f in fractions):
      raise ConfigError("optim.decay_at", f"{fractions} are not increasing fractions of the run "
                        "after the warmup", f"increasing values in ({warmup / total:g}, 1)")
    after_warmup = optax.piecewise_constant_schedule(
        peak, {round(f * total) - warmup: config.decay_factor for f in fractions})
  elif config.schedule == "cosine":
    after_warmup = optax.cosine_decay_schedule(peak, total - warmup)
  else:
    after_warmup = optax.constant_schedule(peak)
  per_sample = after_warmup
  if warmup:
    start = config.base_lr if config.warmup_start_lr is None else config.warmup_start_lr
    per_sample = optax.join_schedules(
        [optax.linear_schedule(start, peak, warmup), after_warmup], [warmup])
  return lambda step: per_sample(step * global_batch)


def optimizer(config: ml_collections.ConfigDict,
              lr: optax.Schedule) -> optax.GradientTransformation:
  """The per-worker optimizer (for local methods its state stays on the worker)."""
  if config.optimizer not in OPTIMIZERS:
    raise ConfigError("optim.optimizer", f"unknown optimizer {config.optimizer!r}", OPTIMIZERS)
  decay = optax.identity()
  if config.weight_decay:
    mask = None if config.decay_norm_and_bias else _is_weight_matrix
    decay = optax.add_decayed_weights(config.weight_decay, mask=mask)
  return optax.chain(decay, optax.sgd(lr, momentum=config.momentum or None,
                                      nesterov=config.nesterov))


def _is_weight_matrix(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)
