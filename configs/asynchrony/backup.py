"""Synchronous SGD with backup workers: N = 16 gradients of N + b, Exp(1) compute times, the step
lasting the N-th arrival (H_{N+b} - H_b against H_N = 3.38 with no backup); b = 0 is the plain
synchronous parameter server (mini-batch SGD). MNIST-1D softmax regression, or digits on CPU.
One-shot averaging of 8 independently trained workers, with the ensemble's accuracy beside it.

  python -m launch --config configs/asynchrony/backup.py --workdir runs/backup2
  python -m launch --config configs/asynchrony/backup.py:b=0 --workdir runs/sync_ps
  python -m launch --config configs/asynchrony/backup.py:cpu,b=4 --workdir runs/backup4_cpu
  python -m launch --config configs/asynchrony/backup.py:cpu,one_shot --workdir runs/one_shot
"""

from jaxdist.experiment.asynchrony import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, cpu=False, b=2, one_shot=False)
  config = default()
  config.algo.update(name="backup_sgd", num_backup=a.b, num_workers=16 + a.b, learning_rate=0.1,
                     reduction="mean", compute_time="exponential")
  config.data.update(name="mnist1d_large", batch_size=32)
  config.train.update(num_steps=2000, log_every=200)
  config.checkpoint.every_steps = 1000
  if a.cpu:
    config.data.update(name="digits", batch_size=8)
    config.train.update(num_steps=200, log_every=50)
    config.checkpoint.every_steps = 100
  if a.one_shot:
    config.algo.update(name="one_shot", num_workers=8, num_backup=0)
  return config
