"""Quickstart: local SGD (H=4) on 8 simulated workers, MLP on MNIST-1D, under a minute on a CPU.

  python -m launch --config configs/quickstart.py --workdir runs/quickstart
  python -m launch --config configs/quickstart.py:minibatch --workdir runs/minibatch  # baseline
"""

from jaxdist.experiment.config import default


def get_config(variant: str = ""):
  config = default()
  config.algo.name = "local_sgd"
  config.algo.local_steps = 4
  config.workers.num_workers = 8
  config.data.name = "mnist1d"
  config.data.batch_size = 32
  config.model.name = "mlp"
  config.optim.base_lr = 0.05
  config.optim.base_batch = 32
  config.optim.lr_scaling = "none"  # both methods use the same rate on the same global batch
  config.optim.weight_decay = 5e-4
  config.train.num_epochs = 60.0
  config.eval.every_steps = 100
  if variant == "minibatch":
    config.algo.name = "minibatch_sgd"
  return config
