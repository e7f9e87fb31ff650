"""Several processes: 2 processes x 2 CPU devices give the numbers of 1 process x 4 devices and
of the simulated run; multi-process checkpoints resume exactly; failures end in bounded time."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from helpers import tiny_config
from jaxdist.core.distributed import free_port
from jaxdist.experiment import run
from jaxdist.experiment.launcher import launch_local, process_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240  # seconds for one multi-process run; the processes are always cleaned up


def _config_file(tmp_path, config) -> str:
  """A config file that returns `config`, for the processes started by `launch`."""
  path = tmp_path / "config.py"
  path.write_text("import json\nimport ml_collections\n\n\ndef get_config():\n"
                  f"  return ml_collections.ConfigDict(json.loads({config.to_json()!r}))\n")
  return str(path)


def _launch_processes(tmp_path, config, workdir, *extra):
  """`python -m launch --local_processes 2 --local_devices 2 ...`; returns (status, stderr)."""
  args = [sys.executable, "-m", "launch", "--local_processes=2", "--local_devices=2",
          f"--config={_config_file(tmp_path, config)}", f"--workdir={workdir}", *extra]
  done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
  return done.returncode, done.stderr


def _model(workdir):
  with np.load(os.path.join(workdir, "model.npz")) as f:
    return dict(f)


ALGORITHMS = {
    "local_sgd": {"algo": {"name": "local_sgd", "local_steps": 2}},
    "choco_sgd": {"algo": {"name": "choco_sgd", "compressor": "top_k",
                           "compress_fraction": 0.1}},
    "qg_dpf": {"algo": {"name": "qg_dsgdm"},
               "masking": {"name": "dpf", "sparsity": 0.5, "recompute_every": 2,
                           "ramp_end": 0.5}},
}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_two_processes_match_one_process_and_the_simulation(data_dir, tmp_path, name):
  sections = ALGORITHMS[name]
  config = tiny_config(data_dir, **sections)
  config.workers.backend = "shard_map"
  status, stderr = _launch_processes(tmp_path, config, str(tmp_path / "two"))
  assert status == 0, stderr[-2000:]
  one = tiny_config(data_dir, **sections)
  one.workers.update(backend="shard_map", num_devices=4)
  run(one, str(tmp_path / "one"))
  simulated = tiny_config(data_dir, **sections)
  run(simulated, str(tmp_path / "simulated"))
  two = _model(tmp_path / "two")
  for other in ("one", "simulated"):
    for key, value in _model(tmp_path / other).items():
      np.testing.assert_allclose(two[key], value, rtol=2e-5, atol=2e-6, err_msg=key)
  with open(tmp_path / "two" / "metrics.jsonl") as f:  # written once, by process 0
    assert [json.loads(line)["step"] for line in f] == [4, 8, 12]


def test_multi_process_checkpoints_resume_bit_identical(data_dir, tmp_path):
  """D-SGD on a ring of 8 over 4 devices in 2 processes: ppermutes cross the processes."""
  config = tiny_config(data_dir, algo={"name": "dsgd"}, workers={"num_workers": 8},
                       checkpoint={"keep": 5})
  config.workers.backend = "shard_map"
  workdir = tmp_path / "run"
  assert _launch_processes(tmp_path, config, str(workdir))[0] == 0
  unbroken = _model(workdir)
  simulated = tiny_config(data_dir, algo={"name": "dsgd"}, workers={"num_workers": 8})
  run(simulated, str(tmp_path / "simulated"))
  for key, value in _model(tmp_path / "simulated").items():
    np.testing.assert_allclose(unbroken[key], value, rtol=2e-5, atol=2e-6)
  for step in ("8", "12"):  # as if the run had died after its step-4 checkpoint
    shutil.rmtree(workdir / "checkpoints" / step)
  os.remove(workdir / "model.npz")
  assert _launch_processes(tmp_path, config, str(workdir))[0] == 0
  resumed = _model(workdir)
  for key in unbroken:
    np.testing.assert_array_equal(unbroken[key], resumed[key])


def test_a_dead_process_stops_the_others_at_once():
  command = [sys.executable, "-c", "import os, time\n"
             "if os.environ['JAXDIST_PROCESS_ID'] == '1': os._exit(3)\ntime.sleep(120)"]
  started = time.monotonic()
  assert launch_local(3, 1, command) == 3
  assert time.monotonic() - started < 20


def _start(config_path, workdir, process_id, port, num_processes=2, timeout=5):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(
      [sys.executable, "-m", "launch", f"--config={config_path}", f"--workdir={workdir}",
       f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
       f"--process_id={process_id}", f"--join_timeout={timeout}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_without_the_launcher_a_killed_process_ends_the_run_in_bounded_time(data_dir, tmp_path):
  config = tiny_config(data_dir, train={"num_steps": 10**6, "log_every": 4},
                       eval={"every_steps": 0}, checkpoint={"every_steps": 0})
  config.workers.backend = "shard_map"
  path, port = _config_file(tmp_path, config), free_port()
  first = _start(path, tmp_path / "run", 0, port)
  second = _start(path, tmp_path / "run", 1, port)
  try:
    for line in first.stdout:  # process 0 reports progress once both are training
      if line.startswith("step"):
        break
    second.send_signal(signal.SIGKILL)
    started = time.monotonic()
    assert first.wait(timeout=60) != 0
    assert time.monotonic() - started < 30
  finally:
    for p in (first, second):
      if p.poll() is None:
        p.kill()
      p.wait()


@pytest.mark.parametrize("process_id, num_processes, message", [
    (2, 2, "--process_id: 2 is not a process of 2 (allowed: 0..1)"),
    (1, 2, "--coordinator_address: nothing answers at 127.0.0.1:"),
])
def test_bad_process_settings_end_with_one_line(data_dir, tmp_path, process_id, num_processes,
                                               message):
  config = tiny_config(data_dir)
  config.workers.backend = "shard_map"
  started = time.monotonic()
  p = _start(_config_file(tmp_path, config), tmp_path / "run", process_id, free_port(),
             num_processes, timeout=3)
  _, stderr = p.communicate(timeout=60)
  assert p.returncode == 2 and time.monotonic() - started < 40
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], stderr[-2000:]


def test_worker_count_must_divide_over_all_processes_devices(data_dir, tmp_path):
  config = tiny_config(data_dir, workers={"num_workers": 6})
  config.workers.backend = "shard_map"
  status, stderr = _launch_processes(tmp_path, config, str(tmp_path / "run"))
  assert status == 2
  assert "error: workers.num_workers: 6 workers on a grid (6,) cannot be spread evenly over 4 " \
         "devices" in stderr


def test_mismatched_process_counts_end_both_processes(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.workers.backend = "shard_map"
  path, port = _config_file(tmp_path, config), free_port()
  first = _start(path, tmp_path / "run", 0, port, num_processes=2)
  second = _start(path, tmp_path / "run", 1, port, num_processes=3)
  try:
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 2
    assert stderr.strip().splitlines()[-1] == (
        "error: --num_processes: this process was started with 3 but the coordinator runs 2 "
        "(allowed: the same number on every process)")
    _, stderr = first.communicate(timeout=90)
    assert first.returncode != 0
    assert "error: process 0: a collective with the other processes failed" in stderr
  finally:
    for p in (first, second):
      if p.poll() is None:
        p.kill()
      p.wait()


def _launcher(tmp_path, data_dir):
  """`--local_processes 2` on a long run, once both processes train; (launcher, its children)."""
  config = tiny_config(data_dir, train={"num_steps": 10**6, "log_every": 4},
                       eval={"every_steps": 0}, checkpoint={"every_steps": 0})
  config.workers.backend = "shard_map"
  launcher = subprocess.Popen(
      [sys.executable, "-m", "launch", "--local_processes=2", "--local_devices=2",
       f"--config={_config_file(tmp_path, config)}", f"--workdir={tmp_path / 'run'}"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in launcher.stdout:  # process 0 reports progress once both are training
    if line.startswith("step"):
      break
  children = psutil.Process(launcher.pid).children()
  assert len(children) == 2
  return launcher, children


def test_killing_the_launcher_stops_its_processes(data_dir, tmp_path):
  launcher, children = _launcher(tmp_path, data_dir)
  launcher.send_signal(signal.SIGKILL)
  launcher.wait()
  gone, alive = psutil.wait_procs(children, timeout=30)
  assert not alive and len(gone) == 2


def test_a_killed_process_is_one_line_of_the_launcher(data_dir, tmp_path):
  launcher, children = _launcher(tmp_path, data_dir)
  process_0 = min(children, key=lambda p: p.environ().get("JAXDIST_PROCESS_ID", "9"))
  process_0.send_signal(signal.SIGKILL)
  _, stderr = launcher.communicate(timeout=90)
  assert launcher.returncode != 0
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: process 0 of 2 exited with status -9; "
                                                 "stopped the others (its output: "), stderr
  psutil.wait_procs(children, timeout=10)


def test_the_launcher_keeps_the_users_xla_flags_and_sets_the_device_count():
  flags = ("--xla_force_host_platform_device_count=8 --xla_backend_extra_options="
           "xla_cpu_small_while_loop_byte_threshold=1000000")
  assert process_xla_flags(flags, 2) == (
      "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000 "
      "--xla_force_host_platform_device_count=2")
  assert process_xla_flags("", 4) == "--xla_force_host_platform_device_count=4"
