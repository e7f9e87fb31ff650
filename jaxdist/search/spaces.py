"""Search spaces: where a random search (and each Hyperband bracket) draws its configurations.

    space = {"learning_rate": LogUniform(1e-4, 1e-1), "momentum": Uniform(0, 1),
             "local_steps": Integer(1, 16, static=True), "hidden": Choice([32, 64], static=True)}
    configs = sample(space, 81, seed=3)   # a list of 81 dicts of plain Python values

A hyperparameter is `static` when it changes the shapes or the structure of the program (widths,
depths, batch sizes, H of local SGD): trials are grouped by their static values and each group is
trained as one vmapped population, the other hyperparameters riding along as per-trial arrays.
Draws are made column by column in the order of the sorted names, from one numpy generator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxdist.errors import ArgumentError, check_at_least


def _check_range(low, high, *, positive: bool = False) -> None:
  for name, value in (("low", low), ("high", high)):
    check_at_least(name, value, -math.inf)
  if positive and low <= 0:
    raise ArgumentError("low", f"{low} is not positive", "0 < low <= high for a log scale")
  if high < low:
    raise ArgumentError("high", f"{high} is below low = {low}", f">= {low}")


@dataclasses.dataclass(frozen=True)
class LogUniform:
  """exp(U[log low, log high])."""

  low: float
  high: float
  static: bool = False

  def __post_init__(self):
    _check_range(self.low, self.high, positive=True)

  def sample(self, rng: np.random.Generator, n: int) -> list[float]:
    return [float(v) for v in np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))]


@dataclasses.dataclass(frozen=True)
class Uniform:
  """U[low, high]."""

  low: float
  high: float
  static: bool = False

  def __post_init__(self):
    _check_range(self.low, self.high)

  def sample(self, rng: np.random.Generator, n: int) -> list[float]:
    return [float(v) for v in rng.uniform(self.low, self.high, n)]


@dataclasses.dataclass(frozen=True)
class Integer:
  """An integer uniform in [low, high], both included."""

  low: int
  high: int
  static: bool = False

  def __post_init__(self):
    check_at_least("low", self.low, -math.inf, integer=True)
    check_at_least("high", self.high, self.low, integer=True)

  def sample(self, rng: np.random.Generator, n: int) -> list[int]:
    return [int(v) for v in rng.integers(self.low, self.high + 1, n)]


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of `values`, uniformly (or with probabilities `p`)."""

  values: Sequence[Any]
  static: bool = False
  p: Sequence[float] | None = None

  def __post_init__(self):
    if not len(self.values):
      raise ArgumentError("values", "empty", "one value or more")
    object.__setattr__(self, "values", tuple(self.values))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)
    if not numeric and not self.static:
      raise ArgumentError("static", f"a choice among {self.values} cannot be an array of the "
                          "population", "static=True for a choice that is not a number")
    if self.p is not None and (len(self.p) != len(self.values) or
                               not math.isclose(sum(self.p), 1.0)):
      raise ArgumentError("p", f"{self.p} are not probabilities of the {len(self.values)} values",
                          "one probability per value, summing to 1")

  def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
    index = rng.choice(len(self.values), size=n, p=self.p)
    return [self.values[int(i)] for i in index]


DISTRIBUTIONS = (LogUniform, Uniform, Integer, Choice)


def check_space(space: Mapping[str, Any]) -> None:
  if not isinstance(space, Mapping) or not space:
    raise ArgumentError("space", f"{space!r} is not a search space",
                        "a dict of names to LogUniform, Uniform, Integer or Choice")
  for name, dist in space.items():
    if not isinstance(dist, DISTRIBUTIONS):
      raise ArgumentError(f"space[{name!r}]", f"{dist!r} is not a distribution",
                          "LogUniform, Uniform, Integer, Choice")


def sample(space: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
  """`n` configurations drawn from `space` with numpy's generator seeded by `seed`."""
  check_space(space)
  check_at_least("n", n, 0, integer=True)
  rng = np.random.default_rng(seed)
  columns = {name: space[name].sample(rng, int(n)) for name in sorted(space)}
  return [{name: columns[name][i] for name in sorted(space)} for i in range(int(n))]


def static_names(space: Mapping[str, Any]) -> tuple[str, ...]:
  """The names of the hyperparameters that change shapes."""
  return tuple(sorted(name for name, dist in space.items() if dist.static))
