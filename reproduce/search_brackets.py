"""Hyperband's bracket tables as Dask-ML computes them, beside Sievert's thesis (ch. 2): R = 81,
eta = 3 (143 models in brackets of 81/34/15/8/5 [S0 L462]) and R = 243 under the float
`math.log` convention (the thesis's list (81,3), (34,9), (15,27), (8,81), (5,243) [S0 L451]) and
the exact integer log.

  python reproduce/search_brackets.py
"""

from __future__ import annotations

from jaxdist.search import hyperband_brackets, metadata


def table(max_iter: int, eta: int, exact_log: bool = False) -> dict:
  meta = metadata(hyperband_brackets(max_iter, eta, exact_log))
  name = "exact integer log" if exact_log else "math.log (Dask-ML)"
  print(f"\nR = {max_iter}, eta = {eta}, {name}: {meta['n_models']} models, "
        f"{meta['partial_fit_calls']} partial_fit calls")
  print("  bracket | models x initial calls | rungs (models @ calls)                | calls")
  for b in meta["brackets"]:
    rungs = ", ".join(f"{n}@{c}" for n, c in b["rungs"])
    print(f"  {b['bracket']:7d} | {b['n_models']:6d} x {b['initial_calls']:<13d} | "
          f"{rungs:38s} | {b['partial_fit_calls']}")
  return meta


def main() -> None:
  r81 = table(81, 3)
  print(f"  thesis: 143 models, brackets 81/34/15/8/5 -> ours {r81['n_models']}, "
        f"{'/'.join(str(b['n_models']) for b in r81['brackets'])}")
  quirk = table(243, 3)
  pairs = [(b["n_models"], b["initial_calls"]) for b in quirk["brackets"]]
  print(f"  thesis: [(81,3), (34,9), (15,27), (8,81), (5,243)] -> ours {pairs}")
  exact = table(243, 3, exact_log=True)
  print(f"  exact integer log: {exact['n_models']} models in {len(exact['brackets'])} brackets "
        "(the thesis's list needs the float quirk)")


if __name__ == "__main__":
  main()
