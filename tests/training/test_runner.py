"""The public runner on the user's own pieces: data as an iterator, an index function or a batch
function, user splits, sampling with replacement, evaluation, resume, argument errors."""

import shutil

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from helpers import LR, per_step, regression_data, sgd
from helpers import linear_regression_loss as loss
from jaxdist.errors import ArgumentError

K = 4


def _arrays(n=400, dim=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  y = (x @ rng.normal(size=dim)).astype(np.float32)
  return {"x": x, "y": y}


def _params(dim=5):
  return {"w": np.zeros(dim, np.float32), "b": np.float32(0.0)}


def _algorithm():
  return jaxdist.local_sgd(loss, sgd(), learning_rate=LR, local_steps=2)


def _fit(data, num_steps=12, progress=False, **kwargs):
  return jaxdist.train(_algorithm(), _params(), data=data, num_steps=num_steps,
                       steps_per_chunk=4, progress=progress, **kwargs)


def test_iterator_index_function_and_batch_function_give_the_same_run():
  """Three ways to hand over the same batches; the runner sees identical numbers."""
  arrays = _arrays()
  index = lambda step, worker: (np.arange(8) + 8 * (step * K + worker)) % 400
  batches = {k: np.stack([np.stack([v[index(t, w)] for w in range(K)]) for t in range(12)])
             for k, v in arrays.items()}
  runs = [_fit(per_step(batches), num_workers=K),
          _fit(jaxdist.data.from_arrays(arrays, index), num_workers=K),
          _fit(jaxdist.data.from_function(
              lambda step, worker: {k: v[index(step, worker)] for k, v in arrays.items()}),
               num_workers=K),
          _fit(iter(per_step(batches)), num_workers=K)]  # a one-shot iterator runs once
  for other in runs[1:]:
    chex.assert_trees_all_equal(runs[0].state, other.state)
  assert [r["step"] for r in runs[0].history] == [4, 8, 12]
  assert runs[0].final["perf/examples_per_second"] > 0


def test_sampler_with_user_splits_and_with_replacement():
  arrays = _arrays()
  splits = [np.arange(0, 50), np.arange(50, 60), np.arange(60, 200), np.arange(200, 400)]
  for sampler in (jaxdist.data.Sampler(400, K, 8, splits, seed=1),
                  jaxdist.data.Sampler(400, K, 8, "iid", seed=1, replacement=True)):
    data = jaxdist.data.from_arrays(arrays, sampler)
    assert data.num_workers == K
    result = _fit(data)  # the number of workers comes from the sampler
    assert result.runner.num_workers == K and np.isfinite(result.final["train/loss"])
  seen = jaxdist.data.from_arrays({"i": np.arange(400)}, jaxdist.data.Sampler(
      400, K, 8, splits)).batches(0, 3, [1])["i"]
  assert set(seen.ravel()) <= set(range(50, 60))


def test_training_learns_and_evaluates_the_averaged_and_the_workers_models():
  x, y = _arrays()["x"], _arrays()["y"]
  data = jaxdist.data.sampled({"x": x, "y": y}, num_workers=K, batch_size=16)

  def evaluate(params, model_state, batch):
    errors = (batch["x"] @ params["w"] + params["b"] - batch["y"])**2
    return {"mse": jnp.sum(errors * batch["mask"]), "count": jnp.sum(batch["mask"])}

  results = {per_worker: _fit(data, num_steps=200, eval_fn=evaluate,
                              eval_data={"x": x[:100], "y": y[:100]}, eval_every=100,
                              eval_per_worker=per_worker) for per_worker in (False, True)}
  for result in results.values():
    steps, mse = result.metric("test/mse")
    assert list(steps) == [100, 200] and mse[-1] < 0.1 * np.mean(y**2)
  params, _ = results[False].deployed()
  by_hand = float(np.mean((x[:100] @ params["w"] + params["b"] - y[:100])**2))
  assert results[False].final["test/mse"] == pytest.approx(by_hand, rel=1e-4)
  per_worker, _ = results[True].deployed(average=False)
  assert per_worker["w"].shape == (K, 5)


def test_a_users_flax_model_and_batchnorm_state():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x)))
      return nn.Dense(3)(x)

  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0)
  model = jaxdist.models.from_flax(Net(), x[:1])
  task = jaxdist.classification(model)
  params, model_state = model.init(jax.random.PRNGKey(0))
  result = jaxdist.train(jaxdist.local_sgd(task.loss, learning_rate=0.2), params, model_state,
                         data=jaxdist.data.sampled({"input": x, "label": y}, num_workers=K,
                                                   batch_size=16),
                         num_steps=150, eval_fn=task.evaluate,
                         eval_data={"input": x, "label": y}, progress=False)
  assert result.final["test/accuracy"] > 0.85
  _, states = result.deployed(average=False)
  means = jax.tree.leaves(states)[0]
  assert np.ptp(np.asarray(means), axis=0).max() > 0  # each worker's own statistics


@pytest.mark.parametrize("backend", ["simulated", "shard_map"])
def test_fit_resumes_bit_identical_from_its_checkpoints(tmp_path, backend):
  data = jaxdist.data.sampled(_arrays(), num_workers=8, batch_size=4, partition="iid_fixed")
  layout = jaxdist.Simulated() if backend == "simulated" else jaxdist.Sharded()
  run = lambda directory: _fit(data, checkpoint_dir=str(directory), checkpoint_every=4, keep=5,
                               layout=layout)
  unbroken = run(tmp_path / "unbroken")
  run(tmp_path / "interrupted")
  for step in ("8", "12"):  # as if killed after the step-4 checkpoint
    shutil.rmtree(tmp_path / "interrupted" / step)
  resumed = run(tmp_path / "interrupted")
  assert resumed.started == 4 and resumed.step == unbroken.step == 12
  chex.assert_trees_all_equal(unbroken.state, resumed.state)
  assert resumed.history == [{**r, "perf/steps_per_second": r2["perf/steps_per_second"],
                              "perf/examples_per_second": r2["perf/examples_per_second"]}
                             for r, r2 in zip(unbroken.history, resumed.history)]
  again = run(tmp_path / "interrupted")  # complete: nothing more to do
  assert again.started == again.step == 12 and len(again.history) == 3


def test_should_stop_ends_the_run_at_a_chunk_with_a_checkpoint(tmp_path):
  calls = []
  stop = lambda: calls.append(1) or len(calls) >= 2
  result = _fit(jaxdist.data.sampled(_arrays(), num_workers=K, batch_size=4),
                checkpoint_dir=str(tmp_path), should_stop=stop)
  assert result.preempted and result.step == 8
  assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["8"]


def test_progress_lines_report_the_records(capsys):
  _fit(jaxdist.data.sampled(_arrays(), num_workers=K, batch_size=4), progress="lines")
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("compiled the training step in")
  assert lines[-1].startswith("step 12/12 (100%) | loss ") and "ex/s | ETA" in lines[-1]


@pytest.mark.parametrize("layout", [jaxdist.Simulated(), jaxdist.Sharded()], ids=str)
def test_runs_are_bitwise_reproducible_on_a_layout_and_depend_on_the_seed(layout):
  """README, "Same numbers": bitwise on the same layout; across layouts to rounding (the
  simulated-against-sharded tests of every algorithm)."""
  data = jaxdist.data.sampled(_arrays(), num_workers=8, batch_size=4)
  algorithm = jaxdist.minibatch_sgd(loss, learning_rate=LR,
                                    extrapolation=jaxdist.extrapolation.FilterNoise())
  run = lambda seed: jaxdist.train(algorithm, _params(), data=data, num_steps=8, seed=seed,
                                   layout=layout, progress=False).state
  chex.assert_trees_all_equal(run(0), run(0))
  assert not np.array_equal(run(0).algorithm.params["w"], run(1).algorithm.params["w"])


def test_simulated_workers_spread_over_the_cpu_devices_give_the_same_numbers():
  """`Simulated(devices=0)` splits the 8 workers over the 8 test devices (shard_map + vmap);
  the run equals the one-device vmap to rounding, and a grid that does not divide takes fewer."""
  data = jaxdist.data.sampled(_arrays(), num_workers=8, batch_size=4)
  run = lambda layout: jaxdist.train(_algorithm(), _params(), data=data, num_steps=8,
                                     layout=layout, progress=False)
  spread, one = run(jaxdist.Simulated(devices=0)), run(jaxdist.Simulated())
  assert spread.runner.workers.num_devices == 8 and one.runner.workers.num_devices == 1
  chex.assert_trees_all_close(spread.state, one.state, rtol=1e-5, atol=1e-6)
  assert jaxdist.Simulated(devices=0).workers((12,), ("workers",)).num_devices == 6
  with pytest.raises(ArgumentError, match=r"devices: 16 devices asked for but this host has 8; "
                     r"on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=16"):
    jaxdist.Simulated(devices=16).workers((16,), ("workers",))


@pytest.mark.parametrize("kwargs, message", [
    ({"data": per_step(regression_data(K, 12)[0])}, r"num_workers: missing"),
    ({"data": jaxdist.data.sampled(_arrays(), num_workers=K, batch_size=4), "num_workers": 8},
     r"data: the data source is for 4 workers, the run has 8"),
    ({"data": 5, "num_workers": K}, r"data: int is not a data source"),
    ({"data": per_step(regression_data(K, 12)[0]), "num_workers": 8},
     r"data: an item holds batches of 4 workers, the run has 8 or more"),
    ({"data": per_step(regression_data(K, 2)[0]), "num_workers": K},
     r"data: the iterator ended after 2 steps, before step 4"),
    ({"data": per_step(regression_data(K, 12)[0]), "grid": (2, 2, 1)},
     r"grid: \(2, 2, 1\) has 3 dimensions"),
    ({"data": per_step(regression_data(K, 12)[0]), "num_workers": K, "layout": "tpu"},
     r"layout: 'tpu' is not a layout"),
    ({"data": per_step(regression_data(K, 12)[0]), "num_workers": K, "checkpoint_every": 6},
     r"checkpoint_every: 6 is not a multiple of steps_per_chunk \(4\)"),
    ({"data": per_step(regression_data(K, 12)[0]), "num_workers": K, "eval_data": {}},
     r"eval_fn: missing"),
    ({"data": per_step(regression_data(K, 12)[0]), "num_workers": K, "progress": "bar"},
     r"progress: unknown value 'bar'"),
])
def test_bad_arguments_end_with_one_line_naming_them(kwargs, message):
  with pytest.raises(ArgumentError, match=message):
    _fit(**kwargs)


def test_the_algorithm_must_follow_the_protocol():
  with pytest.raises(ArgumentError, match=r"algorithm: GradientTransformation"):
    jaxdist.Runner(optax.sgd(0.1), per_step(regression_data(K, 2)[0]), num_workers=K)
