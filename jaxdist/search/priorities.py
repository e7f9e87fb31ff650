"""The order in which a search's pending work runs (Sievert's thesis §2.4.1).

Dask-ML's `HyperbandSearchCV` gives a model's training the priority of its most recent
validation score, so that a free worker trains the most promising model first; with P workers,
the worst P models of each bracket share one priority, the median of their scores, so that a
moderately parallel cluster does not starve them. Priorities change only when things are
computed, never what: every unit of work is a pure function of the trials it trains.

Policies (`priority=`): `score` (the thesis's), `fifo` (the order the work became ready),
`random` (a seeded shuffle, for tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdist.errors import check_choice

POLICIES = ("score", "fifo", "random")
# A model not scored yet comes after the scored ones (among themselves, in the order their work
# became ready, the most adaptive bracket first): scored work continues the promising models.
UNSCORED = -math.inf


def rank_value(score: float | None) -> float:
  """A score for ranking: NaN (a diverged trial) and a missing score rank last."""
  return -math.inf if score is None or math.isnan(score) else float(score)


def model_priorities(scores: Mapping[int, float | None], num_workers: int) -> dict[int, float]:
  """Priority of each model of one bracket: its last score; the worst `num_workers` scored
  models tied at the median of their scores; unscored models last (`UNSCORED`)."""
  priorities = {k: UNSCORED if v is None else rank_value(v) for k, v in scores.items()}
  scored = sorted((v, k) for k, v in priorities.items() if scores[k] is not None)
  if num_workers > 1 and len(scored) > 1:
    worst = scored[:num_workers]
    finite = [v for v, _ in worst if math.isfinite(v)]
    tie = float(np.median(finite)) if finite else -math.inf
    for _, k in worst:
      priorities[k] = tie
  return priorities


def unit_priority(policy: str, member_priorities: Sequence[float], order: int,
                  seed: int) -> float:
  """The priority of one unit of work (a group of trials trained together): the best of its
  models' priorities under `score`; earlier first under `fifo`; a seeded draw under `random`."""
  check_choice("priority", policy, POLICIES)
  if policy == "score":
    return max(member_priorities)
  if policy == "fifo":
    return -float(order)
  return float(np.random.default_rng([seed, order]).random())
