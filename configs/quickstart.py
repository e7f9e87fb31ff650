"""Quickstart: local SGD (H=4) against mini-batch SGD on 8 simulated workers, an MLP on MNIST-1D
(the 40,000-example split), about 20 s per run on two CPU cores.

  python -m launch --config configs/quickstart.py --workdir runs/quickstart
  python -m launch --config configs/quickstart.py:minibatch --workdir runs/minibatch  # baseline
  python -m launch --config configs/quickstart.py:ef_sign --workdir runs/ef_sign  # EF-signSGD

EF-signSGD's local steps move every weight by the learning rate, so it runs at 0.003 (91.4% test
accuracy; 0.01: 88.3%, 0.05: 49%, the 0.1 of the other runs: 13.5%; `optim.base_lr` above 0.02
with sign compression is warned about).
"""

from jaxdist.experiment.config import default, parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, minibatch=False, ef_sign=False)
  config = default()
  config.algo.name = "local_sgd"
  config.algo.local_steps = 4
  config.workers.num_workers = 8
  config.data.name = "mnist1d_large"  # generated locally on first use (about a minute)
  config.data.batch_size = 32
  config.model.name = "mlp"
  config.optim.base_lr = 0.1
  config.optim.base_batch = 32
  config.optim.lr_scaling = "none"  # both methods use the same rate on the same global batch
  config.optim.weight_decay = 5e-4
  config.train.num_epochs = 20.0
  config.eval.every_steps = 500
  if a.minibatch:
    config.algo.name = "minibatch_sgd"
  if a.ef_sign:
    config.algo.compression = "ef_sign"
    config.optim.base_lr = 0.003
  return config
