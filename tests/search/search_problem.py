"""A search problem of seconds for the tests: softmax regression on 3 generated classes, local
SGD on 2 simulated workers, learning rate and momentum per trial, H static."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist.search import Choice, LogUniform, Population, Uniform

_rng = np.random.default_rng(0)
X = _rng.normal(size=(320, 6)).astype(np.float32)
Y = (X @ _rng.normal(size=(6, 3)) + 0.5 * _rng.normal(size=(320, 3))).argmax(1).astype(np.int32)
X_VAL, Y_VAL = X[256:], Y[256:]
SPACE = {"learning_rate": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.9),
         "local_steps": Choice([2], static=True)}


def init_model(hp, rng):
  del hp
  return {"w": 0.1 * jax.random.normal(rng, (6, 3)), "b": jnp.zeros(3)}, {}


def logits(params, x):
  return x @ params["w"] + params["b"][None]


def loss_fn(params, model_state, batch, rng):
  del rng
  loss = optax.softmax_cross_entropy_with_integer_labels(logits(params, batch["x"]),
                                                         batch["y"]).mean()
  return loss, (model_state, {"loss": loss})


def build(hp):
  optimizer = functools.partial(jaxdist.optim.sgd, momentum=hp["momentum"])
  return jaxdist.local_sgd(loss_fn, optimizer, learning_rate=hp["learning_rate"],
                           local_steps=hp["local_steps"])


def data(hp):
  del hp
  return jaxdist.data.sampled({"x": X[:256], "y": Y[:256]}, num_workers=2, batch_size=8)


def score(hp, params, model_state):
  del hp, model_state
  return -optax.softmax_cross_entropy_with_integer_labels(logits(params, X_VAL), Y_VAL).mean()


def population() -> Population:
  return Population(build, init_model, data, score, num_workers=2, steps_per_call=2,
                    static=("local_steps",))
