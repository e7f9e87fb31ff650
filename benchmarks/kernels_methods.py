"""Time to train and predict of the kernel methods against scikit-learn, side by side.

SVMs on an ijcnn-shaped stand-in (Gaussian kernel, C = 1) against `sklearn.svm.SVC` (libsvm);
KRR at one (lambda, sigma) point on the 6-d regression stand-in against
`sklearn.kernel_ridge.KernelRidge` (alpha = lambda m, the same solve for P = 1). Every method at
P in {1, 2, 4, 8} workers, the workers spread over 8 simulated CPU devices (`jaxdist.Sharded()`:
P devices, one partition each), with its accuracy (SVM) or test MSE (KRR) beside its ratio
time / scikit-learn's time (below 1: faster). Medians of `--repeats` runs after a compiled
warm-up, taken in turns.

  python benchmarks/kernels_methods.py [--svm-rows 2000] [--krr-rows 2000] [--repeats 3] [--all]
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import argparse
import time

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC

import jaxdist
from jaxdist.kernels import data

SVMS = ["dis_smo", "cascade", "dc_svm", "dc_filter", "cp_svm", "fcfs_svm", "bkm_svm", "ca_svm"]
KRRS = ["dkrr", "dc_krr", "kkrr2", "bkrr2"]
EXTRA_SVMS, EXTRA_KRRS = ["random_assign", "sub_sampling"], ["kkrr", "bkrr", "kkrr3", "bkrr3"]
WORKERS = (1, 2, 4, 8)


def median_seconds(fn, repeats):
  fn()  # compile
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - started)
  return float(np.median(times)), out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--svm-rows", type=int, default=2000)
  parser.add_argument("--krr-rows", type=int, default=2000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--all", action="store_true", help="also the ablations and KRR variants")
  args = parser.parse_args()
  layout = jaxdist.Sharded()

  x, y = data.stand_in("ijcnn", args.svm_rows + 1000, seed=0)
  x, y, x_test, y_test = data.split(x, y, 1000, seed=0)
  gamma = 1.0 / x.shape[1]

  def svc():
    model = SVC(C=1.0, gamma=gamma, tol=1e-3).fit(x, y)
    return model.score(x_test, y_test)

  base, base_accuracy = median_seconds(svc, args.repeats)
  print(f"SVM, {len(x)} training rows, {len(x_test)} test rows: scikit-learn SVC {base:.3f} s "
        f"(accuracy {base_accuracy:.4f})")
  print("| method | " + " | ".join(f"P = {p}" for p in WORKERS) + " |")
  print("|---|" + "---|" * len(WORKERS))
  kernel = jaxdist.kernels.Kernel("gaussian", gamma=gamma)
  for name in SVMS + (EXTRA_SVMS if args.all else []):
    cells = []
    for p in WORKERS:
      fn = lambda: jaxdist.kernels.SVM_METHODS[name](x, y, x_test, y_test, num_workers=p,
                                                     kernel=kernel, C=1.0, layout=layout)
      seconds, report = median_seconds(fn, args.repeats)
      cells.append(f"{seconds / base:.2f}x ({report.score:.3f})")
    print(f"| {name} | " + " | ".join(cells) + " |")

  x, y = data.regression(args.krr_rows, seed=0)
  x_test, y_test = data.regression(500, seed=1)
  lam, sigma = 1e-4, 1.0

  def kernel_ridge():
    model = KernelRidge(alpha=lam * len(x), kernel="rbf", gamma=1 / (2 * sigma**2)).fit(x, y)
    return float(np.mean((model.predict(x_test) - y_test)**2))

  base, base_mse = median_seconds(kernel_ridge, args.repeats)
  print(f"\nKRR, {len(x)} training rows, lambda {lam}, sigma {sigma}: scikit-learn KernelRidge "
        f"{base:.3f} s (test MSE {base_mse:.4f})")
  print("| method | " + " | ".join(f"P = {p}" for p in WORKERS) + " |")
  print("|---|" + "---|" * len(WORKERS))
  for name in KRRS + (EXTRA_KRRS if args.all else []):
    cells = []
    for p in WORKERS:
      fn = lambda: jaxdist.kernels.krr_method(x, y, x_test, y_test, method=name, num_workers=p,
                                              lambdas=(lam,), sigmas=(sigma,), layout=layout)
      seconds, report = median_seconds(fn, args.repeats)
      cells.append(f"{seconds / base:.2f}x ({report.score:.3f})")
    print(f"| {name} | " + " | ".join(cells) + " |")
  print("\nratio = our train + predict time / scikit-learn's (in brackets: accuracy or test MSE)")


if __name__ == "__main__":
  main()
