"""N processes of one run on this machine, for trying out and testing multi-process runs.

`launch_local` starts `python -m launch ...` N times with D fake CPU devices each, told through
the environment to join on a free local port (gloo collectives). If one fails, the others are
stopped at once and the failing process is named. The processes die with the launcher, even
when it is killed outright (Linux's parent-death signal). Their standard output passes through;
of their standard error only the `error:` lines do (once each), the rest, such as the transport
noise of a collective whose peer died, goes to a log file per process, named when one fails.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from jaxdist.core.distributed import ENV, free_port

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int):
  """A preexec_fn: SIGTERM this child when its parent (the launcher) dies."""
  def set_signal():
    if sys.platform.startswith("linux"):
      ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
      if os.getppid() != parent:  # the launcher died before the call
        os._exit(143)
  return set_signal


class _ErrorLines:
  """Copies a child's stderr to its log; forwards each distinct `error:` line once, until the
  launcher has seen a process fail (what the stopped others say then is in their logs)."""

  def __init__(self):
    self.seen, self.printed_by, self.closed = set(), set(), False
    self.lock = threading.Lock()

  def follow(self, stream, log_path: str, process: int) -> threading.Thread:
    def copy():
      with open(log_path, "w") as log:
        for line in stream:
          log.write(line)
          log.flush()
          if line.startswith("error:"):
            with self.lock:
              if not self.closed and line not in self.seen:
                self.seen.add(line)
                self.printed_by.add(process)
                sys.stderr.write(line)
                sys.stderr.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def process_xla_flags(flags: str, devices_per_process: int) -> str:
  """The launcher's XLA_FLAGS for one process: the user's flags (the small-loop threshold, say)
  with the device count set to `devices_per_process`."""
  kept = re.sub(r"--xla_force_host_platform_device_count=\S*", "", flags).split()
  return " ".join([*kept, f"--xla_force_host_platform_device_count={devices_per_process}"])


def launch_local(num_processes: int, devices_per_process: int, command: list[str],
                 poll_seconds: float = 0.2) -> int:
  """Runs `command` (e.g. python -m launch ...) as `num_processes` processes with
  `devices_per_process` fake CPU devices each, told through ENV to join on a free local port.
  Waits for all; if one fails, stops the others and says which. Returns the exit status (0, or
  the first failure's)."""
  port = free_port()
  logs = tempfile.mkdtemp(prefix="jaxdist_processes_")
  errors, processes, followers = _ErrorLines(), [], []
  for i in range(num_processes):
    env = {**os.environ, ENV["coordinator_address"]: f"127.0.0.1:{port}",
           ENV["num_processes"]: str(num_processes), ENV["process_id"]: str(i),
           "XLA_FLAGS": process_xla_flags(os.environ.get("XLA_FLAGS", ""), devices_per_process),
           "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_die_with_parent(os.getpid()))
    processes.append(process)
    followers.append(errors.follow(process.stderr, os.path.join(logs, f"process_{i}.log"), i))
  forward = lambda signum, _: [p.send_signal(signum) for p in processes if p.poll() is None]
  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    while True:
      codes = [p.poll() for p in processes]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i, code = failed[0]
        followers[i].join(timeout=5)  # what the failed process said comes first
        with errors.lock:
          errors.closed = True
        _stop(processes)
        if code not in (2, 143) and i not in errors.printed_by:  # said already
          print(f"error: process {i} of {num_processes} exited with status {code}; stopped the "
                f"others (its output: {os.path.join(logs, f'process_{i}.log')}; run the same "
                "command to resume from the last checkpoint)", file=sys.stderr)
        return code
      if all(c == 0 for c in codes):
        return 0
      time.sleep(poll_seconds)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
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
