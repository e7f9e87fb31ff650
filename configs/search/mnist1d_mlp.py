"""Hyperband over an MLP on MNIST-1D (Sievert's thesis ch. 2 at the scale of a small dataset):
learning rate, momentum, weight decay and batch size of SGD, R = 243 as the thesis's figure,
patience on; each trial is an algorithm on K workers, one partial_fit call = `steps_per_call`
steps. `cpu` is R = 27 on the 4,000-example split (about a minute on two CPU cores).

  python -m launch --config configs/search/mnist1d_mlp.py --workdir runs/search
  python -m launch --config configs/search/mnist1d_mlp.py:cpu --workdir runs/search_cpu
  python -m launch --config configs/search/mnist1d_mlp.py:method=random,cpu --workdir runs/rs
  python -m launch --config configs/search/mnist1d_mlp.py:algo=local_sgd,cpu --workdir runs/h
  python -m launch --config configs/search/mnist1d_mlp.py:algo=choco_sgd,cpu --workdir runs/c
  python -m launch --config configs/search/mnist1d_mlp.py:cluster=2,cpu --workdir runs/dask
  python -m launch --config configs/search/mnist1d_mlp.py:R=81,eta=4,cpu --workdir runs/r81
"""

from jaxdist.experiment.config import parse_arg
from jaxdist.experiment.search import default


def get_config(variant: str = ""):
  a = parse_arg(variant, cpu=False, method="hyperband", algo="minibatch_sgd", cluster=0, R=243,
                eta=3.0)
  config = default()
  config.search.update(method=a.method, max_iter=a.R, aggressiveness=a.eta, patience=-1,
                       steps_per_call=25, cluster_workers=a.cluster, n_models=19)
  config.space = dict(learning_rate="log_uniform(1e-3, 1.0)", momentum="uniform(0.0, 0.99)",
                      weight_decay="log_uniform(1e-6, 1e-3)",
                      batch_size="choice(32, 64, 128, 256, 512)")
  config.algo.name = a.algo
  config.workers.num_workers = 8 if a.algo != "minibatch_sgd" else 1
  config.data.update(name="mnist1d_large", validation=5000)
  config.model.hidden = (256, 256)
  if a.algo == "local_sgd":
    config.space.local_steps = "choice(1, 2, 4, 8, 16)"
  if a.algo == "choco_sgd":
    config.space.consensus_step = "uniform(0.05, 1.0)"
    del config.space["batch_size"]
  if a.cpu:
    config.search.update(max_iter=27 if a.R == 243 else a.R, steps_per_call=10)
    config.data.update(name="mnist1d", validation=1000)
    config.model.hidden = (64,)
    config.workers.num_workers = min(config.workers.num_workers, 4)
    if "batch_size" in config.space:
      config.space.batch_size = "choice(32, 64, 128)"
  return config
