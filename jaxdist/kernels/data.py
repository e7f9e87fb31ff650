"""Data for the kernel methods: the thesis's LIBSVM files where a user has them, offline stand-ins
shaped like them otherwise, and the placement of rows on workers.

The thesis's datasets (ijcnn, covtype, adult, ...; Table 2.8, Table 4.1) are LIBSVM-format
files (`load_libsvm`; download them from the LIBSVM datasets page, nothing here fetches them).
The stand-ins are scikit-learn generators with the same number of features and clustered
classes. `place` orders the rows the way they would sit on the workers before any partitioner
runs, which is what CA-SVM keeps: `iid` (shuffled: every worker holds a sample of everything),
`clustered` (the workers hold k-means clusters cut into equal blocks, as pre-partitioned files
often are) or `sorted` (sorted along the first principal direction).
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_svmlight_file, make_classification
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from jaxdist.errors import UserError, check_at_least, check_choice

PLACEMENTS = ("iid", "clustered", "sorted")
STAND_INS = {"ijcnn": 22, "covtype": 54}  # name -> features, as the LIBSVM files have


def load_libsvm(path: str, num_features: int | None = None, binary: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
  """Rows (dense float32) and labels of a LIBSVM-format file; binary labels become -1 / +1
  (the smaller label is -1)."""
  if not os.path.exists(path):
    raise UserError(f"dataset: no LIBSVM file at {path}; download it from the LIBSVM datasets "
                    "page (csie.ntu.edu.tw/~cjlin/libsvmtools/datasets) or use a stand-in "
                    f"({', '.join(STAND_INS)})")
  try:
    x, y = load_svmlight_file(path, n_features=num_features)
  except ValueError as e:
    raise UserError(f"dataset: {path} is not a LIBSVM-format file ({e})") from None
  x = np.asarray(x.todense(), np.float32)
  if binary:
    labels = np.unique(y)
    if len(labels) != 2:
      raise UserError(f"dataset: {path} has {len(labels)} labels, a binary problem needs 2")
    y = np.where(y == labels[0], -1.0, 1.0)
  return x, y.astype(np.float32)


def stand_in(name: str, num_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A classification problem shaped like `name` (ijcnn: 22 features, covtype: 54), several
  clusters per class, standardised, labels -1 / +1."""
  check_choice("dataset", name, tuple(STAND_INS))
  check_at_least("num_samples", num_samples, 2, integer=True)
  features = STAND_INS[name]
  x, y = make_classification(num_samples, features, n_informative=min(10, features),
                             n_redundant=2, n_clusters_per_class=4, class_sep=1.5,
                             flip_y=0.01, random_state=seed)
  x = StandardScaler().fit_transform(x).astype(np.float32)
  return x, (2.0 * y - 1.0).astype(np.float32)


def clustered_classification(num_samples: int, features: int = 10, clusters_per_class: int = 8,
                             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The digest's C6 problem: `make_classification` with several clusters per class, -1 / +1."""
  x, y = make_classification(num_samples, features, n_informative=features - 2, n_redundant=2,
                             n_clusters_per_class=clusters_per_class, random_state=seed)
  return x.astype(np.float32), (2.0 * y - 1.0).astype(np.float32)


def regression(num_samples: int, dim: int = 6, clusters: int = 16, seed: int = 0,
               centres_seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
  """ch. 3's stand-in (§9 C8): clustered inputs in `dim` dimensions, a smooth target plus
  noise; the clusters are the same for every `seed`, so train and test come from one law."""
  rng, fixed = np.random.default_rng(seed), np.random.default_rng(centres_seed)
  centres = fixed.normal(size=(clusters, dim)) * 3.0
  weights = fixed.normal(size=(dim,))
  x = centres[rng.integers(0, clusters, num_samples)] + rng.normal(size=(num_samples, dim))
  y = np.sin(x @ weights) + 0.1 * np.sum(np.cos(x), axis=1) + 0.1 * rng.normal(size=num_samples)
  return x.astype(np.float32), y.astype(np.float32)


def split(x, y, test_size: int, seed: int = 0):
  """A random train / test split: (x, y, x_test, y_test)."""
  order = np.random.default_rng(seed).permutation(len(x))
  test, train = order[:test_size], order[test_size:]
  return x[train], y[train], x[test], y[test]


def place(x, y, num_workers: int, placement: str = "iid", seed: int = 0):
  """The rows in the order the workers hold them (worker p: the p-th contiguous block)."""
  check_choice("placement", placement, PLACEMENTS)
  x, y = np.asarray(x), np.asarray(y)
  rng = np.random.default_rng(seed)
  if placement == "iid":
    order = rng.permutation(len(x))
  elif placement == "clustered":
    with threadpool_limits(1):
      labels = KMeans(n_clusters=num_workers, n_init=1, random_state=seed).fit_predict(x)
    order = np.lexsort((rng.random(len(x)), labels))
  else:
    centred = x - x.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort(centred @ direction)
  return x[order], y[order]
