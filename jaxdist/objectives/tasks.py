"""Training objectives as pure functions: what an algorithm differentiates and evaluates."""


from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdist.models import Model

PyTree = Any
Batch = dict[str, jax.Array]


class Task(NamedTuple):
  """`loss(params, model_state, batch, rng) -> (loss, (model_state, metrics))` on a training batch
  (the loss contract of every algorithm); `evaluate(params, model_state, batch) -> sums` of the
  loss, the correct predictions ("accuracy") and the example count ("count") over the examples
  whose `batch["mask"]` is 1 (the evaluation contract of the runner). Training batches also carry
  `batch["step"]`, the iteration, one value shared by all workers."""

  loss: Callable[[PyTree, PyTree, Batch, jax.Array], tuple[jax.Array, tuple[PyTree, dict]]]
  evaluate: Callable[[PyTree, PyTree, Batch], dict[str, jax.Array]]


def _no_preprocessing(x, rng, train):
  return x


def classification(model: Model,
                   preprocess: Callable[[jax.Array, jax.Array, bool], jax.Array] | None = None
                   ) -> Task:
  """Softmax cross-entropy on batches `{"input": x, "label": y}` (integer labels).

  Args:
    model: the model's pure functions (`jaxdist.models.from_flax(module, example)`).
    preprocess: `preprocess(x, rng, train)` normalises (and augments) the inputs; None: as they
      are.
  """
  preprocess = preprocess or _no_preprocessing

  def loss(params, model_state, batch, rng):
    x = preprocess(batch["input"], rng, True)
    logits, model_state = model.apply(params, model_state, x, True)
    labels = batch["label"]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, -1) == labels
    if "mask" in batch:  # padded batches (federated clients): only the real examples count
      mask = batch["mask"]
      count = jnp.maximum(jnp.sum(mask), 1.0)
      value, accuracy = jnp.sum(losses * mask) / count, jnp.sum(correct * mask) / count
    else:
      value, accuracy = losses.mean(), jnp.mean(correct)
    return value, (model_state, {"loss": value, "accuracy": accuracy})

  def evaluate(params, model_state, batch):
    x = preprocess(batch["input"], jax.random.PRNGKey(0), False)
    logits, _ = model.apply(params, model_state, x, False)
    labels, mask = batch["label"], batch["mask"]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"loss": jnp.sum(losses * mask), "accuracy": jnp.sum(correct * mask),
            "count": jnp.sum(mask)}

  return Task(loss, evaluate)
