"""MimeLite (Alg. 21): a round by hand, simulated = mesh, resume."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from jaxdist import federated
from jaxdist.errors import ArgumentError

DIM, PER_CLIENT, BETA, ETA = 3, 6, 0.6, 0.1


def masked_least_squares(params, model_state, batch, rng):
  del rng
  residual = batch["x"] @ params["w"] - batch["y"]
  loss = jnp.sum(batch["mask"] * residual**2) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)
  return loss, (model_state, {"loss": loss})


def clients(num_clients=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_clients * PER_CLIENT, DIM)).astype(np.float32)
  # every client its own optimum: heterogeneous data, where the server momentum matters
  optima = rng.normal(size=(num_clients, DIM)) * 2
  y = np.einsum("cnd,cd->cn", x.reshape(num_clients, PER_CLIENT, DIM), optima).reshape(-1)
  splits = [np.arange(PER_CLIENT * c, PER_CLIENT * (c + 1)) for c in range(num_clients)]
  return {"x": x, "y": y.astype(np.float32)}, splits


def algorithm(local_steps=2):
  return federated.mimelite(masked_least_squares, momentum=BETA, learning_rate=ETA,
                            batch_size=PER_CLIENT, local_steps=local_steps)


def test_rounds_follow_algorithm_21_by_hand():
  arrays, splits = clients()
  data = federated.ClientData(arrays, splits, cohort_size=3)
  params = {"w": np.zeros(DIM, np.float32)}
  state = jaxdist.train(algorithm(), params, data=data, num_steps=3, steps_per_chunk=3,
                        progress=False).state.algorithm

  def grad(w, c):  # full local-batch gradient of client c
    x, y = arrays["x"][splits[c]].astype(np.float64), arrays["y"][splits[c]]
    return 2 * x.T @ (x @ w - y) / len(y)

  x, s = np.zeros(DIM), np.zeros(DIM)
  for _ in range(3):
    models = []
    for c in range(3):
      y = x.copy()
      for _ in range(2):  # line 10, U = (1 - beta) g + beta s with s fixed
        y = y - ETA * ((1 - BETA) * grad(y, c) + BETA * s)
      models.append(y)
    s = (1 - BETA) * np.mean([grad(x, c) for c in range(3)], axis=0) + BETA * s  # line 13
    x = np.mean(models, axis=0)  # line 14
  np.testing.assert_allclose(state.params["w"], x, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.momentum["w"], s, rtol=1e-5, atol=1e-6)
  assert int(state.round) == 3 and np.abs(s).max() > 0.1


def test_simulated_equals_mesh_and_resume_is_bit_exact(tmp_path):
  arrays, splits = clients(12, seed=1)
  data = federated.ClientData(arrays, splits, cohort_size=8, seed=2)
  params = {"w": np.zeros(DIM, np.float32)}
  runner = jaxdist.Runner(algorithm(), data, steps_per_chunk=2)

  def run(directory, stop_after=None):
    calls = iter(range(100))
    stop = (lambda: next(calls) + 1 >= stop_after) if stop_after else None
    return runner.fit(params, num_steps=4, checkpoint_dir=str(directory), should_stop=stop,
                      progress=False)

  unbroken = run(tmp_path / "unbroken")
  assert run(tmp_path / "resumed", stop_after=1).preempted
  resumed = run(tmp_path / "resumed")
  assert resumed.started == 2
  chex.assert_trees_all_equal(unbroken.state, resumed.state)
  sharded = jaxdist.train(algorithm(), params, data=data, num_steps=4, steps_per_chunk=2,
                          layout=jaxdist.Sharded(), progress=False)
  chex.assert_trees_all_close(sharded.state.algorithm, unbroken.state.algorithm, rtol=2e-5,
                              atol=1e-6)
  assert unbroken.final["comm/bits_up"] == 4 * 2 * 32 * DIM  # 4 rounds of x and grad f_i(x)


def test_bad_arguments_are_named():
  with pytest.raises(ArgumentError, match=r"momentum: 1\.0 is not in \[0, 1\)"):
    federated.mimelite(masked_least_squares, momentum=1.0, learning_rate=0.1, batch_size=4)
  with pytest.raises(ArgumentError, match="client: "):
    federated.MimeLite(object(), 0.5)
  with pytest.raises(ArgumentError, match="server_optimizer: "):
    federated.mimelite(masked_least_squares, momentum=0.5, learning_rate=0.1, batch_size=4,
                       server_optimizer="sgd")
