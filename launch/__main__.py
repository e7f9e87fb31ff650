"""Command line: `python -m launch --config configs/X.py --workdir DIR [--config.a.b=value ...]`.

Kept short on purpose: everything it runs lives in the importable `jaxdist` package.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxdist import overrides, train
from jaxdist.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")

EXIT_BAD_INPUT, EXIT_PREEMPTED = 2, 143


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _parse(argv: list[str]) -> list[str]:
  try:
    rest = overrides.parse(argv)
  except UserError as e:
    _fail(str(e))
  if _WORKDIR.value is None:
    _fail("--workdir: missing (allowed: a directory to write checkpoints and metrics to)")
  return rest


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]} (allowed: --config, --workdir, --config.*)")
  logging.set_verbosity(logging.WARNING)
  try:
    result = train.run(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    _fail(str(e))
  if result["preempted"]:
    sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
