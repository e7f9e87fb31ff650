"""Several processes, one run: JAX's multi-controller runtime, and a launcher for local tests.

Every process runs the same `python -m launch ...`; `initialize` joins them into one JAX runtime
whose devices form the worker mesh. Where the processes come from:

* a TPU pod slice or a SLURM job: `--distributed`, and `jax.distributed.initialize()` finds the
  coordinator, the process count and this process's id itself;
* anything else: the coordinator address, the number of processes and this process's id from
  flags or from the environment (JAXDIST_COORDINATOR_ADDRESS, JAXDIST_NUM_PROCESSES,
  JAXDIST_PROCESS_ID);
* `launch_local`: N processes on this machine (fake CPU devices, gloo collectives), for tests.

If a process dies, JAX's coordination service stops the others (with its own fatal error) once
the heartbeat times out (`--join_timeout`); a process that cannot reach the coordinator says so in
one line; `launch_local` stops the others at once and names the process that failed.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdist.errors import UserError

ENV = {"coordinator_address": "JAXDIST_COORDINATOR_ADDRESS",
       "num_processes": "JAXDIST_NUM_PROCESSES", "process_id": "JAXDIST_PROCESS_ID"}


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               auto: bool = False, timeout: int = 60, heartbeat_timeout: int = 30) -> None:
  """Joins this process to the others; a no-op for a single process. Flags win over ENV."""
  coordinator_address = coordinator_address or os.environ.get(ENV["coordinator_address"], "")
  num_processes = num_processes or _int_env("num_processes", 0)
  process_id = process_id if process_id >= 0 else _int_env("process_id", -1)
  if not (auto or coordinator_address or num_processes > 1):
    return
  if not auto:
    if not coordinator_address:
      raise UserError("--coordinator_address: missing for a run of several processes (allowed: "
                      "host:port of process 0, or --distributed on a TPU pod or SLURM)")
    if num_processes < 1:
      raise UserError(f"--num_processes: must be >= 1, got {num_processes} (allowed: >= 1)")
    if not 0 <= process_id < num_processes:
      raise UserError(f"--process_id: {process_id} is not a process of {num_processes} "
                      f"(allowed: 0..{num_processes - 1})")
    if process_id > 0:
      # JAX aborts the process when it cannot reach the coordinator; say why first.
      _wait_for(coordinator_address, timeout)
  # Collectives between processes on CPU devices (the accelerators bring their own).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {} if auto else dict(coordinator_address=coordinator_address,
                                num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**kwargs, initialization_timeout=timeout,
                             heartbeat_timeout_seconds=heartbeat_timeout)
  if not auto and jax.process_count() != num_processes:
    raise UserError(f"--num_processes: this process was started with {num_processes} but the "
                    f"coordinator runs {jax.process_count()} (allowed: the same number on every "
                    "process)")


def _wait_for(address: str, timeout: float) -> None:
  """Returns once something listens at host:port; a UserError after `timeout` seconds."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
        return
    except ValueError:
      raise UserError(f"--coordinator_address: {address!r} is not host:port (allowed: host:port "
                      "of process 0)") from None
    except OSError:
      if time.monotonic() > deadline:
        raise UserError(f"--coordinator_address: nothing answers at {address} after {timeout}s; "
                        "start process 0 there, with the same --num_processes") from None
      time.sleep(0.5)


def _int_env(name: str, default: int) -> int:
  text = os.environ.get(ENV[name], "")
  try:
    return int(text) if text else default
  except ValueError:
    raise UserError(f"{ENV[name]}: {text!r} is not an integer (allowed: integers)") from None


def is_primary() -> bool:
  """Process 0 alone writes logs, metrics and exported models."""
  return jax.process_index() == 0


def any_process(flag: bool, mesh: Mesh | None) -> bool:
  """Whether `flag` holds on any process (all processes must call it); voted on the devices of
  the run's `mesh`, whose collectives are set up already."""
  if jax.process_count() == 1:
    return flag
  devices = Mesh(np.asarray(mesh.devices).ravel(), ("all",))
  votes = jax.make_array_from_callback((devices.size,), NamedSharding(devices, PartitionSpec("all")),
                                       lambda _: np.asarray([flag]))
  return bool(_any(votes))


@jax.jit
def _any(votes):
  return jnp.any(votes)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


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
