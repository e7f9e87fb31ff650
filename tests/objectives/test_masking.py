"""Masking: exact global magnitude masks and schedules, the feedback of DPF, learned masks with
the straight-through estimator, composition with the algorithms, resume."""

import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from helpers import assert_resumes_bit_exactly, run_algorithm, sgd, tiny_config
from jaxdist import models
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import run
from jaxdist.experiment.writers import read_metrics
from jaxdist.objectives import masking, tasks

NUM_CLASSES = 10


def _mlp():
  model = models.build("mlp", (8,), NUM_CLASSES, hidden=(16, 12))
  return model, tasks.classification(model)


def _batch(step=0):
  rng = np.random.default_rng(step)
  return {"input": rng.normal(size=(6, 8)).astype(np.float32),
          "label": rng.integers(0, NUM_CLASSES, 6).astype(np.int32), "step": jnp.int32(step)}


def test_magnitude_mask_prunes_exactly_the_smallest_weights_globally():
  params, _ = _mlp()[0].init(jax.random.PRNGKey(0))
  pruned = masking.prunable(params, NUM_CLASSES)
  assert jax.tree.leaves(pruned) == [False, True, False, True, False, False]  # not the classifier
  masks = masking.magnitude_mask(params, pruned, 0.7)
  weights = np.concatenate([np.abs(np.asarray(params[k]["kernel"])).ravel()
                            for k in ("Dense_0", "Dense_1")])
  kept = np.concatenate([np.asarray(masks[k]["kernel"]).ravel() for k in ("Dense_0", "Dense_1")])
  assert (kept == 0).sum() == round(0.7 * weights.size)
  assert weights[kept == 0].max() < weights[kept == 1].min()  # one threshold for all layers
  assert np.asarray(masks["Dense_2"]["kernel"]) == 1 and np.asarray(masks["Dense_0"]["bias"]) == 1
  none = masking.magnitude_mask(params, pruned, 0.0)
  assert all(np.all(np.asarray(m) == 1) for m in jax.tree.leaves(none))


def test_cubic_schedule_reaches_the_target_exactly_at_the_end_of_the_ramp():
  s = [float(masking.cubic_sparsity(t, 0.9, 100)) for t in (0, 50, 99, 100, 150)]
  assert s[0] == 0 and s[1] == pytest.approx(0.9 * (1 - 0.5**3)) and s[2] < 0.9
  assert s[3] == s[4] == pytest.approx(0.9, abs=1e-7)
  one_shot = masking.Pruning("one_shot", 0.8, 16, 40, NUM_CLASSES)
  assert [float(one_shot.schedule(t)) for t in (39, 40, 41)] == pytest.approx([0, 0.8, 0.8])


@pytest.mark.parametrize("method", ["dpf", "incremental"])
def test_dpf_feeds_gradients_back_to_pruned_weights(method):
  """DPF: the gradient at m * x reaches every dense weight, pruned ones included; incremental
  pruning gives the pruned weights none."""
  model, task = _mlp()
  pruning = masking.Pruning(method, 0.5, recompute_every=4, ramp_steps=1,
                            num_classes=NUM_CLASSES)
  model, task, deployed = pruning.wrap(model, task)
  params, state = model.init(jax.random.PRNGKey(0))
  batch = _batch(step=4)  # a recompute step past the ramp: half the weights pruned
  grads, (state, metrics) = jax.grad(task.loss, has_aux=True)(params, state, batch, None)
  mask = np.asarray(state["mask"].mask["Dense_1"]["kernel"])
  assert float(metrics["masking/sparsity"]) == pytest.approx(0.5, abs=1e-3)
  grad = np.asarray(grads["Dense_1"]["kernel"])
  if method == "dpf":
    assert np.abs(grad[mask == 0]).max() > 0
    expected = jax.grad(lambda p: task.loss(p, state, batch, None)[0])(params)  # same point
    np.testing.assert_allclose(grad, expected["Dense_1"]["kernel"], rtol=1e-6)
  else:
    assert np.abs(grad[mask == 0]).max() == 0
  weights, _ = deployed(params, state)
  assert np.all(np.asarray(weights["Dense_1"]["kernel"])[mask == 0] == 0)
  sums = task.evaluate(params, state, {**batch, "mask": np.ones(6, np.float32)})
  plain = tasks.classification(_mlp()[0])
  assert float(sums["loss"]) == pytest.approx(
      float(plain.evaluate(weights, state["model"], {**batch, "mask": np.ones(6)})["loss"]))


def test_learned_masks_use_the_straight_through_estimator(tmp_path):
  """Frozen pretrained W, scores M with 1[M >= 1/2]; dL/dM = dL/dW_hat * W (eq. 7.2)."""
  model, task = _mlp()
  pretrained, model_state = model.init(jax.random.PRNGKey(1))
  models.save(str(tmp_path / "model.npz"), pretrained, model_state)
  loaded = models.pretrained(model, str(tmp_path / "model.npz"))
  learned = masking.LearnedMask(initial_sparsity=0.3)
  model, task, deployed = learned.wrap(loaded, task)
  scores, state = model.init(jax.random.PRNGKey(2))
  assert sorted(scores) == ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"]
  chex.assert_trees_all_equal(state["frozen"], pretrained)
  below = np.mean(np.concatenate([np.asarray(m).ravel() < 0.5 for m in scores.values()]))
  assert below == pytest.approx(0.3, abs=0.05)
  batch = _batch()
  grads, (_, metrics) = jax.grad(task.loss, has_aux=True)(scores, state, batch, None)
  weights, _ = deployed(scores, state)
  plain = tasks.classification(_mlp()[0])
  weight_grads = jax.grad(lambda w: plain.loss(w, {}, batch, None)[0])(weights)
  for name in scores:
    layer = name.split("/")[0]
    np.testing.assert_allclose(grads[name], weight_grads[layer]["kernel"] *
                               np.asarray(pretrained[layer]["kernel"]), rtol=1e-5, atol=1e-7)
  assert float(metrics["masking/sparsity"]) == pytest.approx(below, abs=1e-6)
  packed = masking.export_masks(scores)
  assert sum(p.nbytes for p in packed.values()) == sum(-(-m.size // 8) for m in scores.values())


def _runs_agree(data_dir, tmp_path, **sections):
  results = {}
  for backend in ("simulated", "shard_map"):
    config = tiny_config(data_dir, workers={"backend": backend, "num_workers": 8}, **sections)
    results[backend] = run(config, str(tmp_path / backend))
  for key in ("train/loss", "test/accuracy", "train/masking/sparsity"):
    assert results["simulated"][key] == pytest.approx(results["shard_map"][key], rel=1e-5)
  return results["simulated"]


def test_dpf_under_local_sgd_simulated_and_on_devices(data_dir, tmp_path):
  result = _runs_agree(data_dir, tmp_path, algo={"name": "local_sgd", "local_steps": 2},
                       masking={"name": "dpf", "sparsity": 0.8, "recompute_every": 2,
                                "ramp_end": 0.5})
  assert result["train/masking/sparsity"] == pytest.approx(0.8, abs=1e-3)
  records = read_metrics(str(tmp_path / "simulated"))
  assert records[0]["train/masking/target"] < records[-1]["train/masking/target"]


def test_learned_masks_run_from_a_pretrained_workdir_and_resume(data_dir, tmp_path):
  pretrain = tiny_config(data_dir)
  run(pretrain, str(tmp_path / "pretrain"))
  config = tiny_config(data_dir, masking={"name": "learned"}, data={"relabel": "parity"},
                       model={"pretrained": str(tmp_path / "pretrain" / "model.npz")},
                       optim={"optimizer": "adam", "base_lr": 0.01, "weight_decay": 0.0},
                       checkpoint={"keep": 5})
  unbroken = run(config, str(tmp_path / "unbroken"))
  assert 0 < unbroken["train/masking/sparsity"] < 0.2
  masks = np.load(tmp_path / "unbroken" / "masks.npz")
  assert sum(masks[k].nbytes for k in masks) == sum(-(-n // 8) for n in (64 * 32, 32 * 2))
  run(config, str(tmp_path / "interrupted"))
  for step in ("8", "12"):
    shutil.rmtree(tmp_path / "interrupted" / "checkpoints" / step)
  os.remove(tmp_path / "interrupted" / "model.npz")
  resumed = run(config, str(tmp_path / "interrupted"))
  assert resumed["test/accuracy"] == unbroken["test/accuracy"]
  a = np.load(tmp_path / "unbroken" / "model.npz")
  b = np.load(tmp_path / "interrupted" / "model.npz")
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  with open(tmp_path / "unbroken" / "config.json") as f:
    assert json.load(f)["masking.name"] == "learned"


@pytest.mark.parametrize("sections, message", [
    ({"masking": {"name": "prune"}}, r"masking.name: unknown value 'prune'"),
    ({"masking": {"name": "dpf", "recompute_every": 0}}, r"masking.recompute_every: must be >= 1"),
    ({"masking": {"name": "learned", "initial_sparsity": 1.5},
      "model": {"pretrained": "x.npz"}}, r"masking.initial_sparsity: 1.5 is not in"),
    ({"masking": {"name": "dpf", "sparsity": 1.0}}, r"masking.sparsity: 1.0 is not in \[0, 1\)"),
    ({"masking": {"name": "learned"}}, r"model.pretrained: learned masks need pretrained"),
    ({"masking": {"name": "dpf"}, "optim": {"decay_at": (0.5,)}},
     r"masking.ramp_end: the learning rate has no second decay"),
    ({"model": {"pretrained": "/nonexistent/model.npz"}}, r"model.pretrained: cannot read"),
    ({"data": {"relabel": "even"}}, r"data.relabel: unknown value 'even'"),
    ({"algo": {"name": "qg_dsgdm", "qg_mu": 1.5}}, r"algo.qg_mu: 1.5 is not a momentum"),
])
def test_bad_masking_settings_are_refused(data_dir, tmp_path, sections, message):
  with pytest.raises(ConfigError, match=message):
    run(tiny_config(data_dir, **sections), str(tmp_path / "run"))


def test_masking_arguments_are_named():
  with pytest.raises(ArgumentError, match=r"method: unknown value 'prune'"):
    masking.Pruning("prune", 0.5, 4, 10, NUM_CLASSES)
  with pytest.raises(ArgumentError, match=r"sparsity: 1.0 is not in \[0, 1\)"):
    masking.Pruning("dpf", 1.0, 4, 10, NUM_CLASSES)


# -- variants: structured, per layer, frozen fine-tuning -------------------------------------


def _mask_of(method="dpf", sparsity=0.6, **kwargs):
  model, task = _mlp()
  pruning = masking.Pruning(method, sparsity, 1, 1, NUM_CLASSES, **kwargs)
  model, task, _ = pruning.wrap(model, task)
  params, state = model.init(jax.random.PRNGKey(0))
  _, (state, metrics) = jax.jit(task.loss)(params, state, _batch(1), None)
  return params, state["mask"].mask, metrics


def test_structured_pruning_removes_whole_filters_ranked_across_layers():
  """Table 15.3: output filters (columns [..., j]) with the smallest l2 norms, one threshold."""
  params, mask, _ = _mask_of(granularity="filters")
  norms, columns = [], []
  for name in ("Dense_0", "Dense_1"):
    m = np.asarray(mask[name]["kernel"])
    assert np.all((m == 0).all(0) | (m == 1).all(0))  # whole columns
    norms.append(np.linalg.norm(np.asarray(params[name]["kernel"]), axis=0))
    columns.append(m[0])
  norms, columns = np.concatenate(norms), np.concatenate(columns)
  assert (columns == 0).sum() == round(0.6 * columns.size)
  assert norms[columns == 0].max() < norms[columns == 1].min()


def test_per_layer_thresholds_prune_each_layer_to_the_target():
  """Table 15.2: round(s N_l) weights of every layer, each layer its own threshold."""
  params, mask, metrics = _mask_of(thresholds="per_layer", sparsity=0.7)
  for name in ("Dense_0", "Dense_1"):
    m, w = np.asarray(mask[name]["kernel"]), np.abs(np.asarray(params[name]["kernel"]))
    assert (m == 0).sum() == round(0.7 * m.size)
    assert w[m == 0].max() < w[m == 1].min()
  _, global_mask, _ = _mask_of(sparsity=0.7)
  assert (np.asarray(global_mask["Dense_0"]["kernel"]) == 0).sum() != round(0.7 * 8 * 16)
  dense = sum(float(np.sum(np.asarray(params[n]["kernel"])**2)) for n in ("Dense_0", "Dense_1"))
  lost = sum(float(np.sum((np.asarray(params[n]["kernel"]) * (1 - np.asarray(mask[n]["kernel"])))
                          ** 2)) for n in ("Dense_0", "Dense_1"))
  assert float(metrics["masking/delta"]) == pytest.approx(lost / dense, rel=1e-5)  # eq. 6.1


def test_dpf_with_a_frozen_mask_fine_tunes_only_the_kept_weights():
  """Table 6.2's DPF + fine-tuning: from freeze_at the mask stays and the pruned weights get no
  gradient; before, DPF's feedback reaches them."""
  model, task = _mlp()
  model, task, _ = masking.Pruning("dpf", 0.6, 1, 1, NUM_CLASSES, freeze_at=3).wrap(model, task)
  params, state = model.init(jax.random.PRNGKey(0))
  grad = jax.jit(jax.grad(lambda p, s, b: task.loss(p, s, b, None)[0]))
  loss = jax.jit(lambda p, s, b: task.loss(p, s, b, None))
  _, (state, _) = loss(params, state, _batch(1))
  mask = np.asarray(state["mask"].mask["Dense_0"]["kernel"])
  early = np.asarray(grad(params, state, _batch(2))["Dense_0"]["kernel"])
  assert np.abs(early[mask == 0]).max() > 0
  moved = jax.tree.map(lambda x: x * 1.5, params)  # another magnitude order would move the mask
  late_grads = grad(moved, state, _batch(3))
  _, (late_state, _) = loss(moved, state, _batch(4))
  assert np.abs(np.asarray(late_grads["Dense_0"]["kernel"])[mask == 0]).max() == 0
  chex.assert_trees_all_equal(late_state["mask"].mask, state["mask"].mask)


def test_dpf_variants_give_the_same_numbers_simulated_and_on_devices():
  """Structured, per-layer, frozen DPF under local SGD on 8 workers, vmap against shard_map."""
  model, task = _mlp()
  pruning = masking.Pruning("dpf", 0.6, 2, 3, NUM_CLASSES, granularity="filters",
                            thresholds="per_layer", freeze_at=4)
  model, task, _ = pruning.wrap(model, task)
  params, state = model.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  batches = {"input": rng.normal(size=(6, 8, 4, 8)).astype(np.float32),
             "label": rng.integers(0, NUM_CLASSES, (6, 8, 4)).astype(np.int32)}
  algorithm = jaxdist.local_sgd(task.loss, sgd(), learning_rate=0.05, local_steps=2)
  (sim, sim_metrics), (dist, dist_metrics) = (
      run_algorithm(algorithm, params, batches, model_state=state, backend=backend)
      for backend in ("simulated", "shard_map"))
  assert 0.5 < float(sim_metrics["masking/sparsity"][-1]) < 0.6  # ramp stopped at step 4
  chex.assert_trees_all_close(sim, dist, rtol=2e-5, atol=2e-6)
  chex.assert_trees_all_close(sim_metrics, dist_metrics, rtol=2e-5, atol=2e-6)


def test_dpf_variants_resume_bit_exactly(tmp_path):
  """Structured, per-layer DPF frozen at step 5: killed after the step-4 checkpoint (mask still
  moving) and rerun, the same state as the unbroken run (the mask, its counts and flips live in
  the model state)."""
  model, task = _mlp()
  pruning = masking.Pruning("dpf", 0.6, 2, 4, NUM_CLASSES, granularity="filters",
                            thresholds="per_layer", freeze_at=5)
  model, task, _ = pruning.wrap(model, task)
  params, state = model.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  arrays = {"input": rng.normal(size=(64, 8)).astype(np.float32),
            "label": rng.integers(0, NUM_CLASSES, 64).astype(np.int32)}
  data = jaxdist.data.sampled(arrays, num_workers=4, batch_size=4)
  algorithm = jaxdist.local_sgd(task.loss, sgd(), learning_rate=0.05, local_steps=2)

  def run(directory):
    return jaxdist.train(algorithm, params, state, data=data, num_steps=8, steps_per_chunk=4,
                         checkpoint_dir=str(directory), checkpoint_every=4, progress=False)

  unbroken = assert_resumes_bit_exactly(run, tmp_path)
  assert unbroken.final["train/masking/sparsity"] == pytest.approx(0.6, abs=0.05)
