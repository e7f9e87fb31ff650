"""Runs: resume is bit-identical, bad workdirs and checkpoints are refused and left intact."""

import hashlib
import json
import os
import shutil

import chex
import pytest

from helpers import tiny_config
from jaxdist.errors import UserError
from jaxdist.experiment import Experiment, run
from jaxdist.experiment.plot import plot
from jaxdist.experiment.writers import read_metrics
from jaxdist.training.checkpoint import Checkpoints


def _final_state(workdir, config):
  experiment = Experiment(config)
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=5)
  step, state, meta = checkpoints.restore(
      experiment.runner.abstract_state(*experiment.initial_model()))
  checkpoints.close()
  return step, state, meta


def _tree_hash(directory):
  digest = hashlib.sha256()
  for root, _, files in sorted(os.walk(directory)):
    for name in sorted(f for f in files if not f.startswith(".lock")):
      with open(os.path.join(root, name), "rb") as f:
        digest.update(name.encode() + f.read())
  return digest.hexdigest()


RESUMED_VARIANTS = {
    "local_sgd": {},
    # The switch (step 6) falls between the checkpoint and the end; extrapolation buffers.
    "post_local_extrap": {"algo": {"name": "post_local_sgd", "switch_samples": 6 * 32,
                                   "extrapolation": "extrap", "local_steps": 2}},
    "ef_sign": {"algo": {"compression": "ef_sign", "local_steps": 2}},
    "hierarchical_momentum": {"algo": {"name": "hierarchical_local_sgd", "local_steps": 1,
                                       "block_steps": 3}, "workers": {"per_node": 2}},
    "hybrid_momentum": {"algo": {"global_momentum": 0.5, "local_steps": 2}},
    "smoothout": {"algo": {"name": "minibatch_sgd", "extrapolation": "smoothout"}},
    # Public copies and compression keys; the quasi-global buffer on a time-varying graph.
    "choco_sgd": {"algo": {"name": "choco_sgd", "compressor": "random_k",
                           "compress_fraction": 0.3}},
    "qg_one_peer": {"algo": {"name": "qg_dsgdm"}, "topology": {"name": "one_peer_exponential"}},
    "gradient_tracking": {"algo": {"name": "gradient_tracking"}},
    "d2_plus": {"algo": {"name": "d2_plus"}},
    # Masks recomputed between the checkpoint and the end, on a ramp that ends there.
    "dpf": {"masking": {"name": "dpf", "sparsity": 0.8, "recompute_every": 3, "ramp_end": 0.75}},
    "dsgd_controlled": {"algo": {"name": "dsgd", "consensus_target": 0.05,
                                 "max_gossip_rounds": 5}, "topology": {"name": "ring"}},
}


@pytest.mark.parametrize("variant", RESUMED_VARIANTS)
def test_interrupted_run_resumes_bit_identical(data_dir, tmp_path, variant):
  config = tiny_config(data_dir, checkpoint={"keep": 5}, **RESUMED_VARIANTS[variant])
  unbroken, interrupted = str(tmp_path / "unbroken"), str(tmp_path / "interrupted")
  result = run(config, unbroken)
  assert result["step"] == 12 and not result["preempted"]
  run(config, interrupted)
  # Make it look as if the run died after its step-4 checkpoint.
  for step in ("8", "12"):
    shutil.rmtree(os.path.join(interrupted, "checkpoints", step))
  resumed = run(config, interrupted)
  assert resumed["test/accuracy"] == result["test/accuracy"]
  step_a, state_a, meta_a = _final_state(unbroken, config)
  step_b, state_b, meta_b = _final_state(interrupted, config)
  assert step_a == step_b == 12 and meta_a["totals"] == meta_b["totals"]
  assert meta_a["totals"]["comm/bits_sent"] > 0
  chex.assert_trees_all_equal(state_a, state_b)
  # The metrics of the lost steps were dropped and written again, once.
  assert [r["step"] for r in read_metrics(interrupted)] == [4, 8, 12]
  timeless = lambda records: [{k: v for k, v in r.items() if not k.startswith("perf/")}
                              for r in records]
  assert timeless(read_metrics(interrupted)) == timeless(read_metrics(unbroken))


def test_metrics_go_to_jsonl_and_tensorboard_and_plot(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  run(tiny_config(data_dir), workdir)
  records = read_metrics(workdir)
  assert {"train/loss", "train/accuracy", "test/accuracy", "comm/bits_sent", "lr", "samples",
          "perf/examples_per_second"} <= set(records[-1])
  assert records[-1]["samples"] == 12 * 4 * 8
  assert os.listdir(os.path.join(workdir, "tensorboard"))[0].startswith("events.out.tfevents")
  out = str(tmp_path / "curves.png")
  plot([workdir], out)
  assert os.path.getsize(out) > 1000


def test_changed_config_is_refused_in_an_existing_workdir(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  run(tiny_config(data_dir), workdir)
  with pytest.raises(UserError, match=r"workdir: .* holds a run with algo.local_steps=4 but the "
                     r"config has algo.local_steps=2"):
    run(tiny_config(data_dir, algo={"local_steps": 2}), workdir)
  # Changing how often to log or checkpoint is fine.
  result = run(tiny_config(data_dir, checkpoint={"every_steps": 8}), workdir)
  assert result["step"] == 12


def test_damaged_checkpoints_are_reported_and_left_untouched(data_dir, tmp_path):
  """With no checkpoint left that restores, the run stops in one line and moves nothing."""
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, train={"num_steps": 8})
  run(config, workdir)
  for step in ("4", "8"):
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", step)):
      for name in files:
        if name.endswith(".json") or "ocdbt" in root or name.startswith("d"):
          with open(os.path.join(root, name), "wb") as f:
            f.write(b"\x00garbage")
  before = _tree_hash(workdir)
  with pytest.raises(UserError, match=r"checkpoint: no checkpoint in .*checkpoints can be "
                     r"restored \(step 8: .*; step 4: .*\); they were left untouched"):
    run(config, workdir)
  assert _tree_hash(workdir) == before


def test_unwritable_workdir_is_refused(data_dir, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match=r"workdir: cannot write to .*file/run"):
    run(tiny_config(data_dir), str(blocker / "run"))


@pytest.mark.parametrize("eval_model", ["average", "workers"])
def test_simulated_and_shard_map_runs_agree(data_dir, tmp_path, eval_model):
  results = {}
  for backend in ("simulated", "shard_map"):
    config = tiny_config(data_dir, workers={"backend": backend, "num_workers": 8},
                         eval={"model": eval_model})
    results[backend] = run(config, str(tmp_path / backend))
  for key in ("train/loss", "test/accuracy", "test/loss"):
    assert results["simulated"][key] == pytest.approx(results["shard_map"][key], rel=1e-5)
  with open(tmp_path / "shard_map" / "config.json") as f:
    assert json.load(f)["workers.backend"] == "shard_map"
