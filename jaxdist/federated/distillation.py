"""FedDF: ensemble distillation for model fusion ([Lin22] ch. 8, Alg. 5).

After the round's FedAvg step the server distills the cohort's ensemble into the fused model on
unlabeled data:

    x <- x_{t,0}  (the round's averaged model; `init="previous"`: the last fused one, Table 17.1)
    repeat N times: d = a batch of unlabeled inputs
      teacher = mean_k f(x_k, d)                        # AVGLOGITS: the logits averaged
      x <- Adam step on KL(softmax(teacher) || softmax(f(x, d)))

Adam 1e-3 with cosine annealing over the N steps, re-created every round; batch 128; early
stopping once the held-out labeled accuracy has not improved for `patience` steps (the best
model is kept); "drop-worst" drops client models whose validation accuracy is at random-guess
level before averaging and distilling. The teacher's logits on the whole unlabeled pool are
computed once a round (one all-reduce of `pool x classes` numbers), so the N steps run on the
server alone. Distillation data: another dataset, the inputs of a split without labels, or
`uniform_noise(...)` as the negative control (Fig. 8.5). With N = 0 the round is FedAvg's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxdist.core import collectives
from jaxdist.errors import ArgumentError, check_at_least, check_choice

INITS = ("average", "previous")
LogitsFn = Callable[[Any, Any, jax.Array], jax.Array]


def uniform_noise(shape: tuple[int, ...], num_examples: int, low: float = -1.0,
                  high: float = 1.0, seed: int = 0) -> np.ndarray:
  """Inputs uniform in [low, high): the negative control of the distillation data."""
  rng = np.random.default_rng(seed)
  return rng.uniform(low, high, (num_examples, *shape)).astype(np.float32)


def _accuracy(logits_fn, params, model_state, validation):
  logits = logits_fn(params, model_state, validation["input"])
  return jnp.mean(jnp.argmax(logits, -1) == validation["label"])


class EnsembleDistillation:
  """The server-side fusion of FedDF.

  Args:
    logits_fn: `logits_fn(params, model_state, inputs) -> logits` (evaluation mode).
    inputs: the unlabeled distillation pool (numpy), `[M, ...]`.
    steps: N, the distillation step budget (0: FedAvg).
    batch_size: inputs per distillation step (drawn with replacement from the pool).
    learning_rate: Adam's rate, cosine-annealed to 0 over `steps`.
    validation: `{"input", "label"}` held out from training, for early stopping and
      drop-worst; None: neither.
    patience: steps without a better validation accuracy before stopping.
    validate_every: steps between validations.
    drop_worst: drop client models whose validation accuracy is at most this (e.g. 1.1 /
      classes, random guessing); None: keep all.
    init: `average` (the round's server-step model) or `previous` (the last fused model).
    temperature: of both softmaxes.
  """

  def __init__(self, logits_fn: LogitsFn, inputs: np.ndarray, *, steps: int = 10_000,
               batch_size: int = 128, learning_rate: float = 1e-3,
               validation: dict[str, np.ndarray] | None = None, patience: int = 1_000,
               validate_every: int = 100, drop_worst: float | None = None,
               init: str = "average", temperature: float = 1.0):
    if not callable(logits_fn):
      raise ArgumentError("logits_fn", f"{logits_fn!r} is not a function",
                          "logits_fn(params, model_state, inputs) -> logits")
    inputs = np.asarray(inputs)
    if inputs.ndim < 2 or len(inputs) == 0:
      raise ArgumentError("distill_inputs", f"shape {inputs.shape}", "[M, ...] with M >= 1")
    check_at_least("distill_steps", steps, 0, integer=True)
    check_at_least("distill_batch_size", batch_size, 1, integer=True)
    check_at_least("distill_learning_rate", learning_rate, 0)
    check_at_least("patience", patience, 1, integer=True)
    check_at_least("validate_every", validate_every, 1, integer=True)
    check_at_least("temperature", temperature, 1e-6)
    check_choice("distill_init", init, INITS)
    if drop_worst is not None and validation is None:
      raise ArgumentError("drop_worst", "needs a validation split", "None, or give validation")
    self.logits_fn, self.inputs = logits_fn, inputs
    self.steps, self.batch_size, self.learning_rate = int(steps), int(batch_size), learning_rate
    self.validation = None if validation is None else {k: np.asarray(validation[k])
                                                       for k in ("input", "label")}
    self.patience, self.validate_every = int(patience), int(validate_every)
    self.drop_worst, self.init, self.temperature = drop_worst, init, float(temperature)

  def with_logits(self, logits_fn: LogitsFn) -> EnsembleDistillation:
    """The same distillation for a model of another architecture."""
    other = copy.copy(self)
    other.logits_fn = logits_fn
    return other

  def keep(self, params: Any, model_state: Any, weight: jax.Array) -> tuple[jax.Array, dict]:
    """The client's averaging weight after drop-worst (all kept if every client would go)."""
    if self.drop_worst is None:
      return weight, {}
    accuracy = _accuracy(self.logits_fn, params, model_state, self.validation)
    kept = (accuracy > self.drop_worst).astype(weight.dtype)
    anyone = collectives.mean(kept) > 0
    kept = jnp.where(anyone, kept, 1.0)
    return weight * kept, {"server/kept_clients": collectives.mean(kept) *
                           collectives.num_workers()}

  def teacher(self, client_params: Any, client_state: Any, weight: jax.Array) -> jax.Array:
    """AVGLOGITS on the whole pool: the kept clients' logits averaged (one all-reduce)."""
    kept = (weight > 0).astype(jnp.float32)
    logits = self.logits_fn(client_params, client_state, jnp.asarray(self.inputs))
    return collectives.mean(logits * kept) / collectives.mean(kept)

  def fuse(self, averaged: Any, previous: Any, model_state: Any, client_params: Any,
           client_state: Any, weight: jax.Array, key: jax.Array) -> tuple[Any, dict]:
    """The distilled server model and the round's distillation metrics."""
    start = averaged if self.init == "average" else previous
    if self.steps == 0:
      return start, {"server/distill_steps": jnp.float32(0)}
    fused, metrics = self.distill(start, model_state,
                                  self.teacher(client_params, client_state, weight), key)
    if self.validation is not None:
      kept = (weight > 0).astype(jnp.float32)
      logits = self.logits_fn(client_params, client_state, jnp.asarray(self.validation["input"]))
      ensemble = collectives.mean(kept * logits) / collectives.mean(kept)
      metrics["server/teacher_validation_accuracy"] = jnp.mean(
          jnp.argmax(ensemble, -1) == jnp.asarray(self.validation["label"]))
    return fused, metrics

  def distill(self, start: Any, model_state: Any, teacher: jax.Array, key: jax.Array
              ) -> tuple[Any, dict]:
    """`steps` distillation steps of `start` towards `teacher` (the pool's logits), on the
    server alone; the best validated model, or the last without validation."""
    if self.steps == 0:
      return start, {"server/distill_steps": jnp.float32(0)}
    tx = optax.adam(optax.cosine_decay_schedule(self.learning_rate, self.steps))
    pool = jnp.asarray(self.inputs)

    def distill_loss(params, batch_inputs, batch_teacher):
      student = self.logits_fn(params, model_state, batch_inputs) / self.temperature
      target = jax.nn.softmax(batch_teacher / self.temperature)
      return jnp.mean(optax.kl_divergence(jax.nn.log_softmax(student), target))

    def validate(params):
      if self.validation is None:
        return jnp.float32(0)
      return _accuracy(self.logits_fn, params, model_state, self.validation).astype(jnp.float32)

    def step(carry):
      j, params, opt_state, best, best_accuracy, since = carry
      index = jax.random.randint(jax.random.fold_in(key, j), (self.batch_size,), 0, len(pool))
      grads = jax.grad(distill_loss)(params, pool[index], teacher[index])
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      j = j + 1
      if self.validation is not None:
        due = (j % self.validate_every == 0) | (j == self.steps)
        accuracy = lax.cond(due, validate, lambda _: best_accuracy, params)
        better = due & (accuracy > best_accuracy)
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), params, best)
        best_accuracy = jnp.where(better, accuracy, best_accuracy)
        since = jnp.where(better, 0, jnp.where(due, since + self.validate_every, since))
      else:
        best = params
      return j, params, opt_state, best, best_accuracy, since

    def running(carry):
      j, *_, since = carry
      return (j < self.steps) & (since < self.patience)

    carry = (jnp.int32(0), start, tx.init(start), start, validate(start), jnp.int32(0))
    j, _, _, best, best_accuracy, _ = lax.while_loop(running, step, carry)
    metrics = {"server/distill_steps": j.astype(jnp.float32)}
    if self.validation is not None:
      metrics["server/validation_accuracy"] = best_accuracy
    return best, metrics
