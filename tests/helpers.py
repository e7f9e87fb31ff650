"""Small problems and runners shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdist import algorithms, config as config_lib, recipes
from jaxdist.config import default
from jaxdist.workers import SHARED, Workers, make_workers

LR = 0.05


def linear_regression_loss(params, model_state, batch, rng):
  """Least squares on a linear model; the simplest loss with a real gradient."""
  del rng
  residual = batch["x"] @ params["w"] + params["b"] - batch["y"]
  loss = jnp.mean(residual**2)
  return loss, (model_state, {"loss": loss})


def regression_data(num_workers: int, steps: int, batch: int = 4, dim: int = 5, seed: int = 0,
                    dtype=np.float32):
  """Batches `[steps, workers, batch, ...]` and an initial model."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(steps, num_workers, batch, dim)).astype(dtype)
  y = (x @ rng.normal(size=dim) + 0.1 * rng.normal(size=x.shape[:-1])).astype(dtype)
  params = {"w": rng.normal(size=dim).astype(dtype), "b": np.asarray(0.5, dtype)}
  return {"x": x, "y": y}, params


def run_algorithm(algorithm, workers: Workers, params, batches, model_state=None):
  """Initialises every worker with `params` and runs one step per leading entry of `batches`
  (laid out `[steps, num_workers, ...]`); returns the final state and the per-step metrics."""
  model_state = {} if model_state is None else model_state
  axes = algorithm.state_axes
  init = jax.jit(workers.map(algorithm.init, in_axes=SHARED, out_axes=axes))
  step = jax.jit(workers.map(algorithm.step, in_axes=(axes, 0, SHARED), out_axes=(axes, 0)))
  state = init(params, model_state, jax.random.PRNGKey(99))
  history = []
  for t in range(jax.tree.leaves(batches)[0].shape[0]):
    batch = jax.tree.map(lambda b: b[t].reshape(workers.shape + b.shape[2:]), batches)
    state, metrics = step(state, batch, jax.random.PRNGKey(t))
    history.append(metrics)
  return state, history


def sgd(momentum=0.9, weight_decay=1e-2, learning_rate=LR, **optim):
  """The recipe's SGD (Nesterov by default) on a constant or given learning rate."""
  config = default().optim
  config.update(weight_decay=weight_decay, momentum=momentum, **optim)
  if not callable(learning_rate):
    learning_rate = optax.constant_schedule(learning_rate)
  return recipes.optimizer(config, learning_rate)


def build_algorithm(name, num_workers=8, backend="simulated", tx=None, per_node=0,
                    topology="ring", learning_rate=LR, optim=None, **algo):
  """An algorithm as a config would make it, on linear regression; returns it and its workers."""
  config = default()
  config.algo.update(name=name, **algo)
  config.workers.update(num_workers=num_workers, per_node=per_node)
  config.topology.name = topology
  config.optim.update(optim or {})
  w = make_workers(*config_lib.worker_grid(config), backend)
  if not callable(learning_rate):
    learning_rate = optax.constant_schedule(learning_rate)
  run = algorithms.Run(config, learning_rate, global_batch=4 * num_workers, train_size=1000,
                       total_steps=100)
  return algorithms.build(run, linear_regression_loss, tx or sgd(), w.comm), w


def assert_same(a, b, tol):
  """Trees equal to `tol`; per-worker leaves on any grid compare with flat or shared ones."""
  def check(x, y):
    x, y = np.asarray(x), np.asarray(y)
    y = y.reshape(x.shape) if x.size == y.size else np.broadcast_to(y, x.shape[-y.ndim:])
    np.testing.assert_allclose(x, np.broadcast_to(y, x.shape), rtol=tol, atol=tol)
  jax.tree.map(check, a, b)


def tiny_config(data_dir, **sections):
  """A run of seconds: 4 workers on digits, a 32-unit MLP, 12 steps, checkpoints every 4."""
  config = default()
  config.data.update(name="digits", data_dir=data_dir, batch_size=8)
  config.workers.num_workers = 4
  config.model.hidden = (32,)
  config.optim.update(base_lr=0.1, base_batch=32, warmup_epochs=0.05)
  config.train.update(num_steps=12, log_every=4)
  config.eval.every_steps = 4
  config.checkpoint.every_steps = 4
  for section, fields in sections.items():
    config[section].update(fields)
  return config
