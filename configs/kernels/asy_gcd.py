"""[You20] ch. 4: Asy-GCD on the box-constrained kernel-SVM dual, simulated with staleness.

covtype-shaped stand-in, Gaussian kernel, C = 32, gamma as Table 4.1 scales it; blocks from
k-means. Default: 20,000 rows, 20 workers; `cpu`: 2,000 rows, 8 workers, seconds.

  python -m launch --config configs/kernels/asy_gcd.py:cpu --workdir runs/asy
  python -m launch --config configs/kernels/asy_gcd.py:delay=32,cpu --workdir runs/asy_t32
  python -m launch --config configs/kernels/asy_gcd.py:lost=0.3,cpu --workdir runs/asy_lost
  python -m launch --config configs/kernels/asy_gcd.py:method=synchronous_block_greedy \
      --workdir runs/sync

A rerun of the same command resumes from `checkpoints/state_<update>.npz`.
"""

from jaxdist.experiment.config import parse_arg
from jaxdist.experiment.kernels import default


def get_config(variant: str = ""):
  a = parse_arg(variant, method="asy_gcd", delay=0, lost=0.0, P=20, guard=True, cpu=False)
  config = default()
  config.task, config.method = "asy_gcd", a.method
  config.data.name = "covtype"
  config.data.num_train, config.data.num_test = 20_000, 1000
  config.kernel.gamma = 0.02
  config.svm.C = 32.0
  config.asy_gcd.delay, config.asy_gcd.lost_updates = a.delay, a.lost
  config.asy_gcd.guard = a.guard
  config.asy_gcd.num_updates, config.asy_gcd.record_every = 200_000, 10_000
  config.workers.num_workers = a.P
  if a.cpu:
    config.data.num_train, config.data.num_test = 2000, 200
    config.workers.num_workers = min(a.P, 8)
    config.asy_gcd.num_updates, config.asy_gcd.record_every = 8000, 1000
  return config
