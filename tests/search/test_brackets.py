"""Bracket metadata equals Dask-ML's `_get_hyperband_params` / `_hyperband_paper_alg` formulas;
the expected values below were worked out from those formulas by hand (R in {27, 81, 243} x eta
in {3, 4}, Dask-ML's float `math.log`)."""

import warnings

import pytest

from jaxdist.errors import ArgumentError
from jaxdist.search import brackets

# (R, eta) -> per bracket s = s_max..0: (s, n_models, initial calls, partial_fit calls, decisions)
DASK = {
    (27, 3): [(3, 27, 1, 81, [1, 3, 9, 27]), (2, 12, 3, 78, [3, 9, 27]), (1, 6, 9, 90, [9, 27]),
              (0, 4, 27, 108, [27])],
    (27, 4): [(2, 16, 1, 40, [1, 4, 16]), (1, 6, 6, 54, [6, 24]), (0, 3, 27, 81, [27])],
    (81, 3): [(4, 81, 1, 297, [1, 3, 9, 27, 81]), (3, 34, 3, 276, [3, 9, 27, 81]),
              (2, 15, 9, 279, [9, 27, 81]), (1, 8, 27, 324, [27, 81]), (0, 5, 81, 405, [81])],
    (81, 4): [(3, 64, 1, 208, [1, 4, 16, 64]), (2, 22, 5, 245, [5, 20, 80]),
              (1, 8, 20, 280, [20, 80]), (0, 4, 81, 324, [81])],
    (243, 3): [(4, 81, 3, 891, [3, 9, 27, 81, 243]), (3, 34, 9, 828, [9, 27, 81, 243]),
               (2, 15, 27, 837, [27, 81, 243]), (1, 8, 81, 972, [81, 243]),
               (0, 5, 243, 1215, [243])],
    (243, 4): [(3, 64, 3, 624, [3, 12, 48, 192]), (2, 22, 15, 735, [15, 60, 240]),
               (1, 8, 60, 840, [60, 240]), (0, 4, 243, 972, [243])],
}
TOTALS = {(27, 3): (49, 357), (27, 4): (25, 175), (81, 3): (143, 1581), (81, 4): (98, 1057),
          (243, 3): (143, 4743), (243, 4): (98, 3171)}


@pytest.mark.parametrize("max_iter, eta", sorted(DASK))
def test_metadata_equals_dask_ml(max_iter, eta):
  meta = brackets.metadata(brackets.hyperband_brackets(max_iter, eta))
  got = [(b["bracket"], b["n_models"], b["initial_calls"], b["partial_fit_calls"],
          b["decisions"]) for b in meta["brackets"]]
  assert got == DASK[(max_iter, eta)]
  assert (meta["n_models"], meta["partial_fit_calls"]) == TOTALS[(max_iter, eta)]


def test_rungs_of_the_thesis_bracket():
  # S0 §1.6 item 1: R = 81: 81@1 -> 27@3 -> 9@9 -> 3@27 -> 1@81; 143 models in 81/34/15/8/5
  plan = brackets.hyperband_brackets(81, 3)
  assert [(r.n_models, r.calls) for r in plan[0].rungs] == [(81, 1), (27, 3), (9, 9), (3, 27),
                                                            (1, 81)]
  assert [(r.n_models, r.calls) for r in plan[1].rungs] == [(34, 3), (11, 9), (3, 27), (1, 81)]
  assert [b.n_models for b in plan] == [81, 34, 15, 8, 5]


def test_the_float_log_quirk_and_the_exact_option():
  # math.log(243, 3) = 4.999...: five brackets, the thesis's list [S0 L451]
  quirk = brackets.hyperband_brackets(243, 3)
  assert [(b.n_models, b.initial_calls) for b in quirk] == [(81, 3), (34, 9), (15, 27), (8, 81),
                                                            (5, 243)]
  exact = brackets.hyperband_brackets(243, 3, exact_log=True)
  assert [(b.n_models, b.initial_calls) for b in exact] == [(243, 1), (98, 3), (41, 9), (18, 27),
                                                            (9, 81), (6, 243)]
  meta = brackets.metadata(exact)
  assert (meta["n_models"], meta["partial_fit_calls"]) == (415, 6831)
  # where the float log is right, both conventions agree
  for max_iter, eta in [(27, 3), (81, 3), (27, 4), (81, 4), (243, 4)]:
    assert brackets.hyperband_brackets(max_iter, eta) == brackets.hyperband_brackets(
        max_iter, eta, exact_log=True)


def test_patience_as_dask_ml():
  assert brackets.resolve_patience(False, 81, 3) == 0
  assert brackets.resolve_patience(True, 81, 3) == 27
  assert brackets.resolve_patience(True, 2, 3) == 1
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert brackets.resolve_patience(30, 81, 3) == 30
  with pytest.warns(UserWarning, match="below max_iter // aggressiveness = 27"):
    assert brackets.resolve_patience(13, 81, 3) == 13
  with pytest.raises(ArgumentError, match="patience: 1 always detects a plateau"):
    brackets.resolve_patience(1, 81, 3)
  # stopped when no score within the last `patience` calls beats the oldest of them by > tol
  flat = [[3, 0.5], [6, 0.5004], [9, 0.5008]]
  assert brackets.plateaued(flat, 6, 1e-3)
  assert not brackets.plateaued(flat, 6, 1e-4)
  assert not brackets.plateaued(flat[:1], 6, 1e-3)  # fewer calls than the patience
  assert not brackets.plateaued([[3, 0.5], [6, 0.6], [9, 0.5]], 6, 1e-3)


def test_bad_arguments_are_named():
  with pytest.raises(ArgumentError, match=r"aggressiveness: 1 keeps every model"):
    brackets.hyperband_brackets(81, 1)
  with pytest.raises(ArgumentError, match=r"max_iter: must be >= 1"):
    brackets.hyperband_brackets(0, 3)
  with pytest.raises(ArgumentError, match=r"exact_log: needs an integer aggressiveness"):
    brackets.hyperband_brackets(81, 2.5, exact_log=True)
