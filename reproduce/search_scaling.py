"""Worker scaling of a whole Hyperband search on the library's discrete-event simulator, as the
thesis simulates its MNIST auto-encoder search from one recorded history ([S0 L544-565]): R =
243, eta = 3, 1 s per partial_fit call, 1.5 s per score, synthetic learning curves. Prediction:
the speedup saturates between 16 and 24 workers, because the late rungs hold few models; 8
workers finish in well under the serial time.

  python reproduce/search_scaling.py
"""

from __future__ import annotations

from search_priority import curves

from jaxdist.search import hyperband_brackets
from jaxdist.search.simulator import simulate


def main() -> None:
  plan = hyperband_brackets(243, 3)
  serial = simulate(plan, curves(0), num_workers=1)["time"]
  print(f"  workers | wall time (min) | speedup   (serial: {serial / 60:.1f} min)")
  previous = None
  for workers in (1, 2, 4, 8, 12, 16, 20, 24, 32, 48):
    time = simulate(plan, curves(0), num_workers=workers)["time"]
    gain = "" if previous is None else f"  (+{previous / time - 1:.0%} over the row above)"
    print(f"  {workers:7d} | {time / 60:15.1f} | {serial / time:6.1f}x{gain}")
    previous = time
  print("thesis: 8 workers take under 15 min in its simulation; the speedup saturates between 16 "
        "and 24 workers")


if __name__ == "__main__":
  main()
