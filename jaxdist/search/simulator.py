"""A discrete-event model of Dask-ML's Hyperband on P workers (Sievert's thesis §2.4.1, §2.5):
every partial_fit call and every score is a task of a fixed duration; a free worker takes the
ready task of highest priority; a model's tasks run one after another; each bracket closes a
rung when all its models have been scored there (as Dask-ML's successive halving does), and every
model is also scored after its first call (Dask-ML's first step), which gives it a priority. Scores
come from pre-recorded (or synthetic) learning curves, so the simulated search computes exactly
what a real one would; only the times at which results are known depend on P and the policy.

    result = simulate(hyperband_brackets(243, 3), curve, num_workers=8)
    result["time"], result["best"], result["found_at"]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence

from jaxdist.errors import check_at_least, check_choice
from jaxdist.search import priorities
from jaxdist.search.brackets import Bracket

Curve = Callable[[int, int, int], float]  # (bracket, trial, calls) -> score


def simulate(plan: Sequence[Bracket], curve: Curve, *, num_workers: int, fit_time: float = 1.0,
             score_time: float = 1.5, policy: str = "score") -> dict:
  """Runs the brackets of `plan` on `num_workers` simulated workers.

  Returns a dict: `time` (when the last task ends), `best` (bracket, trial, score of the search's
  answer), `found_at` (when that answer's final score was known), `events` ([time, best score
  so far] after every score), `calls` (partial_fit calls done).
  """
  check_at_least("num_workers", num_workers, 1, integer=True)
  check_choice("policy", policy, ("score", "fifo"))
  brackets = []
  for b in plan:
    models = [{"calls": 0, "score": None, "busy": False, "target": b.rungs[0].calls}
              for _ in range(b.n_models)]
    brackets.append({"plan": b, "rung": 0, "survivors": list(range(b.n_models)),
                     "models": models, "done": False, "scored": set()})
  ready_since: dict[tuple[int, int], int] = {}
  counter = 0

  def wants_work(bi, mi):
    br = brackets[bi]
    model = br["models"][mi]
    return (not br["done"] and mi in br["survivors"] and not model["busy"]
            and mi not in br["scored"])

  def pick():
    candidates = [(bi, mi) for bi, br in enumerate(brackets) for mi in br["survivors"]
                  if wants_work(bi, mi)]
    if not candidates:
      return None
    if policy == "fifo":
      return min(candidates, key=lambda c: (ready_since[c], c))
    for bi in {c[0] for c in candidates}:
      br = brackets[bi]
      if br.get("priorities") is None:  # recomputed only after a score in the bracket
        br["priorities"] = priorities.model_priorities(
            {m: br["models"][m]["score"] for m in br["survivors"]}, num_workers)
    return max(candidates, key=lambda c: (brackets[c[0]]["priorities"][c[1]],
                                          -ready_since[c[0], c[1]]))

  for bi, br in enumerate(brackets):
    for mi in br["survivors"]:
      ready_since[bi, mi] = counter
      counter += 1
  now, free, running, events, calls = 0.0, num_workers, [], [], 0
  best_so_far = -math.inf
  final = {}
  while True:
    while free:
      task = pick()
      if task is None:
        break
      bi, mi = task
      model = brackets[bi]["models"][mi]
      model["busy"] = True
      probe = model["calls"] == 1 and model["score"] is None and model["target"] > 1
      kind = "fit" if model["calls"] < model["target"] and not probe else "score"
      heapq.heappush(running, (now + (fit_time if kind == "fit" else score_time), counter, bi,
                               mi, kind))
      counter += 1
      free -= 1
    if not running:
      break
    now, _, bi, mi, kind = heapq.heappop(running)
    free += 1
    br = brackets[bi]
    model = br["models"][mi]
    model["busy"] = False
    if kind == "fit":
      model["calls"] += 1
      calls += 1
    else:
      model["score"] = curve(br["plan"].id, mi, model["calls"])
      br["priorities"] = None
      if model["calls"] < model["target"]:  # Dask-ML's automatic first score: a priority
        ready_since[bi, mi] = counter
        counter += 1
        continue
      br["scored"].add(mi)
      best_so_far = max(best_so_far, priorities.rank_value(model["score"]))
      events.append([now, best_so_far])
      final[bi, mi] = (model["score"], now)
      if br["scored"] >= set(br["survivors"]):
        _close_rung(br)
    ready_since[bi, mi] = counter
    counter += 1
    if kind == "score":
      for m in br["survivors"]:
        ready_since[bi, m] = counter
        counter += 1
  answers = []
  for bi, br in enumerate(brackets):
    winner = min(br["survivors"], key=lambda m: (-priorities.rank_value(br["models"][m]["score"]),
                                                 m))
    answers.append((priorities.rank_value(br["models"][winner]["score"]), -bi, bi, winner))
  score, _, bi, mi = max(answers)
  return {"time": now, "best": (brackets[bi]["plan"].id, mi, score),
          "found_at": final[bi, mi][1], "events": events, "calls": calls}


def _close_rung(br: dict) -> None:
  plan = br["plan"]
  if br["rung"] + 1 == len(plan.rungs):
    br["done"] = True
    return
  br["rung"] += 1
  rung = plan.rungs[br["rung"]]
  ranked = sorted(br["survivors"], key=lambda m: (-priorities.rank_value(br["models"][m]["score"]),
                                                  m))
  br["survivors"] = sorted(ranked[:rung.n_models])
  br["scored"] = set()
  for m in br["survivors"]:
    br["models"][m]["target"] = rung.calls


def time_to(events: Sequence[Sequence[float]], target: float) -> float:
  """When the best score so far first reached `target` (inf if never)."""
  return next((t for t, best in events if best >= target), math.inf)
