"""Where the workers live: simulated on one device, over a device mesh, over several processes.

A layout turns a worker grid into `Workers`; the algorithm and the numbers do not change with it
(up to the order of floating-point reductions: see README, "Same numbers").

    jaxdist.Simulated()                       # K workers vmapped on one device
    jaxdist.Sharded(num_devices=0)            # spread over the devices (all visible by default)
    jaxdist.MultiProcess(coordinator_address="host0:1234", num_processes=2, process_id=i)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jaxdist.core import distributed, workers
from jaxdist.errors import ArgumentError, check_at_least


@dataclasses.dataclass(frozen=True)
class Simulated:
  """Every worker on the first local device, the worker axes vmapped."""

  def workers(self, shape: Sequence[int], names: Sequence[str]) -> workers.Workers:
    return workers.simulated(shape, names)


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
