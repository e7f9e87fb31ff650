"""Small problems and runners shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist.workers import SHARED, Workers


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
