"""[You20] ch. 2: the kernel-SVM family on an ijcnn-shaped problem (Gaussian kernel, C = 1).

The default is the thesis's scale for ijcnn (49,990 training rows, 8 workers); `cpu` is a
4,000-row stand-in that runs in seconds. Every method of the chapter:

  python -m launch --config configs/kernels/svm.py:cpu --workdir runs/ca_svm
  python -m launch --config configs/kernels/svm.py:method=dis_smo,cpu --workdir runs/dis_smo
  python -m launch --config configs/kernels/svm.py:method=cascade --workdir runs/cascade
  python -m launch --config configs/kernels/svm.py:method=dc_svm --workdir runs/dc_svm
  python -m launch --config configs/kernels/svm.py:method=dc_filter --workdir runs/dc_filter
  python -m launch --config configs/kernels/svm.py:method=cp_svm --workdir runs/cp_svm
  python -m launch --config configs/kernels/svm.py:method=fcfs_svm --workdir runs/fcfs_svm
  python -m launch --config configs/kernels/svm.py:method=bkm_svm --workdir runs/bkm_svm
  python -m launch --config configs/kernels/svm.py:method=random_assign --workdir runs/ra
  python -m launch --config configs/kernels/svm.py:method=sub_sampling --workdir runs/ss
  python -m launch --config configs/kernels/svm.py:placement=clustered --workdir runs/ca_c
  python -m launch --config configs/kernels/svm.py:P=4,backend=shard_map --workdir runs/ca_4

`placement` is how the rows sit on the workers before any partitioner (iid, clustered, sorted);
CA-SVM keeps it, so its accuracy depends on it. `dataset=covtype` for the covtype shape.
"""

from jaxdist.experiment.config import parse_arg
from jaxdist.experiment.kernels import default


def get_config(variant: str = ""):
  a = parse_arg(variant, method="ca_svm", P=8, placement="iid", dataset="ijcnn",
                backend="simulated", cpu=False)
  config = default()
  config.task, config.method = "svm", a.method
  config.data.name, config.data.placement = a.dataset, a.placement
  config.data.num_train, config.data.num_test = 49_990, 10_000
  config.kernel.gamma = 0.1
  config.svm.C, config.svm.tol = 1.0, 1e-3
  config.workers.num_workers, config.workers.backend = a.P, a.backend
  if a.cpu:
    config.data.num_train, config.data.num_test = 4000, 1000
  return config
