"""Federated learning on CIFAR-10 with ResNet-8 ([Lin22] ch. 8, Table 8.1 and 8.2).

Thesis setup: 20 clients, a fraction C of them per round, Dirichlet alpha label skew (per-class,
as the authors' code), E local epochs of plain SGD at lr 0.1 (batch 64, no momentum, no weight
decay), 100 rounds; FedDF distills on held-out unlabeled inputs (the thesis uses CIFAR-100; here a
split of the training inputs without labels) with Adam 1e-3, cosine over up to 1e4 steps, batch
128, early stopping after 1e3 steps on a 10% validation split.

  --config configs/federated/cifar10_resnet8.py                         FedAvg, C=0.4, alpha=1, E=1
  --config ...:algo=feddf,E=40                                          FedDF (Table 8.1)
  --config ...:algo=fedprox,E=20,mu=0.01                                FedProx
  --config ...:algo=fedavgm,E=20,beta=0.3                               FedAvgM (server momentum)
  --config ...:algo=fedadam,E=20                                        server Adam
  --config ...:algo=mimelite,E=20,beta=0.9                              MimeLite (Alg. 21)
  --config ...:algo=feddf,C=0.2,alpha=0.1,E=20                          the other columns
  --config ...:algo=feddf,E=40,init=previous                            Table 17.1 ablation
  --config ...:algo=feddf,distill=noise                                 uniform noise (Fig. 8.5)
  --config ...:statistics=per_client                                    BN statistics kept locally
  --config ...:cpu                                                      any of these on MNIST-1D
"""

from jaxdist.experiment.config import parse_arg
from jaxdist.experiment.federated import default


def get_config(arg: str = ""):
  a = parse_arg(arg, algo="fedavg", C=0.4, alpha=1.0, E=1, mu=0.01, beta=0.3, init="average",
                distill="split", statistics="averaged", K=20, cpu=False)
  config = default()
  config.algo.update(name=a.algo, proximal_mu=a.mu, server_momentum=a.beta, mime_momentum=a.beta,
                     distill_init=a.init, distill_data=a.distill, statistics=a.statistics,
                     server_lr=1.0 if a.algo != "fedadam" else 1e-2)
  config.clients.update(num_clients=a.K, fraction=a.C, dirichlet_alpha=a.alpha, local_epochs=a.E,
                        batch_size=64, learning_rate=0.1)
  config.data.name = "cifar10"
  config.model.name = "resnet8"
  config.train.update(num_rounds=100, log_every=1)
  config.eval.every_rounds = 1
  config.checkpoint.every_rounds = 10
  if a.cpu:  # the MLP on MNIST-1D (4,000 training examples), minutes
    config.data.name = "mnist1d"
    config.model.update(name="mlp", hidden=(128, 128))
    config.clients.update(batch_size=32, learning_rate=0.05)
    config.algo.update(distill_steps=500, validate_every=50, patience=200)
    config.train.update(num_rounds=60, log_every=5)
    config.eval.every_rounds = 5
    config.checkpoint.every_rounds = 0
  return config
