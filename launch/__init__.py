"""`python -m launch --config configs/X.py --workdir DIR [--config.section.field=value ...]`.

On a CPU host, one process, it asks JAX for four CPU devices per core (unless XLA_FLAGS names a
count), over which simulated workers are split (`jaxdist.Simulated(devices=0)`), so that their
small products run on every core; this has to happen before jax is imported, so it happens here,
before `launch/__main__.py` runs. (Four per core: at B = 32 the workers' programs then overlap
best on 2 cores, benchmarks/simulation_overhead.py.)
"""

import os
import sys


def _cpu_devices_per_core() -> None:
  flags = os.environ.get("XLA_FLAGS", "")
  multi = os.environ.get("JAXDIST_COORDINATOR_ADDRESS") or any(
      arg.startswith(f"--{name}") for arg in sys.argv[1:] for name in (
          "distributed", "coordinator_address", "num_processes", "process_id", "local_processes"))
  on_cpu = os.environ.get("JAX_PLATFORMS", "cpu").split(",")[0] in ("", "cpu")
  if ("jax" not in sys.modules and on_cpu and not multi
      and "xla_force_host_platform_device_count" not in flags):
    os.environ["XLA_FLAGS"] = (f"{flags} --xla_force_host_platform_device_count="
                               f"{4 * (os.cpu_count() or 1)}").strip()


_cpu_devices_per_core()
