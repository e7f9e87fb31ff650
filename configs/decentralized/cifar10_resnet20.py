"""Decentralized training on CIFAR-10 with ResNet-20 ([Lin22] ch. 4, 5 and 9).

Thesis setups: a ring of n = 16 (32) workers x 32 samples, Nesterov 0.9, weight decay 1e-4,
lr 0.1 per 128 samples scaled with n*B, 5 warmup epochs, /10 at 50% and 75% of 300 epochs; data
split once (Dirichlet alpha for the non-iid runs of ch. 9, i.i.d. and fixed otherwise; CHOCO's
Table 4.1 setup reshuffles every epoch and takes Table 13.1's tuned learning rate and gamma);
D^2 and D^2_+ without momentum (Table 9.5); the accuracy is the mean over the workers' own
models.

  --config configs/decentralized/cifar10_resnet20.py                    D-SGDm-N, ring of 16
  --config ...:algo=qg_dsgdm,alpha=0.1                                  QG-DSGDm-N (Table 9.1)
  --config ...:algo=dsgd,alpha=0.1                                      DSGDm-N (Table 9.1)
  --config ...:algo=qg_dsgdm,topology=social,n=32                       social network of 32
  --config ...:algo=choco_sgd,n=8,B=128,compressor=sign                 CHOCO-SGD (Table 4.1,
                                                                        Table 13.1's lr, gamma)
  --config ...:algo=choco_sgd,n=8,B=128,compressor=top_k,fraction=0.1   top-10% (Table 4.1)
  --config ...:algo=choco_sgd,n=8,B=128,compressor=qsgd,bits=8          qsgd 8-bit (Table 4.1)
  --config ...:algo=dsgd,n=32,target=0.1,phases=0                       consensus control (ch. 5;
                                                                        phases=0+1 for two)
  --config ...:algo=gradient_tracking,alpha=1.0                         Table 9.5 baselines
  --config ...:algo=d2_plus,alpha=1.0                                   (also d2)
  --config ...:cpu                                                      any of these on MNIST-1D
"""

from jaxdist.errors import ConfigError
from jaxdist.experiment.config import cpu_scale, default, parse_arg

# [Lin22] Table 13.1: CHOCO-SGD's tuned (learning rate, gamma) on the ring of 8 x 128
TABLE_13_1 = {("qsgd", 16): (1.60, 0.2), ("qsgd", 8): (0.96, 0.2), ("qsgd", 4): (1.60, 0.075),
              ("qsgd", 2): (0.96, 0.025), ("random_k", 0.5): (2.40, 0.45),
              ("random_k", 0.1): (1.20, 0.075), ("random_k", 0.01): (0.48, 0.00625),
              ("top_k", 0.5): (1.60, 0.45), ("top_k", 0.1): (1.60, 0.15),
              ("top_k", 0.01): (1.20, 0.0375), ("sign", None): (1.60, 0.45)}


def tuned(compressor: str, fraction: float, bits: int) -> tuple[float, float] | None:
  """Table 13.1's (learning rate at n*B = 1024, gamma) of a compressor, or None."""
  key = {"qsgd": bits, "random_k": fraction, "top_k": fraction}.get(compressor)
  return TABLE_13_1.get((compressor, key))


def get_config(arg: str = ""):
  a = parse_arg(arg, algo="dsgd", topology="ring", n=16, B=32, alpha=0.0, compressor="sign",
                gamma=-1.0, lr=-1.0, fraction=0.01, bits=4, target=0.0, phases="", cpu=False)
  config = default()
  config.algo.update(name=a.algo, compressor=a.compressor, compress_fraction=a.fraction,
                     compress_bits=a.bits, consensus_target=a.target,
                     control_phases=tuple(int(p) for p in a.phases.split("+") if p))
  config.topology.name = a.topology
  config.workers.num_workers = a.n
  config.data.update(name="cifar10", batch_size=a.B, augment="crop_flip")
  if a.alpha > 0:
    config.data.update(partition="dirichlet", dirichlet_alpha=a.alpha)
  elif a.algo == "choco_sgd":
    config.data.partition = "iid"  # Table 4.1 / 13.1: split at random, reshuffled every epoch
  else:
    config.data.partition = "iid_fixed"
  config.model.name = "resnet20"
  config.optim.update(base_lr=0.1, base_batch=128, lr_scaling="linear", warmup_epochs=5.0,
                      schedule="step", decay_at=(0.5, 0.75), momentum=0.9, nesterov=True,
                      weight_decay=1e-4)
  if a.algo in ("d2", "d2_plus"):
    config.optim.momentum = 0.0  # Table 9.5 runs D^2 and D^2_+ without momentum
  gamma, lr = a.gamma, a.lr
  if a.algo == "choco_sgd":
    table = tuned(a.compressor, a.fraction, a.bits)
    if table is None and (gamma < 0 or lr < 0):
      raise ConfigError("gamma (a variant of this config)", f"Table 13.1 has no tuned values for "
                        f"{a.compressor} (fraction {a.fraction}, bits {a.bits})",
                        "gamma=... and lr=..., or a compressor of Table 13.1")
    if table is not None:  # the tuned rate at n*B = 8 x 128, reached by warmup from 0.1
      lr, gamma = (table[0] if lr < 0 else lr), (table[1] if gamma < 0 else gamma)
      config.optim.update(base_batch=8 * 128, warmup_start_lr=0.1)
  if lr > 0:
    config.optim.base_lr = lr
  config.algo.consensus_step = gamma if gamma >= 0 else 0.45
  config.train.update(num_epochs=300.0, log_every=100)
  config.eval.update(every_steps=2000, model="workers")
  config.checkpoint.every_steps = 2000
  if a.cpu:
    cpu_scale(config, batch_size=a.B // 2 if a.B > 32 else a.B, epochs=60.0, base_lr=0.05)
    config.optim.update(base_batch=a.n * config.data.batch_size, lr_scaling="none",
                        warmup_start_lr=None)
    config.eval.model = "workers"
  return config
