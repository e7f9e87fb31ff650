"""Cascade SVM's parallelism profile ([You20] Table 2.5, eq. 2.13; C10 of the digest).

A 4-level cascade on 8 workers (8, 4, 2, 1 SVMs; support vectors with their alphas flow down).
Per level: the SVMs' sizes and SMO iterations, the level's time, and the time-weighted
parallelism sum_l t_l P_l / sum_l t_l. The workers share one CPU device here, so besides the
measured level times the profile is given by a cost model, t_l = max over the level's SVMs of
(iterations x rows), which is what the level would take on P_l machines. The thesis (8 nodes):
only 27% of the time uses all nodes, 48% is the single-node bottom level; parallelism 3.3 of 8.

  python reproduce/kernels_cascade.py [--samples 6000]
"""

import argparse

import jaxdist
from jaxdist.kernels import data


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--samples", type=int, default=6000)
  args = parser.parse_args()
  x, y = data.clustered_classification(args.samples)
  x, y, x_test, y_test = data.split(x, y, args.samples // 5, seed=0)
  options = dict(kernel=jaxdist.kernels.Kernel("gaussian", gamma=0.1), C=1.0, num_workers=8)
  jaxdist.kernels.cascade_svm(x, y, x_test, y_test, **options)  # compile
  report = jaxdist.kernels.cascade_svm(x, y, x_test, y_test, **options)
  levels = report.extra["levels"]
  total_t = sum(lv["seconds"] for lv in levels)
  total_c = sum(lv["cost"] for lv in levels)
  print(f"Cascade, P = 8, {len(x)} rows, accuracy {report.score:.4f}, "
        f"{report.extra['support_vectors']} support vectors in the final model")
  print("| level | SVMs | rows per SVM | SMO iterations | time share (measured) | "
        "time share (cost model) |")
  print("|---|---|---|---|---|---|")
  for i, lv in enumerate(levels):
    print(f"| {i + 1} | {lv['workers']} | {min(lv['sizes'])}-{max(lv['sizes'])} | "
          f"{min(lv['iterations'])}-{max(lv['iterations'])} | "
          f"{100 * lv['seconds'] / total_t:.0f}% | {100 * lv['cost'] / total_c:.0f}% |")
  print(f"time-weighted parallelism (eq. 2.13): {report.extra['parallelism/measured']:.2f} "
        f"measured, {report.extra['parallelism/cost_model']:.2f} by the cost model, of 8 "
        "(thesis: 3.3 of 8; all 8 nodes busy 27% of the time, the 1-node level 48%)")


if __name__ == "__main__":
  main()
