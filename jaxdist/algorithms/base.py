"""What every algorithm shares: the loss contract, the local gradient, the optimizer and its rate.

The loss contract (`LossFn`): `loss_fn(params, model_state, batch, rng) -> (loss, (model_state,
metrics))`, for one worker's batch. `model_state` holds non-trained variables such as BatchNorm
statistics (`{}` if none) and comes back updated; `metrics` is a flat dict of scalars (e.g.
`{"loss": loss, "accuracy": acc}`) that the runner averages over the workers. The batch is what
the data source gives one worker for one step, plus `batch["step"]`, the iteration (the same on
every worker). `jaxdist.objectives.classification` builds one from a model.

The optimizer and the learning rate are given once: either an optax optimizer alone
(`optax.adam(1e-3)`), or a function of the rate (`optax.sgd`, `functools.partial(optax.sgd,
momentum=0.9)`, `jaxdist.optim.sgd`) with `learning_rate` a float or a schedule. Algorithms that
use the rate themselves (global momentum, quasi-global momentum, D^2, extrapolation, sign steps)
need the second form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxdist.errors import ArgumentError
from jaxdist.optim.schedules import as_schedule

PyTree = Any
Metrics = dict[str, jax.Array]
LossFn = Callable[[PyTree, PyTree, Any, jax.Array], tuple[jax.Array, tuple[PyTree, Metrics]]]
Optimizer = optax.GradientTransformation | Callable[[optax.Schedule], optax.GradientTransformation]
LearningRate = float | optax.Schedule | None


def resolve_optimizer(optimizer: Optimizer, learning_rate: LearningRate,
                      needs_rate: str | None = None
                      ) -> tuple[optax.GradientTransformation, optax.Schedule | None]:
  """The optimizer and the schedule it runs on; `needs_rate` says why the algorithm needs it."""
  if isinstance(optimizer, optax.GradientTransformation):
    if learning_rate is not None:
      raise ArgumentError("learning_rate", "given twice: the optimizer is already built with its "
                          "own rate, and nothing would keep the two equal",
                          "an optax optimizer alone, or optimizer as a function of the rate "
                          "(e.g. optax.sgd) together with learning_rate")
    if needs_rate:
      raise ArgumentError("learning_rate", f"{needs_rate} needs the learning rate",
                          "optimizer as a function of the rate (e.g. optax.sgd) together with "
                          "learning_rate, a float or a schedule")
    return optimizer, None
  if not callable(optimizer):
    raise ArgumentError("optimizer", f"{optimizer!r} is not an optimizer",
                        "an optax GradientTransformation, or a function of the learning rate "
                        "returning one (optax.sgd, jaxdist.optim.sgd, ...)")
  if learning_rate is None:
    raise ArgumentError("learning_rate", "missing: the optimizer is a function of the rate",
                        "a float or an optax schedule")
  schedule = as_schedule(learning_rate)
  tx = optimizer(schedule)
  if not isinstance(tx, optax.GradientTransformation):
    raise ArgumentError("optimizer", f"returned {type(tx).__name__}, not an optax "
                        "GradientTransformation", "a function of the rate returning one")
  return tx, schedule


def check_loss(loss_fn: Any) -> None:
  if not callable(loss_fn):
    raise ArgumentError("loss_fn", f"{loss_fn!r} is not a function",
                        "loss_fn(params, model_state, batch, rng) -> (loss, (model_state, "
                        "metrics))")


def gradients(loss_fn: LossFn, params: PyTree, model_state: PyTree, batch: Any,
              rng: jax.Array) -> tuple[PyTree, PyTree, Metrics]:
  """(grads, new model_state, metrics) of `loss_fn` at `params` on this worker's batch."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, aux), grads = grad_fn(params, model_state, batch, rng)
  try:
    model_state, metrics = aux
  except (TypeError, ValueError):
    raise ArgumentError("loss_fn", "must return (loss, (model_state, metrics))",
                        "loss_fn(params, model_state, batch, rng) -> (loss, (model_state, "
                        "metrics))") from None
  return grads, model_state, metrics


def local_update(tx: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
                 params: PyTree) -> tuple[PyTree, PyTree, PyTree]:
  """(updates, new opt_state, params after the update) of one optimizer step."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return updates, opt_state, optax.apply_updates(params, updates)


def bits_per_model(params: PyTree) -> int:
  """Bits in one full-precision message of the parameters."""
  return sum(x.size * x.dtype.itemsize * 8 for x in jax.tree.leaves(params))
