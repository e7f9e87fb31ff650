"""Errors caused by what a user asked for, each one line naming what to change.

The library names its arguments (`ArgumentError`); the experiment layer names config fields
(`ConfigError`, mapped from the arguments in `jaxdist.experiment.build`). `launch` prints both as
one line.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import jax


class UserError(Exception):
  """Bad input: a value, a missing dataset, an unusable workdir or checkpoint."""


def _message(name: str, problem: str, allowed: str | Iterable[Any] | None) -> str:
  if allowed is not None and not isinstance(allowed, str):
    allowed = ", ".join(repr(a) for a in allowed)
  message = f"{name}: {problem}"
  if allowed:
    message += f" (allowed: {allowed})"
  return message


class ArgumentError(UserError, ValueError):
  """A library argument has a value that cannot be used; `argument` names it."""

  def __init__(self, argument: str, problem: str, allowed: str | Iterable[Any] | None = None):
    self.argument, self.problem = argument, problem
    self.allowed = allowed if allowed is None or isinstance(allowed, str) else tuple(allowed)
    super().__init__(_message(argument, problem, self.allowed))


class ConfigError(UserError, ValueError):
  """A config field has a value that cannot be used; `field` names it (`section.key`)."""

  def __init__(self, field: str, problem: str, allowed: str | Iterable[Any] | None = None):
    self.field, self.problem = field, problem
    self.allowed = allowed if allowed is None or isinstance(allowed, str) else tuple(allowed)
    super().__init__(_message(field, problem, self.allowed))


# -- argument checks shared by the constructors ------------------------------------------------


def is_traced(value: Any) -> bool:
  """Whether `value` is a traced array (a hyperparameter that a vmapped population of trials
  gives per trial): the checks below pass it, its concrete values were checked where drawn."""
  return isinstance(value, jax.core.Tracer)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
  """`value` must be one of `allowed`."""
  allowed = tuple(allowed)
  if value not in allowed:
    raise ArgumentError(name, f"unknown value {value!r}", allowed)


def check_at_least(name: str, value: Any, low: float, integer: bool = False) -> None:
  """`value` must be a finite number (an integer if `integer`) >= `low`."""
  if is_traced(value):
    return
  kind = "an integer" if integer else "a number"
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(
      value) or (integer and not float(value).is_integer()):
    raise ArgumentError(name, f"{value!r} is not {kind}",
                        f"{'integers' if integer else 'finite numbers'} >= {low}")
  if not value >= low:
    raise ArgumentError(name, f"must be >= {low}, got {value}", f">= {low}")


def check_fraction(name: str, value: Any, *, closed: bool = False) -> None:
  """`value` must be in [0, 1), or [0, 1] when `closed`."""
  check_at_least(name, value, 0)
  if is_traced(value):
    return
  if value > 1 or (value == 1 and not closed):
    interval = "[0, 1]" if closed else "[0, 1)"
    raise ArgumentError(name, f"{value} is not in {interval}", f"0 <= {name} "
                        f"{'<=' if closed else '<'} 1")
