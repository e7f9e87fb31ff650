"""Coordinate parallelism and the real threaded runner.

Block coordinate descent on generated least squares (20,000 x 1,000, 8 blocks of coordinates,
one per worker; 100 sweeps), and the threaded asynchronous runner (one thread per device driving
a jitted gradient step against a shared parameter store; not bit-reproducible) on MNIST-1D or,
for the CPU, digits on 4 (fake) devices:

  python -m launch --config configs/asynchrony/coordinate.py --workdir runs/bcd
  python -m launch --config configs/asynchrony/coordinate.py:cpu --workdir runs/bcd_cpu
  python -m launch --config configs/asynchrony/coordinate.py:threaded --workdir runs/threaded
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m launch \\
      --config configs/asynchrony/coordinate.py:threaded,cpu --workdir runs/threaded_cpu
"""

from jaxdist.experiment.asynchrony import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, cpu=False, threaded=False)
  config = default()
  config.algo.update(name="bcd", num_workers=8)
  config.data.update(num_examples=20000, dim=1000)
  config.train.update(num_steps=100, log_every=10)
  config.checkpoint.every_steps = 50
  if a.cpu:
    config.data.update(num_examples=2000, dim=200)
    config.train.update(num_steps=40, log_every=10)
    config.checkpoint.every_steps = 20
  if a.threaded:
    config.algo.update(name="threaded", num_workers=8, learning_rate=0.05, reduction="sum")
    config.data.update(name="mnist1d_large", batch_size=32)
    config.train.update(num_steps=20000, log_every=2000)
    config.checkpoint.every_steps = 10000
    if a.cpu:
      config.algo.num_workers = 4
      config.data.update(name="digits", batch_size=8)
      config.train.update(num_steps=2000, log_every=500)
      config.checkpoint.every_steps = 1000
  return config
