"""Hyperband's brackets and successive halving's rungs, as Dask-ML's `HyperbandSearchCV` defines
them (Sievert's thesis, ch. 2 and Fig. 2.1; Li et al., Hyperband, Alg. 1).

With R = `max_iter` and eta = `aggressiveness`:

    s_max = floor(log_eta(R)),  B = (s_max + 1) R
    bracket s = s_max, ..., 0:  n = ceil(B / R * eta^s / (s + 1)) models,  r = int(R eta^-s)
    rung i = 0..s:  the best n_i = floor(n eta^-i) models are trained to a TOTAL of
                    r_i = round(r eta^i) partial_fit calls (capped at R)

`math.log(243, 3)` is 4.999..., so Dask-ML (and the thesis's list of five brackets for R = 243)
takes s_max = 4; that float convention is the default here, `exact_log=True` computes s_max, n, r
and n_i in integers (six brackets for R = 243). The metadata (models and calls per bracket) is
known before anything runs; a model's calls are those of the last rung it reaches.

Patience (the plateau stopper of Dask-ML's `IncrementalSearchCV`): a model that has had at least
`patience` calls stops when none of its scores within the last `patience` calls beats the oldest
of them by more than `tol`; models are then trained in pieces of at most `patience` calls, scored
after each. `patience=True` means max(R // eta, 1); less than R // eta draws a warning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

from jaxdist.errors import ArgumentError, check_at_least


@dataclasses.dataclass(frozen=True)
class Rung:
  """One round of successive halving: the best `n_models` trained to `calls` calls in total."""

  n_models: int
  calls: int


@dataclasses.dataclass(frozen=True)
class Bracket:
  """One run of successive halving; `id` = s (larger: more adaptive)."""

  id: int
  n_models: int
  initial_calls: int
  rungs: tuple[Rung, ...]

  @property
  def partial_fit_calls(self) -> int:
    """Calls of all its models when every survivor reaches its rung's target."""
    total = 0
    for i, rung in enumerate(self.rungs):
      after = self.rungs[i + 1].n_models if i + 1 < len(self.rungs) else 0
      total += (rung.n_models - after) * rung.calls
    return total

  @property
  def decisions(self) -> list[int]:
    """The call counts at which models are scored and compared."""
    return sorted({rung.calls for rung in self.rungs})


def check_search_arguments(max_iter: int, aggressiveness: float) -> None:
  check_at_least("max_iter", max_iter, 1, integer=True)
  check_at_least("aggressiveness", aggressiveness, 1)
  if aggressiveness <= 1:
    raise ArgumentError("aggressiveness", f"{aggressiveness} keeps every model",
                        "a number > 1 (3 by default, 4 to explore)")


def s_max(max_iter: int, aggressiveness: float = 3, exact_log: bool = False) -> int:
  """floor(log_eta(R)): with `math.log` as Dask-ML (default), or the exact integer floor."""
  if not exact_log:
    return math.floor(math.log(max_iter, aggressiveness))
  if not float(aggressiveness).is_integer():
    raise ArgumentError("exact_log", "needs an integer aggressiveness",
                        "exact_log=False for a fractional aggressiveness")
  eta, s = int(aggressiveness), 0
  while eta ** (s + 1) <= max_iter:
    s += 1
  return s


def hyperband_brackets(max_iter: int, aggressiveness: float = 3,
                       exact_log: bool = False) -> list[Bracket]:
  """The brackets of Hyperband, most adaptive first (bracket s_max, ..., 0).

  Args:
    max_iter: R, the calls of the most trained model.
    aggressiveness: eta; each rung keeps 1/eta of the models.
    exact_log: integer arithmetic throughout instead of Dask-ML's floats.
  """
  check_search_arguments(max_iter, aggressiveness)
  top = s_max(max_iter, aggressiveness, exact_log)
  budget = (top + 1) * max_iter  # B
  brackets = []
  for s in range(top, -1, -1):
    if exact_log:
      eta = int(aggressiveness)
      n = -(-(top + 1) * eta**s // (s + 1))
      r = max_iter // eta**s
    else:
      n = math.ceil(budget / max_iter * aggressiveness**s / (s + 1))
      # R eta^-s can fall just below an integer (729 * 3^-6 = 0.999...), where Dask-ML's int()
      # gives a bracket of 0 initial calls; such a bracket starts at 1 here
      r = max(int(max_iter * aggressiveness**-s), 1)
    brackets.append(sha_bracket(n, r, aggressiveness, max_iter, exact_log, bracket_id=s))
  return brackets


def sha_bracket(n_models: int, initial_calls: int, aggressiveness: float = 3,
                max_iter: int | None = None, exact_log: bool = False, *,
                bracket_id: int | None = None) -> Bracket:
  """One bracket: n models trained to r calls, then the best n eta^-i to round(r eta^i).

  Rungs go on while a model is left and the (capped) target still grows; within a Hyperband
  bracket s that is exactly the s + 1 rungs of Alg. 1.
  """
  check_at_least("n_models", n_models, 1, integer=True)
  check_at_least("initial_calls", initial_calls, 1, integer=True)
  check_at_least("aggressiveness", aggressiveness, 1)
  limit = max_iter if max_iter is not None else math.inf
  rungs: list[Rung] = []
  i = 0
  while True:
    if exact_log:
      n_i, r_i = n_models // int(aggressiveness)**i, initial_calls * int(aggressiveness)**i
    else:
      n_i = math.floor(n_models * aggressiveness**-i)
      r_i = round(initial_calls * aggressiveness**i)
    r_i = int(min(r_i, limit))
    if n_i < 1 or (rungs and r_i <= rungs[-1].calls):
      break
    rungs.append(Rung(n_i, r_i))
    i += 1
  s = len(rungs) - 1 if bracket_id is None else bracket_id
  return Bracket(int(s), int(n_models), int(initial_calls), tuple(rungs))


def metadata(brackets: Sequence[Bracket]) -> dict:
  """Models and calls, in all and per bracket, as Dask-ML's `HyperbandSearchCV.metadata`."""
  rows = [{"bracket": b.id, "n_models": b.n_models, "initial_calls": b.initial_calls,
           "partial_fit_calls": b.partial_fit_calls, "decisions": b.decisions,
           "rungs": [[r.n_models, r.calls] for r in b.rungs]} for b in brackets]
  return {"n_models": sum(r["n_models"] for r in rows),
          "partial_fit_calls": sum(r["partial_fit_calls"] for r in rows), "brackets": rows}


def resolve_patience(patience: bool | int, max_iter: int, aggressiveness: float = 3) -> int:
  """Patience in calls (0: off) as Dask-ML: True means max(R // eta, 1)."""
  default = max(int(max_iter // aggressiveness), 1)
  if isinstance(patience, bool):
    return default if patience else 0
  check_at_least("patience", patience, 0, integer=True)
  if patience == 0:
    return 0
  if patience <= 1:
    raise ArgumentError("patience", f"{patience} always detects a plateau",
                        "False, True, or an integer >= 2")
  if patience < default:
    warnings.warn(f"patience={patience} is below max_iter // aggressiveness = {default}: it stops "
                  "models that Hyperband would keep training (the thesis: max_iter // 6 hurts); "
                  f"use patience=True or >= {default}", stacklevel=2)
  return int(patience)


def plateaued(history: Sequence[tuple[int, float]], patience: int, tol: float) -> bool:
  """Whether a model with scores `history` [(calls, score), ...] has stopped improving: it has
  had `patience` calls and no score within the last `patience` calls beats the oldest of them by
  more than `tol`."""
  if not patience or not history:
    return False
  current = history[-1][0]
  if current < patience:
    return False
  window = [score for calls, score in history if current - calls <= patience]
  if len(window) < 2:
    return False
  return max(s - window[0] for s in window[1:]) <= tol
