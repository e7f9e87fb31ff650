"""Command-line config handling for `launch`: `--config FILE[:arg]` and `--config.a.b=value`.

absl and ml_collections report a misspelt field with a traceback and a wrong type over two lines;
here both end as one line that names the field and what it allows.
"""

import importlib.util
import os
import re
import traceback

import ml_collections
from absl import flags

from jaxdist.errors import UserError


def _config_argument(argv: list[str]) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  raise UserError("--config: missing (allowed: a config file such as configs/quickstart.py)")


def load(argument: str) -> ml_collections.ConfigDict:
  """The config of `FILE` or `FILE:arg`, as config_flags would load it."""
  path, _, arg = argument.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"--config: no such file {path!r} (allowed: a config file such as "
                    "configs/quickstart.py)")
  spec = importlib.util.spec_from_file_location("jaxdist_config_file", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # the file's own error, whatever it is
    raise UserError(f"--config: {path} cannot be loaded ({_one_line(e)})") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise UserError(f"--config: {path} defines no get_config (allowed: a file with "
                    "get_config(arg='') returning an ml_collections.ConfigDict)")
  try:
    config = get_config(arg) if arg else get_config()
  except UserError:
    raise
  except Exception as e:
    raise UserError(f"--config: get_config of {path} failed ({_one_line(e)})") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"--config: get_config of {path} returned {type(config).__name__} (allowed: "
                    "an ml_collections.ConfigDict, e.g. jaxdist.experiment.config.default())")
  return config


def _one_line(error: Exception) -> str:
  return traceback.format_exception_only(error)[-1].strip()[:300]


def _field(config: ml_collections.ConfigDict, dotted: str):
  """The parent section and key of `dotted`, or a UserError naming the fields that exist."""
  parts = dotted.split(".")
  for depth, key in enumerate(parts):
    if not isinstance(config, ml_collections.ConfigDict) or key not in config:
      where = ".".join(["config", *parts[:depth]])
      if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(f"config.{dotted}: {where} is a value, not a section")
      raise UserError(f"config.{dotted}: no such field {key!r} in {where} "
                      f"(allowed: {', '.join(sorted(config.keys()))})")
    if depth == len(parts) - 1:
      return config, key
    config = config[key]


def parse(argv: list[str]) -> list[str]:
  """Parses absl flags; every bad config argument becomes one UserError line."""
  config = load(_config_argument(argv))
  for arg in argv[1:]:
    match = re.match(r"--config\.([^=]+)", arg)
    if match:
      _field(config, match[1])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    match = re.search(r"flag --config\.([\w.]+)=(.*?): (.*)", str(e))
    if not match:
      raise UserError(str(e).splitlines()[0]) from None
    section, key = _field(config, match[1])
    kind = section.get_type(key).__name__
    raise UserError(f"config.{match[1]}: cannot use {match[2]!r} ({match[3]}) "
                    f"(allowed: a value of type {kind})") from None
