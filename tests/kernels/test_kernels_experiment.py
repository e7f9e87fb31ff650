"""The kernels family end to end: a tiny config run, validated, resumed; bad fields named."""

import json
import os
import shutil

import pytest

from jaxdist.errors import ConfigError, UserError
from jaxdist.experiment import run, validate
from jaxdist.experiment.kernels import default
from jaxdist.experiment.writers import read_metrics


def tiny(**changes):
  config = default()
  config.data.num_train, config.data.num_test = 120, 40
  config.workers.num_workers = 4
  for dotted, value in changes.items():
    section, _, key = dotted.partition("__")
    if key:
      config[section][key] = value
    else:
      config[section] = value
  return config


def test_a_tiny_svm_run_writes_its_result_with_the_partitioner(tmp_path):
  last = run(tiny(method="fcfs_svm"), str(tmp_path))
  assert not last["preempted"] and last["partitioner"] == "fcfs"
  assert 0.5 < last["score"] <= 1.0
  assert read_metrics(str(tmp_path))[-1]["score"] == last["score"]
  assert json.loads((tmp_path / "config.json").read_text())["method"] == "fcfs_svm"


def test_asy_gcd_resumes_from_its_checkpoint(tmp_path):
  config = tiny(task="asy_gcd", method="asy_gcd", asy_gcd__num_updates=200,
                asy_gcd__record_every=100, asy_gcd__delay=2)
  whole = run(config, str(tmp_path))
  directory = tmp_path / "checkpoints"
  assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == ["100", "200"]
  shutil.rmtree(directory / "200")  # as if killed after update 100
  resumed = run(config, str(tmp_path))
  assert resumed["objective"] == whole["objective"] and resumed["step"] == 200
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [100, 200]
  for path in (directory / "200").rglob("*"):  # the newest damaged: set aside, the one before
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b"garbage")
  again = run(config, str(tmp_path))
  assert again["objective"] == whole["objective"]
  assert (directory / "damaged" / "200").is_dir()


def test_bad_fields_are_named():
  with pytest.raises(ConfigError, match=r"method: unknown value 'svm' \(allowed: 'dis_smo'"):
    validate(tiny(method="svm"))
  with pytest.raises(ConfigError, match=r"partitioner: unknown value 'random'"):
    validate(tiny(partitioner="random"))
  with pytest.raises(ConfigError, match=r"data.name: task krr cannot use 'ijcnn'"):
    validate(tiny(task="krr", method="dc_krr"))
  with pytest.raises(ConfigError, match=r"kernel.gamma: must be >= 0"):
    validate(tiny(kernel__gamma=-1.0))
  with pytest.raises(ConfigError, match=r"svm.CC: no such field 'CC' in svm"):
    validate(tiny(svm__CC=1.0))
  with pytest.raises(ConfigError, match=r"^partitioner: method ca_svm partitions the rows its"):
    validate(tiny(partitioner="kmeans"))  # ca_svm's partition is the method
  with pytest.raises(ConfigError, match=r"^workers.num_workers: 6 is not a power of two"):
    validate(tiny(method="cascade", workers__num_workers=6))
  with pytest.raises(ConfigError, match=r"^krr.lambdas: \[-1.0\] has a value < 0"):
    validate(tiny(task="krr", method="dc_krr", data__name="regression",
                  krr__lambdas=(-1.0,)))


def test_an_unreadable_dataset_leaves_the_workdir_unclaimed(tmp_path):
  config = tiny(data__name="libsvm", data__path=str(tmp_path / "missing.svm"))
  with pytest.raises(UserError, match="no LIBSVM file"):
    run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "config.json")
