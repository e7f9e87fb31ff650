"""Federated rounds: the equivalences of [Lin22] ch. 8's baselines, padding, sampling, layouts,
resume, FedDF's distillation and the non-trainable state options."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from jaxdist import federated
from jaxdist.errors import ArgumentError

NUM_CLASSES = 3


class Net(nn.Module):
  """A small MLP, with BatchNorm when asked (for the non-trainable state)."""

  norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(16)(x)
    if self.norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.Dense(NUM_CLASSES)(nn.relu(x))


def problem(num_examples=120, dim=6, seed=0, norm=False):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(NUM_CLASSES, dim)) * 2
  y = rng.integers(0, NUM_CLASSES, num_examples).astype(np.int32)
  x = (centers[y] + rng.normal(size=(num_examples, dim))).astype(np.float32)
  model = jaxdist.models.from_flax(Net(norm), jax.ShapeDtypeStruct((1, dim), jnp.float32))
  params, model_state = model.init(jax.random.PRNGKey(seed))
  return {"input": x, "label": y}, model, params, model_state


def unequal_clients(num_examples, num_clients, seed=0):
  """A random split into clients of unequal sizes."""
  rng = np.random.default_rng(seed)
  cuts = np.sort(rng.choice(np.arange(1, num_examples), num_clients - 1, replace=False))
  return np.split(rng.permutation(num_examples), cuts)


def fit(algorithm, data, params, model_state=None, rounds=3, **kwargs):
  return jaxdist.train(algorithm, params, model_state, data=data, num_steps=rounds,
                       steps_per_chunk=kwargs.pop("steps_per_chunk", rounds), progress=False,
                       **kwargs)


def test_fedavg_with_everyone_one_step_and_equal_sizes_is_minibatch_sgd():
  arrays, model, params, _ = problem(32)
  task = jaxdist.classification(model)
  clients = [np.arange(8 * k, 8 * k + 8) for k in range(4)]
  data = federated.ClientData(arrays, clients, cohort_size=4)
  fedavg = federated.fedavg(task.loss, learning_rate=0.3, batch_size=8, local_steps=1)
  minibatch = jaxdist.minibatch_sgd(task.loss, learning_rate=0.3)
  same_batches = jaxdist.data.from_function(
      lambda step, worker: {k: v[clients[worker]] for k, v in arrays.items()})
  ours = fit(fedavg, data, params, rounds=5).deployed()[0]
  reference = fit(minibatch, same_batches, params, rounds=5, num_workers=4).deployed()[0]
  chex.assert_trees_all_close(ours, reference, rtol=2e-5, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(ours)[0], jax.tree.leaves(params)[0])


def test_zero_momentum_zero_proximal_zero_distillation_and_mimelite_at_0_are_fedavg_exactly():
  arrays, model, params, _ = problem(90)
  task = jaxdist.classification(model)
  data = federated.ClientData(arrays, unequal_clients(90, 6), cohort_size=3, seed=1)
  common = dict(learning_rate=0.2, batch_size=8, epochs=2)
  reference = fit(federated.fedavg(task.loss, **common), data, params).state
  assert int(reference.algorithm.round) == 3
  logits = lambda p, s, x: model.apply(p, s, x, False)[0]
  zero_distillation = federated.feddf(task.loss, logits_fn=logits,
                                      distill_inputs=arrays["input"], distill_steps=0, **common)
  for variant in (federated.fedavgm(task.loss, server_momentum=0.0, **common),
                  federated.fedprox(task.loss, mu=0.0, **common), zero_distillation,
                  federated.mimelite(task.loss, momentum=0.0, **common)):
    chex.assert_trees_all_equal(fit(variant, data, params).state.algorithm.params,
                                reference.algorithm.params)
  # the proximal term is there: zero only at mu = 0 or at the server model
  moved = jax.tree.map(lambda x: x + 0.1, params)
  assert float(federated.proximal.proximal(1.0)(moved, params)) > 0
  assert float(federated.proximal.proximal(0.0)(moved, params)) == 0


def test_padding_and_masking_count_only_real_examples():
  """A client of 5 examples trains the same padded to 12 (two steps an epoch, one of padding
  only) as alone; only its real examples count."""
  arrays, model, params, _ = problem(17)
  task = jaxdist.classification(model)
  algorithm = federated.fedavg(task.loss, learning_rate=0.5, batch_size=8, epochs=3)
  small = np.arange(5)
  padded = federated.ClientData(arrays, [small, np.arange(5, 17)], cohort_size=1, seed=3)
  assert padded.max_examples == 12
  alone = federated.ClientData(arrays, [small], cohort_size=1)
  round_of_small = next(r for r in range(50) if padded.cohort(r)[0] == 0)
  batch = padded.batches(round_of_small, 1, [0])
  assert batch["mask"].shape == (1, 1, 12) and batch["mask"].sum() == 5
  assert float(batch["count"][0, 0]) == 5.0
  first = lambda data: jax.tree.map(lambda x: x[0, 0], data.batches(round_of_small, 1, [0]))
  state = jax.jit(lambda s, b: algorithm.client.train(params, {}, b, jax.random.PRNGKey(1)))
  ours, _, metrics = state(None, first(padded))
  reference, _, _ = state(None, {**first(alone), "client": np.int32(0)})
  chex.assert_trees_all_close(ours, reference, rtol=1e-5, atol=1e-6)
  assert 0 <= float(metrics["accuracy"]) <= 1


def test_cohorts_depend_on_seed_and_round_only():
  arrays, *_ = problem(2000)
  splits = [np.arange(2 * k, 2 * k + 2) for k in range(1000)]
  data = federated.ClientData(arrays, splits, cohort_size=federated.cohort_size(1000, 0.01))
  assert data.num_workers == 10
  np.testing.assert_array_equal(data.cohort(7), federated.sample_cohort(0, 7, 1000, 10))
  assert not np.array_equal(data.cohort(7), data.cohort(8))
  assert len(set(data.cohort(3))) == 10
  batch = data.batches(5, 2, range(10))  # only the cohort's examples are gathered
  assert batch["input"].shape == (2, 10, 2, 6)
  np.testing.assert_array_equal(batch["client"][1], data.cohort(6))


def test_bad_arguments_are_named():
  arrays, model, *_ = problem(10)
  with pytest.raises(ArgumentError, match="fraction: 0 is not in"):
    federated.cohort_size(10, 0)
  with pytest.raises(ArgumentError, match="cohort_size: 5 clients per round of 2"):
    federated.ClientData(arrays, [np.arange(5), np.arange(5, 10)], cohort_size=5)
  with pytest.raises(ArgumentError, match="clients: indices outside"):
    federated.ClientData(arrays, [np.arange(5, 11)], cohort_size=1)
  task = jaxdist.classification(model)
  with pytest.raises(ArgumentError, match=r"server_momentum: 1\.5 is not in"):
    federated.fedavgm(task.loss, server_momentum=1.5, learning_rate=0.1, batch_size=4)
  with pytest.raises(ArgumentError, match="proximal_mu: must be >= 0"):
    federated.fedprox(task.loss, mu=-1.0, learning_rate=0.1, batch_size=4)
  with pytest.raises(ArgumentError, match="distill_init: unknown value 'last'"):
    federated.feddf(task.loss, logits_fn=lambda p, s, x: x, distill_inputs=arrays["input"],
                    distill_init="last", learning_rate=0.1, batch_size=4)


def _everything(model, task, arrays, num_clients, validated=True):
  """FedDF (with validation, early stopping and drop-worst), server momentum, per-client BN."""
  logits = lambda p, s, x: model.apply(p, s, x, False)[0]
  validation = dict(validation={k: v[40:60] for k, v in arrays.items()}, validate_every=4,
                    patience=8, drop_worst=0.34) if validated else {}
  return federated.feddf(
      task.loss, logits_fn=logits, distill_inputs=arrays["input"][:40], distill_steps=12,
      distill_batch_size=16, learning_rate=0.2, batch_size=8, epochs=1,
      server_optimizer=federated.server.fedavgm(0.5),
      statistics=federated.PerClient(num_clients), **validation)


def test_simulated_and_mesh_cohorts_agree():
  arrays, model, params, model_state = problem(160, norm=True)
  task = jaxdist.classification(model)
  data = federated.ClientData(arrays, unequal_clients(160, 12), cohort_size=8)
  algorithm = _everything(model, task, arrays, 12, validated=False)  # validated: resume test
  simulated = fit(algorithm, data, params, model_state, rounds=2).state
  sharded = fit(algorithm, data, params, model_state, rounds=2, layout=jaxdist.Sharded()).state
  chex.assert_trees_all_close(simulated, sharded, rtol=2e-5, atol=2e-6)


def test_resume_is_bit_exact(tmp_path):
  arrays, model, params, model_state = problem(120, norm=True)
  task = jaxdist.classification(model)
  data = federated.ClientData(arrays, unequal_clients(120, 8), cohort_size=4, seed=2)
  algorithm = _everything(model, task, arrays, 8)

  runner = jaxdist.Runner(algorithm, data, steps_per_chunk=2)  # compiled once for the three

  def run(directory, stop_after=None):
    calls = iter(range(100))
    stop = (lambda: next(calls) + 1 >= stop_after) if stop_after else None
    return runner.fit(params, model_state, num_steps=6, checkpoint_dir=str(directory),
                      should_stop=stop, progress=False)

  unbroken = run(tmp_path / "unbroken")
  assert run(tmp_path / "resumed", stop_after=1).preempted
  resumed = run(tmp_path / "resumed")
  assert resumed.started == 2
  chex.assert_trees_all_equal(unbroken.state, resumed.state)
  table = resumed.state.algorithm.statistics  # per-client BatchNorm statistics moved
  assert not np.allclose(jax.tree.leaves(table)[0][0], jax.tree.leaves(table)[0][-1])
  final = resumed.final
  assert final["comm/bits_up"] == final["comm/bits_down"] > 0
  assert 0 < final["train/server/distill_steps"] <= 12
  assert 1 <= final["train/server/kept_clients"] <= 4


def test_distillation_drops_the_worst_and_moves_towards_the_ensemble():
  arrays, model, params, _ = problem(120)
  task = jaxdist.classification(model)
  logits = lambda p, s, x: model.apply(p, s, x, False)[0]
  local = federated.LocalTraining(task.loss, learning_rate=0.3, batch_size=10, epochs=2)
  data = {**arrays, "mask": np.ones(120, np.float32)}
  def train(parts):
    return [local.train(params, {}, jax.tree.map(lambda x, i=i: x[i], data),
                        jax.random.PRNGKey(1))[0] for i in parts]

  def stack(models):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *models)

  mixed = train([np.arange(40 * k, 40 * k + 40) for k in range(2)])
  useless = jax.tree.map(jnp.zeros_like, params)  # predicts class 0 everywhere
  dropping = federated.EnsembleDistillation(
      logits, arrays["input"], validation={k: v[:60] for k, v in arrays.items()},
      drop_worst=0.4)
  keep = jaxdist.core.workers.simulated((3,), ("workers",)).map(
      lambda p, w: dropping.keep(p, {}, w), in_axes=(0, 0), out_axes=(0, None))
  weight, kept = jax.jit(keep)(stack([*mixed, useless]), jnp.full(3, 40.0))
  np.testing.assert_array_equal(weight, [40, 40, 0])
  assert float(kept["server/kept_clients"]) == 2

  trained = train([np.flatnonzero(arrays["label"] == c)[:30] for c in range(NUM_CLASSES)])
  pool = federated.uniform_noise((6,), 256, -4, 4, seed=1)
  assert pool.shape == (256, 6) and pool.min() >= -4 and pool.max() < 4
  fusion = federated.EnsembleDistillation(logits, pool, steps=150, batch_size=64,
                                          learning_rate=1e-2)
  average = jax.tree.map(lambda *xs: sum(xs) / 3, *trained)
  fuse = jaxdist.core.workers.simulated((3,), ("workers",)).map(
      lambda p, w: fusion.fuse(average, params, {}, p, {}, w, jax.random.PRNGKey(0)),
      in_axes=(0, 0), out_axes=None)
  fused, metrics = jax.jit(fuse)(stack(trained), jnp.full(3, 30.0))
  assert float(metrics["server/distill_steps"]) == 150
  teacher = jax.nn.softmax(np.mean([logits(p, {}, pool) for p in trained], 0))

  def distance(p):
    return float(jnp.mean(optax.kl_divergence(jax.nn.log_softmax(logits(p, {}, pool)),
                                              teacher)))

  assert distance(fused) < 0.5 * distance(average)
