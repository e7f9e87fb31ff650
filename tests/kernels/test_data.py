"""The LIBSVM loader, the stand-ins and the placements."""

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

from jaxdist.errors import UserError
from jaxdist.kernels import data


def test_libsvm_file_round_trip_and_a_clear_error_when_absent(tmp_path):
  x = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
  y = np.array([0, 1] * 6)
  path = str(tmp_path / "toy.libsvm")
  dump_svmlight_file(x, y, path)
  xs, ys = data.load_libsvm(path)
  np.testing.assert_allclose(xs, x, rtol=1e-6)
  assert set(ys.tolist()) == {-1.0, 1.0} and ys[0] == -1
  with pytest.raises(UserError, match=r"dataset: no LIBSVM file at .*ijcnn1.*stand-in"):
    data.load_libsvm(str(tmp_path / "ijcnn1"))


def test_stand_ins_and_placements():
  x, y = data.stand_in("covtype", 400, seed=0)
  assert x.shape == (400, 54) and set(np.unique(y)) == {-1.0, 1.0}
  iid, _ = data.place(x, y, 4, "iid")
  clustered, _ = data.place(x, y, 4, "clustered")
  spread = lambda rows: np.linalg.norm(np.diff(rows.reshape(4, 100, -1).mean(1), axis=0), axis=1)
  assert spread(clustered).mean() > 1.5 * spread(iid).mean()  # clustered workers differ
  with pytest.raises(Exception, match="placement: unknown value 'random'"):
    data.place(x, y, 4, "random")
