"""XLA:CPU tuning for tiny models: compile a small training loop as one function.

XLA:CPU runs a compiled program as a sequence of thunks (one per fused op, each a call, some
split over threads). A while loop (the runner's `lax.scan` over steps) whose body touches fewer
bytes than a threshold is instead compiled whole, as one function, with no per-op dispatch: on
the convex problem of reproduce/choco_bits.py (d = 200, n = 8-16 workers) an epoch runs
2.4-5.3x faster for D-SGD, 2.3-3.9x for CHOCO qsgd, 1.1-2.9x for CHOCO top-k
(benchmarks/choco_step_time.py --cases epoch). XLA's default threshold is 1 KiB; a
larger one is a process-wide flag, read when JAX starts its CPU backend:

  XLA_FLAGS=--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000

It pays only where the loop body is tiny: a whole-compiled body runs on one thread, so a
MLP 40-256-256-10 at batch 32 trains half as fast with a 3 MB threshold
(benchmarks/simulation_overhead.py); at 1 MB (the default here) it is not compiled whole and runs
as before. Loops holding a scatter, a sort, a custom call or a collective are never compiled
whole (top-k and random-k compression select with a mask for small k for this reason). Results
agree to rounding with the default compilation, not bit for bit (fusions differ).
"""

import os
import re

from jax._src import xla_bridge  # whether the backend has started: no public API says

from jaxdist.errors import ArgumentError, UserError

SMALL_LOOP_BYTES = 1_000_000
_OPTION = "xla_cpu_small_while_loop_byte_threshold"


def small_loop_flags(flags: str, max_bytes: int = SMALL_LOOP_BYTES) -> str:
  """`flags` (an XLA_FLAGS string) with the small-loop threshold set to `max_bytes`; an earlier
  threshold is replaced, other backend options are kept."""
  if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
    raise ArgumentError("max_bytes", repr(max_bytes), "an int >= 0 (bytes one loop iteration "
                        f"may touch; XLA's default 1024, ours {SMALL_LOOP_BYTES:,})")
  option = f"{_OPTION}={max_bytes}"
  match = re.search(r"--xla_backend_extra_options=(\S*)", flags)
  if match is None:
    return f"{flags} --xla_backend_extra_options={option}".strip()
  kept = [o for o in match.group(1).split(",") if o and not o.startswith(f"{_OPTION}=")]
  joined = ",".join([*kept, option])
  return f"{flags[:match.start()]}--xla_backend_extra_options={joined}{flags[match.end():]}"


def compile_small_loops_whole(max_bytes: int = SMALL_LOOP_BYTES) -> None:
  """Set the small-loop threshold in this process's XLA_FLAGS. Call it before the first JAX
  computation (JAX reads XLA_FLAGS once, when it starts its backend)."""
  flags = small_loop_flags(os.environ.get("XLA_FLAGS", ""), max_bytes)
  if flags == os.environ.get("XLA_FLAGS"):
    return  # set already (at start-up, say)
  if xla_bridge.backends_are_initialized():
    raise UserError("compile_small_loops_whole: JAX's backend has started, so XLA_FLAGS is read "
                    "already; call it before the first JAX computation, or start Python with "
                    f"XLA_FLAGS='{flags}'")
  os.environ["XLA_FLAGS"] = flags
