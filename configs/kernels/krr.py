"""[You20] ch. 3: partitioned kernel ridge regression over a (lambda, sigma) grid.

A 6-d clustered regression stand-in (the thesis uses MSD, 90 features; `dataset=libsvm` with
`--config.data.path=FILE` reads it). Default: 32,768 rows on 16 workers (accelerator scale);
`cpu`: 2,000 rows on 4 workers.

  python -m launch --config configs/kernels/krr.py:cpu --workdir runs/bkrr2
  python -m launch --config configs/kernels/krr.py:method=dkrr,cpu --workdir runs/dkrr
  python -m launch --config configs/kernels/krr.py:method=dc_krr --workdir runs/dc_krr
  python -m launch --config configs/kernels/krr.py:method=kkrr --workdir runs/kkrr
  python -m launch --config configs/kernels/krr.py:method=kkrr2 --workdir runs/kkrr2
  python -m launch --config configs/kernels/krr.py:method=kkrr3 --workdir runs/kkrr3
  python -m launch --config configs/kernels/krr.py:method=bkrr --workdir runs/bkrr
  python -m launch --config configs/kernels/krr.py:method=bkrr3 --workdir runs/bkrr3

kkrr3 and bkrr3 are oracles: they read the test labels (a lower bound, not a method).
"""

from jaxdist.experiment.config import parse_arg
from jaxdist.experiment.kernels import default


def get_config(variant: str = ""):
  a = parse_arg(variant, method="bkrr2", P=16, dataset="regression", backend="simulated",
                cpu=False)
  config = default()
  config.task, config.method = "krr", a.method
  config.data.name = a.dataset
  config.data.num_train, config.data.num_test = 32_768, 2000
  config.krr.lambdas, config.krr.sigmas = (1e-6, 1e-4, 1e-2), (0.5, 1.0, 2.0)
  config.workers.num_workers, config.workers.backend = a.P, a.backend
  if a.cpu:
    config.data.num_train, config.data.num_test = 2000, 500
    config.workers.num_workers = min(a.P, 4)
  return config
