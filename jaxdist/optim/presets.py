"""The thesis recipes as named presets: a learning-rate schedule and an optimizer, ready for an
algorithm constructor (`jaxdist.local_sgd(loss, **jaxdist.optim.presets.lin22_sgd(...))`).

Each returns `{"learning_rate": schedule, "optimizer": function of the rate}`.
"""

from __future__ import annotations

import functools
from typing import Any

from jaxdist.optim import optimizers, schedules


def lin22_sgd(*, global_batch: int, train_size: int, total_steps: int, base_lr: float = 0.1,
              base_batch: int = 128, warmup_epochs: float = 5.0,
              weight_decay: float = 1e-4) -> dict[str, Any]:
  """[Lin22] App. 11.1's recipe for CIFAR: Nesterov momentum 0.9, weight decay 1e-4 (not on
  biases and BatchNorm), the rate scaled linearly with the global batch, a linear warmup over 5
  epochs from `base_lr`, /10 at 50% and 75% of all samples."""
  learning_rate = schedules.learning_rate(
      base_lr, global_batch=global_batch, train_size=train_size, total_steps=total_steps,
      base_batch=base_batch, lr_scaling="linear", warmup_epochs=warmup_epochs, schedule="step",
      decay_at=(0.5, 0.75), decay_factor=0.1)
  optimizer = functools.partial(optimizers.sgd, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
  return {"learning_rate": learning_rate, "optimizer": optimizer}


def you20_lars(*, global_batch: int, train_size: int, total_steps: int, base_lr: float = 0.2,
               base_batch: int = 256, warmup_epochs: float = 5.0) -> dict[str, Any]:
  """[You20] ch. 5: LARS with trust coefficient 0.001, the ratio clipped to [0, 50] and gradients
  to [-10, 10], momentum 0.9, weight decay 1e-4, linear scaling, a warmup from 0 and a
  polynomial decay of power 2."""
  learning_rate = schedules.learning_rate(
      base_lr, global_batch=global_batch, train_size=train_size, total_steps=total_steps,
      base_batch=base_batch, lr_scaling="linear", warmup_epochs=warmup_epochs,
      warmup_start_lr=0.0, schedule="poly", decay_power=2.0)
  optimizer = functools.partial(optimizers.lars, momentum=0.9, weight_decay=1e-4,
                                trust_coefficient=0.001, eps=1e-5, trust_clip=(0.0, 50.0),
                                grad_clip_value=10.0)
  return {"learning_rate": learning_rate, "optimizer": optimizer}


def you20_lamb(*, global_batch: int, train_size: int, total_steps: int,
               base_lr: float = 0.04 * (512 / 32768) ** 0.5, base_batch: int = 512,
               warmup_epochs: float = 0.3125) -> dict[str, Any]:
  """[You20] ch. 6: LAMB with decoupled weight decay 0.01, square-root scaling, LEGW warmup (its
  epochs grow with the batch) from 0, and a linear decay to zero."""
  learning_rate = schedules.learning_rate(
      base_lr, global_batch=global_batch, train_size=train_size, total_steps=total_steps,
      base_batch=base_batch, lr_scaling="sqrt", warmup_epochs=warmup_epochs,
      warmup_scaling="legw", warmup_start_lr=0.0, schedule="poly", decay_power=1.0)
  optimizer = functools.partial(optimizers.lamb, weight_decay=0.01, eps=1e-6)
  return {"learning_rate": learning_rate, "optimizer": optimizer}
