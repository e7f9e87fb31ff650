"""Where the workers live: simulated on one device, over a device mesh, over several processes.

A layout turns a worker grid into `Workers`; the algorithm and the numbers do not change with it
(up to the order of floating-point reductions: see README, "Same numbers").

    jaxdist.Simulated()                       # K workers vmapped on one device
    jaxdist.Simulated(devices=0)              # ... or over this host's CPU devices: every core
    jaxdist.Sharded(num_devices=0)            # spread over the devices (all visible by default)
    jaxdist.MultiProcess(coordinator_address="host0:1234", num_processes=2, process_id=i)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax

from jaxdist.core import distributed, workers
from jaxdist.errors import ArgumentError, check_at_least


@dataclasses.dataclass(frozen=True)
class Simulated:
  """Every worker on this host, the worker axes vmapped: on the first local device (`devices=1`),
  or split over `devices` local devices, each vmapping its share (shard_map + vmap, the numbers
  unchanged up to the order of float reductions).

  On a CPU host one device runs the K workers' small batched products mostly on one core; split
  over several devices (4 per core works best on 2 cores) their programs overlap on all of them
  (local SGD, K = 32 x 32: 2.0x -> 1.0-1.1x the time per example of one model;
  benchmarks/simulation_overhead.py). JAX makes CPU devices only when asked before it is
  imported: in a notebook, first

      import os; os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
      import jax, jaxdist
      layout = jaxdist.Simulated(devices=0)

  (`python -m launch` does both itself on CPU). `devices=0` takes as many CPU devices as there
  are and divide the grid evenly (one device elsewhere, or when there is only one).
  """

  devices: int = 1

  def __post_init__(self):
    check_at_least("devices", self.devices, 0, integer=True)

  def workers(self, shape: Sequence[int], names: Sequence[str]) -> workers.Workers:
    devices = self.devices or _cpu_devices_for(shape)
    if devices == 1:
      return workers.simulated(shape, names)
    available = len(jax.local_devices())
    if devices > available:
      raise ArgumentError(
          "devices", f"{devices} devices asked for but this host has {available}; on CPU set "
          f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before importing jax",
          f"1..{available}, or 0 for as many CPU devices as divide the grid")
    workers.simulated(shape, names)  # the same checks: one process
    return workers.sharded(shape, names, devices)


def _cpu_devices_for(shape: Sequence[int]) -> int:
  """The most local CPU devices (at most all of them) that the grid splits over evenly."""
  local = jax.local_devices()
  if local[0].platform != "cpu":
    return 1
  total = math.prod(int(s) for s in shape)
  return max(d for d in range(1, len(local) + 1)
             if total % d == 0 and workers.split_devices(tuple(shape), d) is not None)


@dataclasses.dataclass(frozen=True)
class Sharded:
  """The workers spread over `num_devices` devices (0: all visible, of every process), K/D per
  device; K must be a multiple of the device count along the grid."""

  num_devices: int = 0

  def __post_init__(self):
    check_at_least("num_devices", self.num_devices, 0, integer=True)

  def workers(self, shape: Sequence[int], names: Sequence[str]) -> workers.Workers:
    return workers.sharded(shape, names, self.num_devices)


@dataclasses.dataclass(frozen=True)
class MultiProcess(Sharded):
  """One process per host, the mesh spanning every process's devices.

  Constructing it joins the processes (`jax.distributed.initialize`), so build it before any
  other JAX call. With `auto=True` (TPU pod slices, SLURM) JAX finds the coordinator itself;
  otherwise give process 0's `host:port`, the number of processes and this process's id (or
  set JAXDIST_COORDINATOR_ADDRESS, JAXDIST_NUM_PROCESSES, JAXDIST_PROCESS_ID). `timeout`
  bounds the wait for the others and how long a dead process goes unnoticed.
  """

  coordinator_address: str = ""
  num_processes: int = 0
  process_id: int = -1
  auto: bool = False
  timeout: int = 60

  def __post_init__(self):
    super().__post_init__()
    check_at_least("timeout", self.timeout, 1, integer=True)
    distributed.initialize(self.coordinator_address, self.num_processes, self.process_id,
                           auto=self.auto, timeout=self.timeout, heartbeat_timeout=self.timeout)


def check_layout(layout: object) -> None:
  if not isinstance(layout, (Simulated, Sharded)):
    raise ArgumentError("layout", f"{layout!r} is not a layout",
                        "jaxdist.Simulated(), jaxdist.Sharded(...), jaxdist.MultiProcess(...)")
