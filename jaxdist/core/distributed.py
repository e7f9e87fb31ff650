"""Several processes, one run: JAX's multi-controller runtime.

Every process runs the same program; `initialize` joins them into one JAX runtime whose devices
form the worker mesh (`jaxdist.MultiProcess` calls it). Where the processes come from:

* a TPU pod slice or a SLURM job: `auto=True`, and `jax.distributed.initialize()` finds the
  coordinator, the process count and this process's id itself;
* anything else: the coordinator address, the number of processes and this process's id as
  arguments or from the environment (JAXDIST_COORDINATOR_ADDRESS, JAXDIST_NUM_PROCESSES,
  JAXDIST_PROCESS_ID).

If a process dies, JAX's coordination service stops the others (with its own fatal error) once
the heartbeat times out (`timeout`); a process that cannot reach the coordinator says so in one
line.
"""

from __future__ import annotations

import os
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdist.errors import ArgumentError

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
      raise ArgumentError("coordinator_address", "missing for a run of several processes",
                          "host:port of process 0, or auto on a TPU pod or SLURM")
    if num_processes < 1:
      raise ArgumentError("num_processes", f"must be >= 1, got {num_processes}", ">= 1")
    if not 0 <= process_id < num_processes:
      raise ArgumentError("process_id", f"{process_id} is not a process of {num_processes}",
                          f"0..{num_processes - 1}")
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
    raise ArgumentError("num_processes", f"this process was started with {num_processes} but "
                        f"the coordinator runs {jax.process_count()}",
                        "the same number on every process")


def _wait_for(address: str, timeout: float) -> None:
  """Returns once something listens at host:port; an ArgumentError after `timeout` seconds."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
        return
    except ValueError:
      raise ArgumentError("coordinator_address", f"{address!r} is not host:port",
                          "host:port of process 0") from None
    except OSError:
      if time.monotonic() > deadline:
        raise ArgumentError("coordinator_address", f"nothing answers at {address} after "
                            f"{timeout}s; start process 0 there, with the same number of "
                            "processes") from None
      time.sleep(0.5)


def _int_env(name: str, default: int) -> int:
  text = os.environ.get(ENV[name], "")
  try:
    return int(text) if text else default
  except ValueError:
    raise ArgumentError(ENV[name], f"{text!r} is not an integer", "integers") from None


def is_primary() -> bool:
  """Process 0 alone writes logs, metrics and exported models."""
  return jax.process_index() == 0


def any_process(flag: bool, mesh: Mesh | None) -> bool:
  """Whether `flag` holds on any process (all processes must call it); voted on the devices of
  the run's `mesh`, whose collectives are set up already."""
  if jax.process_count() == 1:
    return flag
  devices = Mesh(np.asarray(mesh.devices).ravel(), ("all",))
  votes = jax.make_array_from_callback(
      (devices.size,), NamedSharding(devices, PartitionSpec("all")), lambda _: np.asarray([flag]))
  return bool(_any(votes))


@jax.jit
def _any(votes):
  return jnp.any(votes)


def free_port() -> int:
  """A free TCP port on this machine."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def barrier(name: str) -> None:
  """Waits until every process gets here (a no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
