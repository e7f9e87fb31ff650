"""Step time on 2 processes x 2 CPU devices against 1 process x 4 devices, and the bytes a step
sends between the processes.

The same jitted training chunk that `launch` runs (MLP 40-256-256-10 on MNIST-1D, 8 workers,
batch 32 each, shard_map over 4 devices), for local SGD (H = 4, one all-reduce every 4 steps) and
D-SGD on a ring (two neighbour exchanges every step). The processes talk through gloo over
loopback TCP, the single process through shared memory, so the ratio is the cost of crossing
processes on this machine. Bytes between processes are counted from what the step does: a ring
shift moves one device's block of workers (2 models) to the next device, and 2 of the 4 device
links cross a process boundary; an all-reduce of d floats over 2 processes sends at least d
floats each way.

  python benchmarks/multihost_step_time.py [--steps 50] [--repeats 7]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax

from jaxdist.core import distributed
from jaxdist.experiment.config import default
from jaxdist.experiment.launcher import launch_local
from timing import Case, measure

CASES = {"local SGD, H = 4": {"name": "local_sgd", "local_steps": 4},
         "D-SGD, ring": {"name": "dsgd", "measure_consensus": False}}
WORKERS, BATCH, DEVICES = 8, 32, 4


def _measure(algo: dict, steps: int, repeats: int) -> dict:
  """Seconds per step (median) of this process's run, on all visible devices."""
  distributed.initialize(timeout=60, heartbeat_timeout=60)
  config = default()
  config.algo.update(**algo)
  config.workers.update(num_workers=WORKERS, backend="shard_map")
  config.data.update(name="mnist1d_large", batch_size=BATCH)
  config.optim.update(base_lr=0.05, lr_scaling="none", schedule="constant")
  config.train.update(num_steps=10**6, log_every=steps)
  case = Case(config, steps)  # compiled, and one warm-up chunk run
  measure([case], repeats)
  params = sum(x.size for x in jax.tree.leaves(case.runner.deployed(case.state)[0]))
  return {"seconds_per_step": case.seconds_per_step, "params": params,
          "compile": case.compile_seconds}


def _run(processes: int, devices: int, args, algo: str) -> dict:
  """The measurement in fresh processes; returns process 0's result."""
  handle, out = tempfile.mkstemp(suffix=".json")
  os.close(handle)
  command = [sys.executable, __file__, "--child", algo, "--out", out, "--steps", str(args.steps),
             "--repeats", str(args.repeats)]
  if processes > 1:
    status = launch_local(processes, devices, command)
  else:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    status = subprocess.run(command, env=env).returncode
  if status:
    raise SystemExit(f"error: the {processes}-process measurement failed with status {status}")
  with open(out) as f:
    result = json.load(f)
  os.remove(out)
  return result


def _bytes_between_processes(algo: dict, params: int) -> float:
  model = 4 * params
  if algo["name"] == "dsgd":  # 2 shifts; a block of WORKERS / DEVICES models crosses per process
    return 2 * (WORKERS // DEVICES) * model
  return model / algo["local_steps"]  # one all-reduce every H steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--child", choices=list(CASES))
  parser.add_argument("--out")
  args = parser.parse_args()
  if args.child:
    result = _measure(CASES[args.child], args.steps, args.repeats)
    if distributed.is_primary():
      with open(args.out, "w") as f:
        json.dump(result, f)
    return
  print(f"MLP on MNIST-1D, {WORKERS} workers x {BATCH}, shard_map over {DEVICES} CPU devices; "
        f"medians of {args.repeats} chunks of {args.steps} steps\n")
  print(f"{'method':18} | {'1 x 4 ms/step':>13} | {'2 x 2 ms/step':>13} | {'ratio':>6} | "
        f"{'bytes/step between processes':>28} | compile s")
  for name, algo in CASES.items():
    one = _run(1, DEVICES, args, name)
    two = _run(2, DEVICES // 2, args, name)
    sent = _bytes_between_processes(algo, one["params"])
    print(f"{name:18} | {1e3 * one['seconds_per_step']:>13.3f} | "
          f"{1e3 * two['seconds_per_step']:>13.3f} | "
          f"{two['seconds_per_step'] / one['seconds_per_step']:>5.2f}x | "
          f"{sent:>28,.0f} | {one['compile']:.1f}/{two['compile']:.1f}", flush=True)


if __name__ == "__main__":
  main()
