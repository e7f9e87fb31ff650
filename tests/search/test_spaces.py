"""Search spaces: seeded draws inside their ranges; bad spaces named."""

import math

import numpy as np
import pytest

from jaxdist.errors import ArgumentError
from jaxdist.search import spaces
from jaxdist.search.spaces import Choice, Integer, LogUniform, Uniform

SPACE = {"lr": LogUniform(1e-4, 1e-1), "momentum": Uniform(0, 1), "H": Integer(1, 4, static=True),
         "batch": Choice([32, 64, 128], static=True), "act": Choice(["relu", "tanh"], static=True)}


def test_draws_are_seeded_and_in_range():
  a, b = spaces.sample(SPACE, 400, seed=3), spaces.sample(SPACE, 400, seed=3)
  assert a == b and a != spaces.sample(SPACE, 400, seed=4)
  lr = np.array([c["lr"] for c in a])
  assert lr.min() >= 1e-4 and lr.max() <= 1e-1
  # log-uniform: a quarter of the draws in each quarter of the log range
  quarter = np.mean(np.log10(lr) < -3.25)
  assert abs(quarter - 0.25) < 0.07
  assert {c["H"] for c in a} == {1, 2, 3, 4}
  assert {c["batch"] for c in a} == {32, 64, 128}
  assert all(0 <= c["momentum"] <= 1 for c in a)
  assert isinstance(a[0]["H"], int) and isinstance(a[0]["lr"], float)
  assert spaces.static_names(SPACE) == ("H", "act", "batch")
  assert not math.isnan(sum(c["momentum"] for c in a))


def test_bad_spaces_are_named():
  with pytest.raises(ArgumentError, match=r"low: 0 is not positive"):
    LogUniform(0, 1)
  with pytest.raises(ArgumentError, match=r"high: 0.1 is below low = 1"):
    Uniform(1, 0.1)
  with pytest.raises(ArgumentError, match=r"static: a choice among \('relu',\)"):
    Choice(["relu"])
  with pytest.raises(ArgumentError, match=r"space\['lr'\]: 0.1 is not a distribution"):
    spaces.sample({"lr": 0.1}, 3, 0)
