"""Communication-avoiding kernel methods ([You20] ch. 2-4): partitions are workers.

    from jaxdist import kernels
    report = kernels.ca_svm(x, y, x_test, y_test, num_workers=8,
                            kernel=kernels.Kernel("gaussian", gamma=0.1), C=1.0)
    report.score, report.partitioner, report.words, report.train_seconds

Every method takes rows, labels and test rows, a partitioner where it has one (named in its
report) and a layout (`jaxdist.Simulated()`: the partitions vmapped on one device;
`jaxdist.Sharded()`: spread over the devices), and returns a `Report`.

Modules: `kernels` (Table 2.1, blocked), `smo` (ch. 2's SMO, Dis-SMO's loop), `krr` (Cholesky
KRR), `partition` (even, k-means, FCFS, BKM, K-balance, as placed), `ensemble` (CA-SVM,
CP-SVM, FCFS-SVM, BKM-SVM, ablations), `cascade` (Cascade, DC-SVM, DC-Filter), `dis_smo`,
`krr_family` (DKRR, DC-KRR, KKRR/2/3, BKRR/2/3), `asy_gcd` (ch. 4), `data`.
"""

from jaxdist.kernels import (
  asy_gcd,
  cascade,
  common,
  data,
  dis_smo,
  ensemble,
  kernels,
  krr,
  krr_family,
  partition,
  smo,
)
from jaxdist.kernels.asy_gcd import AsyGCD, synchronous_block_greedy
from jaxdist.kernels.cascade import cascade as cascade_svm
from jaxdist.kernels.cascade import dc_filter, dc_svm
from jaxdist.kernels.common import Report
from jaxdist.kernels.dis_smo import dis_smo as dis_smo_svm
from jaxdist.kernels.ensemble import (
  bkm_svm,
  ca_svm,
  cp_svm,
  fcfs_svm,
  partitioned_svm,
  random_assign,
  sub_sampling,
)
from jaxdist.kernels.kernels import Kernel, gaussian
from jaxdist.kernels.krr_family import krr_method

# method name -> function(x, y, x_test, y_test, num_workers=, kernel=, C=, tol=, layout=, ...)
SVM_METHODS = {
    "dis_smo": dis_smo_svm, "cascade": cascade_svm, "dc_svm": dc_svm, "dc_filter": dc_filter,
    "cp_svm": cp_svm, "fcfs_svm": fcfs_svm, "bkm_svm": bkm_svm, "ca_svm": ca_svm,
    "random_assign": random_assign, "sub_sampling": sub_sampling,
}
KRR_METHODS = ("dkrr", *krr_family.METHODS)

__all__ = [
    "KRR_METHODS", "SVM_METHODS", "AsyGCD", "Kernel", "Report", "asy_gcd", "bkm_svm", "ca_svm",
    "cascade", "cascade_svm", "common", "cp_svm", "data", "dc_filter", "dc_svm", "dis_smo",
    "dis_smo_svm", "ensemble", "fcfs_svm", "gaussian", "kernels", "krr", "krr_family",
    "krr_method", "partition", "partitioned_svm", "random_assign", "smo", "sub_sampling",
    "synchronous_block_greedy",
]
