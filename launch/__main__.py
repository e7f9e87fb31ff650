"""Command line: `python -m launch --config configs/X.py --workdir DIR [--config.a.b=value ...]`.

On several hosts every host runs the same command (see README, "On several hosts");
`--local_processes N` starts N processes on this machine instead, for trying that out.
Kept short on purpose: everything it runs lives in the importable `jaxdist.experiment` package.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxdist.core import distributed
from jaxdist.errors import ArgumentError, UserError
from jaxdist.experiment import launcher, overrides
from jaxdist.experiment.runs import run
from jaxdist.training.runner import Divergence

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join the other processes of a TPU pod "
                                 "slice or SLURM job (found by jax.distributed.initialize).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 "
                                   "(or $JAXDIST_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in the run "
                                      "(or $JAXDIST_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process, 0..num_processes-1 "
                                   "(or $JAXDIST_PROCESS_ID).")
_TIMEOUT = flags.DEFINE_integer("join_timeout", 60, "Seconds to wait for the other processes; "
                                "also how long a dead process goes unnoticed.")
_LOCAL_PROCESSES = flags.DEFINE_integer("local_processes", 0, "Start this many processes on this "
                                        "machine, each with --local_devices CPU devices.")
_LOCAL_DEVICES = flags.DEFINE_integer("local_devices", 2, "Fake CPU devices per local process.")

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PREEMPTED = 1, 2, 143
_PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id")


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def _parse(argv: list[str]) -> list[str]:
  try:
    rest = overrides.parse(argv)
  except UserError as e:
    _fail(str(e))
  if _WORKDIR.value is None:
    _fail("--workdir: missing (allowed: a directory to write checkpoints and metrics to)")
  return rest


def _without_local_flags(args: list[str]) -> list[str]:
  kept, skip = [], False
  for arg in args:
    if skip:
      skip = False
    elif arg.startswith(("--local_processes", "--local_devices")):
      skip = "=" not in arg
    else:
      kept.append(arg)
  return kept


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]} (allowed: --config, --workdir, --config.*)")
  logging.set_verbosity(logging.WARNING)
  if _LOCAL_PROCESSES.value:
    if _LOCAL_PROCESSES.value < 1 or _LOCAL_DEVICES.value < 1:
      _fail("--local_processes, --local_devices: must be >= 1 (allowed: >= 1)")
    command = [sys.executable, "-m", "launch", *_without_local_flags(sys.argv[1:])]
    sys.exit(launcher.launch_local(_LOCAL_PROCESSES.value, _LOCAL_DEVICES.value, command))
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           auto=_DISTRIBUTED.value, timeout=_TIMEOUT.value,
                           heartbeat_timeout=_TIMEOUT.value)
  except ArgumentError as e:  # the flags have the arguments' names
    _fail(f"--{e}" if e.argument in _PROCESS_FLAGS else str(e))
  try:
    result = run(_CONFIG.value, _WORKDIR.value)
  except Divergence as e:  # not bad input: the run failed
    _fail(str(e), EXIT_FAILED)
  except UserError as e:
    _fail(str(e))
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    cause = str(e).strip().splitlines()[0][:300]
    _fail(f"process {jax.process_index()}: a collective with the other processes failed "
          f"({cause}); another process has probably stopped, see its output; run the same "
          "command on every process to resume from the last checkpoint", EXIT_FAILED)
  if result["preempted"]:
    sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
