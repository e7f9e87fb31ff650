"""Errors caused by what a user asked for; `launch` prints them as one line."""

from typing import Iterable


class UserError(Exception):
  """Bad input: a config value, a missing dataset, an unusable workdir or checkpoint."""


class ConfigError(UserError):
  """A config field has a value that cannot be used."""

  def __init__(self, field: str, problem: str, allowed: str | Iterable[str] | None = None):
    self.field = field
    if allowed is not None and not isinstance(allowed, str):
      allowed = ", ".join(repr(a) for a in allowed)
    message = f"{field}: {problem}"
    if allowed:
      message += f" (allowed: {allowed})"
    super().__init__(message)
