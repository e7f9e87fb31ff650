"""A workdir under faults: every file garbled, truncated or deleted in turn, concurrent runs,
kills between outputs, divergence, and the last bad inputs; each ends in one line or a clean
recovery with nothing good lost."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_config
from jaxdist.errors import UserError
from jaxdist.experiment import overrides, run, validate
from jaxdist.experiment.writers import read_metrics
from jaxdist.training.checkpoint import DirectoryLock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(data_dir, **sections):
  base = {"train": {"num_steps": 8}, "eval": {"every_steps": 0},
          "checkpoint": {"every_steps": 4, "keep": 2}}
  for section, fields in sections.items():
    base[section] = {**base.get(section, {}), **fields}
  return tiny_config(data_dir, **base)


def _model(workdir):
  with np.load(os.path.join(workdir, "model.npz")) as f:
    return dict(f)


def _strict(path):
  """The records of a JSON-lines file, refusing NaN and Infinity as JSON does."""
  def refuse(token):
    raise ValueError(f"{token} is not JSON")
  with open(path) as f:
    return [json.loads(line, parse_constant=refuse) for line in f]


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
  """A finished run to damage: config, workdir, its model."""
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  run(config, workdir)
  return config, workdir, _model(workdir)


def _files(workdir):
  """Every file of the workdir but the locks, by path relative to it; of the checkpoints, the
  newest one's (the older ones are made of the same files, and only restored after it)."""
  return sorted(os.path.relpath(os.path.join(root, name), workdir)
                for root, _, names in os.walk(workdir) for name in names
                if not name.startswith(".lock") and "checkpoints/4" not in root)


FAULTS = {
    "garbled": lambda path: Path(path).write_bytes(b"\x00garbage\xff" * 3),
    "truncated": lambda path: os.truncate(path, os.path.getsize(path) // 2),
    "deleted": os.remove,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_every_file_of_a_workdir_damaged_in_turn(finished, tmp_path, fault):
  """A rerun of the finished run after the fault either recovers (the same model.npz, every
  output present, the metrics strict JSON) or ends with one line; a traceback never."""
  config, workdir, model = finished
  outcomes = {}
  for name in _files(workdir):
    copy = str(tmp_path / "copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(workdir, copy)
    FAULTS[fault](os.path.join(copy, name))
    try:
      run(config, copy)
    except UserError as e:
      assert "\n" not in str(e), (name, str(e))
      outcomes[name] = "one line: " + str(e)[:60]
      continue
    recovered = _model(copy)
    assert set(recovered) == set(model), name
    for key in model:
      np.testing.assert_array_equal(recovered[key], model[key], err_msg=name)
    assert os.path.exists(os.path.join(copy, "config.json")), name
    assert [r["step"] for r in _strict(os.path.join(copy, "metrics.jsonl"))] == [4, 8], name
    outcomes[name] = "recovered"
  assert len(outcomes) >= 18
  assert outcomes["model.npz"] == outcomes["checkpoints/8/commit_success.txt"] == "recovered"
  assert outcomes["config.json"].startswith("one line" if fault != "deleted" else "recovered")


def test_a_second_run_on_a_workdir_ends_at_once(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  with DirectoryLock(workdir, "workdir"), pytest.raises(
      UserError, match=r"^workdir: .* is in use by another run"):
    run(_config(data_dir), workdir)


def test_a_run_killed_before_its_outputs_writes_them_when_run_again(data_dir, tmp_path):
  config = _config(data_dir, masking={"name": "dpf", "sparsity": 0.5, "ramp_end": 0.5})
  workdir = str(tmp_path / "run")
  run(config, workdir)
  model = _model(workdir)
  os.remove(os.path.join(workdir, "model.npz"))
  assert run(config, workdir)["step"] == 8
  for key, value in model.items():
    np.testing.assert_array_equal(_model(workdir)[key], value)


def test_a_torn_metrics_line_is_dropped_and_written_again(data_dir, tmp_path):
  config = _config(data_dir)
  workdir = str(tmp_path / "run")
  run(config, workdir)
  complete = read_metrics(workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))  # killed while writing step 8
  path = os.path.join(workdir, "metrics.jsonl")
  Path(path).write_text(Path(path).read_text()[:-40])
  assert [r["step"] for r in read_metrics(workdir)] == [4]
  run(config, workdir)
  assert [r["step"] for r in _strict(path)] == [4, 8]
  timeless = lambda records: [{k: v for k, v in r.items() if not k.startswith("perf/")}
                              for r in records]
  assert timeless(read_metrics(workdir)) == timeless(complete)


def test_a_diverging_run_stops_with_one_line_and_a_skipping_one_writes_strict_json(data_dir,
                                                                                  tmp_path):
  workdir = str(tmp_path / "diverged")
  args = [sys.executable, "-m", "launch", f"--config={ROOT}/configs/quickstart.py",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.name=digits", "--config.train.num_steps=20",
          "--config.train.log_every=5", "--config.eval.every_steps=0",
          "--config.optim.base_lr=1e6", "--config.checkpoint.every_steps=5"]
  done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
  assert done.returncode == 1
  assert done.stderr.strip().startswith("error: divergence: the metric loss is not finite from "
                                        "step "), done.stderr[-1000:]
  assert len(done.stderr.strip().splitlines()) == 1
  assert not os.path.exists(os.path.join(workdir, "config.json"))  # not claimed
  skipping = str(tmp_path / "skipped")
  done = subprocess.run([*args[:4], f"--workdir={skipping}", *args[5:],
                         "--config.train.on_nonfinite=skip"], cwd=ROOT, capture_output=True,
                        text=True, timeout=180)
  assert done.returncode == 0, done.stderr[-1000:]
  records = _strict(os.path.join(skipping, "metrics.jsonl"))
  assert records[-1]["nonfinite/skipped"] > 0


def _config_file(tmp_path, text):
  path = tmp_path / "config.py"
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize("text, message", [
    ("def get_config(:\n", r"--config: .* cannot be loaded \(SyntaxError: "),
    ("x = 1\n", r"--config: .* defines no get_config"),
    ("def get_config():\n  return None\n", r"--config: get_config of .* returned NoneType"),
    ("def get_config():\n  raise KeyError('oops')\n", r"--config: get_config of .* failed "
     r"\(KeyError: 'oops'\)"),
])
def test_broken_config_files_end_with_one_line(tmp_path, text, message):
  with pytest.raises(UserError, match=message) as error:
    overrides.load(_config_file(tmp_path, text))
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("sections, message", [
    ({"model": {"hidden": (0,)}}, r"model.hidden: must be >= 1, got 0"),
    ({"model": {"hidden": (-5,)}}, r"model.hidden: must be >= 1, got -5"),
    ({"algo": {"name": "minibatch_sgd", "extrapolation": "extrap_adam"}},
     r"algo.extrapolation: extrap_adam takes the Adam moments"),
    ({"data": {"partition": "dirichlet", "dirichlet_alpha": float("inf")}},
     r"data.dirichlet_alpha: must be a finite number > 0, got inf"),
    ({"optim": {"base_lr": 1e400}}, r"optim.base_lr: inf is not a number"),
    ({"algo": {"consensus_step": 5.0}}, r"algo.consensus_step: 5.0 overshoots"),
    ({"optim": {"warmup_start_lr": -0.1}}, r"optim.warmup_start_lr: must be >= 0"),
    ({"algo": {"global_momentum": 1.5}}, r"algo.global_momentum: 1.5 is not a momentum"),
    ({"optim": {"b2": 1.5}}, r"optim.b2: 1.5 is not a decay rate"),
    ({"train": {"on_nonfinite": "ignore"}}, r"train.on_nonfinite: unknown value 'ignore'"),
])
def test_the_last_bad_inputs_are_named_before_the_workdir_is_touched(data_dir, tmp_path,
                                                                     sections, message):
  config = _config(data_dir, **sections)
  with pytest.raises(UserError, match=message):
    validate(config)
  with pytest.raises(UserError, match=message):
    run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_an_unwritable_data_dir_is_one_line(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  config = tiny_config(str(blocker / "tfds"))
  with pytest.raises(UserError, match=r"data.data_dir: cannot generate digits in .*file/tfds"):
    run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "config.json")
