"""Asynchronous SGD with a parameter server on the simulated clock: 16 workers with exponential
compute times, a softmax regression on MNIST-1D (40,000 examples); staleness, model time and test
accuracy every 100 waves. A CPU variant on scikit-learn's digits with 8 workers runs in seconds.

  python -m launch --config configs/asynchrony/async_ps.py --workdir runs/async_ps
  python -m launch --config configs/asynchrony/async_ps.py:cpu --workdir runs/async_ps_cpu
  python -m launch --config configs/asynchrony/async_ps.py:cpu,adagrad --workdir runs/async_adagrad
  python -m launch --config configs/asynchrony/async_ps.py:cpu,downpour --workdir runs/downpour
  python -m launch --config configs/asynchrony/async_ps.py:cpu,times=lognormal --workdir runs/heavy
"""

from jaxdist.experiment.asynchrony import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, cpu=False, adagrad=False, downpour=False, times="exponential")
  config = default()
  config.algo.update(name="async_ps", num_workers=16, learning_rate=0.05, reduction="sum",
                     compute_time=a.times)
  config.data.update(name="mnist1d_large", batch_size=32)
  config.train.update(num_steps=2000, log_every=100)
  config.checkpoint.every_steps = 500
  if a.cpu:
    config.algo.num_workers = 8
    config.data.update(name="digits", batch_size=8)
    config.train.update(num_steps=200, log_every=50)
    config.checkpoint.every_steps = 100
  if a.adagrad:  # Dean et al.: asynchrony works best with Adagrad on the server
    config.algo.update(optimizer="adagrad", learning_rate=0.1)
  if a.downpour:  # push every 4 local steps, fetch every 8
    config.algo.update(push_every=4, fetch_every=8, local_learning_rate=0.05)
  return config
