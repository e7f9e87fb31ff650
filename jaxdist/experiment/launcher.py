"""N processes of one run on this machine, for trying out and testing multi-process runs.

`launch_local` starts `python -m launch ...` N times with D fake CPU devices each, told through
the environment to join on a free local port (gloo collectives). If one fails, the others are
stopped at once and the failing process is named.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from jaxdist.core.distributed import ENV, free_port


def launch_local(num_processes: int, devices_per_process: int, command: list[str],
                 poll_seconds: float = 0.2) -> int:
  """Runs `command` (e.g. python -m launch ...) as `num_processes` processes with
  `devices_per_process` fake CPU devices each, told through ENV to join on a free local port.
  Waits for all; if one fails, stops the others and says which. Returns the exit status (0, or
  the first failure's)."""
  port = free_port()
  processes = []
  for i in range(num_processes):
    env = {**os.environ, ENV["coordinator_address"]: f"127.0.0.1:{port}",
           ENV["num_processes"]: str(num_processes), ENV["process_id"]: str(i),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
           "JAX_PLATFORMS": "cpu"}
    processes.append(subprocess.Popen(command, env=env))
  forward = lambda signum, _: [p.send_signal(signum) for p in processes if p.poll() is None]
  previous = signal.signal(signal.SIGTERM, forward)
  try:
    while True:
      codes = [p.poll() for p in processes]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i, code = failed[0]
        _stop(processes)
        if code not in (2, 143):  # bad input and preemption speak for themselves
          print(f"error: process {i} of {num_processes} exited with status {code}; stopped the "
                "others (run the same command to resume from the last checkpoint)",
                file=sys.stderr)
        return code
      if all(c == 0 for c in codes):
        return 0
      time.sleep(poll_seconds)
  finally:
    signal.signal(signal.SIGTERM, previous)
    _stop(processes)


def _stop(processes, grace_seconds: float = 5.0) -> None:
  for p in processes:
    if p.poll() is None:
      p.terminate()
  deadline = time.time() + grace_seconds
  for p in processes:
    try:
      p.wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
