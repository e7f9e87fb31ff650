"""Small problems shared by the tests, run through the public runner."""

from __future__ import annotations

import functools
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist.core import workers as workers_lib
from jaxdist.experiment.config import default

LR = 0.05
GRID_NAMES = {1: ("workers",), 2: ("nodes", "workers")}


def make_workers(shape, backend="simulated"):
  """Workers on a flat or (nodes, workers) grid, simulated or over every visible device."""
  names = GRID_NAMES[len(shape)]
  if backend == "simulated":
    return workers_lib.simulated(shape, names)
  return workers_lib.sharded(shape, names)


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


def per_step(batches):
  """`[steps, workers, ...]` arrays as a list of per-step batches, an iterable data source."""
  steps = jax.tree.leaves(batches)[0].shape[0]
  return [jax.tree.map(lambda b, t=t: b[t], batches) for t in range(steps)]


def run_algorithm(algorithm, params, batches, *, grid=None, backend="simulated",
                  model_state=None, seed=99):
  """Runs one step per leading entry of `batches` (`[steps, num_workers, ...]`) from `params`
  through the public runner; returns the algorithm's final state (per-worker leaves stacked on
  the grid) and the per-step metrics, averaged over the workers."""
  num_workers = jax.tree.leaves(batches)[0].shape[1]
  grid = tuple(grid or (num_workers,))
  steps = jax.tree.leaves(batches)[0].shape[0]
  layout = jaxdist.Simulated() if backend == "simulated" else jaxdist.Sharded()
  runner = jaxdist.Runner(algorithm, per_step(batches), grid=grid, layout=layout, seed=seed,
                          steps_per_chunk=steps)
  state = runner.init(params, model_state)
  state, metrics = runner.run(state, steps)
  return state.algorithm, metrics


def sgd(momentum=0.9, weight_decay=1e-2, nesterov=True, **kwargs):
  """A function of the rate: SGD with (Nesterov) momentum and weight decay, as the recipes."""
  return functools.partial(jaxdist.optim.sgd, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay, **kwargs)


def constant(rate=LR):
  return optax.constant_schedule(rate)


def assert_same(a, b, tol):
  """Trees equal to `tol`; per-worker leaves on any grid compare with flat or shared ones."""
  def like(x, y):
    x, y = np.asarray(x), np.asarray(y)
    y = y.reshape(x.shape) if x.size == y.size else np.broadcast_to(y, x.shape[-y.ndim:])
    return np.broadcast_to(y, x.shape)

  chex.assert_trees_all_close(a, jax.tree.map(like, a, b), rtol=tol, atol=tol)


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


def assert_resumes_bit_exactly(run, tmp_path, last: int = 8, checkpoint: int = 4):
  """`run(directory)` trains to step `last` with checkpoints every `checkpoint` steps: its last
  checkpoint deleted and the run repeated, it resumes at `last - checkpoint` and ends with the
  unbroken run's state, bit for bit. Returns the unbroken run."""
  unbroken = run(tmp_path / "unbroken")
  run(tmp_path / "broken")
  shutil.rmtree(tmp_path / "broken" / str(last))
  resumed = run(tmp_path / "broken")
  assert resumed.started == last - checkpoint
  chex.assert_trees_all_equal(unbroken.state, resumed.state)
  return unbroken
