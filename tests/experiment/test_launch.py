"""`python -m launch`: one clear line for bad input, SIGTERM saves a checkpoint and exits."""

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys

import chex
import pytest

from jaxdist.errors import ConfigError, UserError
from jaxdist.experiment import Experiment, overrides, run, validate
from jaxdist.experiment.config import default
from jaxdist.training.checkpoint import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.py")


def _launch(*args, **popen):
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}
  return subprocess.Popen([sys.executable, "-m", "launch", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("args, message", [
    (["--config.algo.local_stepz=8"],
     "error: config.algo.local_stepz: no such field 'local_stepz' in config.algo (allowed: "
     + ", ".join(sorted(default().algo)) + ")"),
    (["--config.algo.local_steps=two"],
     "error: config.algo.local_steps: cannot use 'two' (invalid literal for int() with base 10: "
     "'two') (allowed: a value of type int)"),
    (["--config.algo.local_steps=0"],
     "error: algo.local_steps: must be >= 1, got 0 (allowed: >= 1)"),
    (["--config.optim.base_lr=1e400"],
     "error: optim.base_lr: inf is not a number (allowed: finite numbers >= 0)"),
])
def test_bad_input_ends_with_one_line(tmp_path, args, message):
  process = _launch("--config", QUICKSTART, "--workdir", str(tmp_path / "run"), *args)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 2
  assert err.strip() == message, err
  assert not os.path.exists(tmp_path / "run")


def _quickstart(*fields):
  """The quickstart config with `section.key=value` fields set, as the command line would."""
  config = overrides.load(QUICKSTART)
  for field in fields:
    name, value = field.split("=", 1)
    section, key = name.split(".")
    with contextlib.suppress(ValueError, SyntaxError):
      value = ast.literal_eval(value)
    config[section][key] = value
  return config


@pytest.mark.parametrize("field, value, message", [
    ("workers.num_workers", 0, r"workers.num_workers: must be >= 1, got 0"),
    ("workers.backend", "tpu", r"workers.backend: unknown value 'tpu' \(allowed: 'simulated', "
     r"'shard_map'\)"),
    ("data.name", "imagenet", r"data.name: unknown value 'imagenet' \(allowed: 'mnist1d', "),
    ("model.name", "vit", r"model.name: unknown value 'vit' \(allowed: 'logistic_regression', "),
    ("algo.name", "fedavg", r"algo.name: unknown value 'fedavg' \(allowed: 'minibatch_sgd', "),
    ("workers.per_node", 3, r"workers.per_node: 3 does not divide workers.num_workers=8"),
    ("algo.compression", "top_k", r"algo.compression: unknown value 'top_k' \(allowed: 'none', "
     r"'sign', 'ef_sign', 'sign_majority'\)"),
    ("algo.local_steps", 0, r"algo.local_steps: must be >= 1, got 0"),
    ("algo.global_momentum", 1.5, r"algo.global_momentum: 1.5 is not a momentum"),
    ("algo.compressor", "topk", r"algo.compressor: unknown value 'topk'"),
    ("algo.compress_fraction", 1.5, r"algo.compress_fraction: 1.5 is not a fraction"),
    ("algo.qg_mu", 1.5, r"algo.qg_mu: 1.5 is not a momentum"),
    ("algo.block_steps", 2, r"algo.block_steps: 2 block steps need hierarchical"),
    ("algo.extrapolation", "lookahead", r"algo.extrapolation: unknown value 'lookahead'"),
    ("optim.momentum", 1.5, r"optim.momentum: 1.5 is not a momentum"),
    ("optim.base_lr", float("inf"), r"optim.base_lr: inf is not a number"),
    ("optim.b2", 1.5, r"optim.b2: 1.5 is not a decay rate"),
    ("model.hidden", (0,), r"model.hidden: must be >= 1, got 0"),
    ("masking.sparsity", 1.0, r"masking.sparsity: 1.0 is not in"),
    ("optim.optimizer", "rmsprop", r"optim.optimizer: unknown value 'rmsprop' \(allowed: 'sgd', "
     r"'adam', 'lars', 'lamb', 'adamw', 'adagrad'\)"),
    ("optim.trust_clip", (2.0, 1.0), r"optim.trust_clip: \(2.0, 1.0\) is not a range"),
    ("checkpoint.every_steps", 75, r"checkpoint.every_steps: 75 is not a multiple of "
     r"train.log_every \(50\) \(allowed: 0 or multiples of 50\)"),
    ("train.num_epochs", 0.0, r"train.num_steps: one of train.num_steps and train.num_epochs"),
])
def test_bad_values_are_named_with_what_is_allowed(field, value, message):
  config = overrides.load(QUICKSTART)
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=message):
    validate(config)


def test_workers_not_divisible_by_devices_are_refused(tmp_path):
  config = overrides.load(QUICKSTART)
  config.workers.update(num_workers=12, backend="shard_map")
  with pytest.raises(ConfigError, match=r"workers.num_workers: 12 workers on a grid \(12,\) cannot "
                     r"be spread evenly over 8 devices \(allowed: a multiple of 8"):
    run(config, str(tmp_path / "run"))
  assert [name for name in os.listdir(tmp_path / "run") if not name.startswith(".lock")] == []


def test_missing_arguments_and_files_are_one_line(tmp_path):
  with pytest.raises(UserError, match=r"--config: no such file 'nope.py'"):
    overrides.parse(["launch", "--config=nope.py"])
  with pytest.raises(UserError, match=r"--config: missing"):
    overrides.parse(["launch", "--workdir=x"])
  with pytest.raises(UserError, match=r"config.algo.name.x: config.algo.name is a value"):
    overrides.parse(["launch", f"--config={QUICKSTART}", "--config.algo.name.x=1"])


def test_sigterm_saves_a_checkpoint_and_the_run_resumes_exactly(data_dir, tmp_path):
  fields = [f"data.data_dir={data_dir}", "data.name=digits", "data.batch_size=8",
            "model.hidden=(16,)", "train.num_steps=300", "train.log_every=1",
            "eval.every_steps=0", "workers.num_workers=4", "optim.warmup_epochs=0.0"]
  workdir = str(tmp_path / "preempted")
  process = _launch(f"--config={QUICKSTART}", f"--workdir={workdir}",
                    *[f"--config.{f}" for f in fields])
  for line in process.stdout:
    if line.startswith("step"):
      process.send_signal(signal.SIGTERM)
      break
  out, err = process.communicate(timeout=120)
  assert process.returncode == 143, err
  stopped = re.search(r"^stopped by SIGTERM at step (\d+); checkpoint saved", out, re.M)
  assert stopped, out
  step = int(stopped[1])
  assert 0 < step < 300
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))

  config = _quickstart(*fields)
  resumed = run(config, workdir)
  unbroken = run(config, str(tmp_path / "unbroken"))
  assert resumed["step"] == unbroken["step"] == 300
  assert resumed["test/accuracy"] == unbroken["test/accuracy"]
  experiment = Experiment(config)
  abstract = experiment.runner.abstract_state(*experiment.initial_model())
  states = []
  for directory in (workdir, str(tmp_path / "unbroken")):
    checkpoints = Checkpoints(os.path.join(directory, "checkpoints"), keep=2)
    states.append(checkpoints.restore(abstract)[1])
    checkpoints.close()
  chex.assert_trees_all_equal(*states)
