"""Decentralized training on CIFAR-10 with ResNet-20 ([Lin22] ch. 4, 5 and 9).

Thesis setups: a ring of n = 16 (32) workers x 32 samples, Nesterov 0.9, weight decay 1e-4,
lr 0.1 per 128 samples scaled with n*B, 5 warmup epochs, /10 at 50% and 75% of 300 epochs; data
split once (Dirichlet alpha for the non-iid runs of ch. 9, i.i.d. and fixed otherwise); the
accuracy is the mean over the workers' own models.

  --config configs/decentralized/cifar10_resnet20.py                    D-SGDm-N, ring of 16
  --config ...:algo=qg_dsgdm,alpha=0.1                                  QG-DSGDm-N (Table 9.1)
  --config ...:algo=dsgd,alpha=0.1                                      DSGDm-N (Table 9.1)
  --config ...:algo=qg_dsgdm,topology=social,n=32                       social network of 32
  --config ...:algo=choco_sgd,n=8,B=128,compressor=sign,gamma=0.45      CHOCO-SGD (Table 4.1)
  --config ...:algo=choco_sgd,n=8,B=128,compressor=top_k,gamma=0.0375   top-1% (Table 4.1)
  --config ...:algo=dsgd,n=32,target=0.1,phases=0                       consensus control (ch. 5;
                                                                        phases=0+1 for two)
  --config ...:algo=gradient_tracking,alpha=1.0                         Table 9.5 baselines
  --config ...:algo=d2_plus,alpha=1.0                                   (also d2)
  --config ...:cpu                                                      any of these on MNIST-1D
"""

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, algo="dsgd", topology="ring", n=16, B=32, alpha=0.0, compressor="sign",
                gamma=0.45, fraction=0.01, target=0.0, phases="", cpu=False)
  config = default()
  config.algo.update(name=a.algo, compressor=a.compressor, consensus_step=a.gamma,
                     compress_fraction=a.fraction, consensus_target=a.target,
                     control_phases=tuple(int(p) for p in a.phases.split("+") if p))
  config.topology.name = a.topology
  config.workers.num_workers = a.n
  config.data.update(name="cifar10", batch_size=a.B, augment="crop_flip")
  if a.alpha > 0:
    config.data.update(partition="dirichlet", dirichlet_alpha=a.alpha)
  else:
    config.data.partition = "iid_fixed"
  config.model.name = "resnet20"
  config.optim.update(base_lr=0.1, base_batch=128, lr_scaling="linear", warmup_epochs=5.0,
                      schedule="step", decay_at=(0.5, 0.75), momentum=0.9, nesterov=True,
                      weight_decay=1e-4)
  config.train.update(num_epochs=300.0, log_every=100)
  config.eval.update(every_steps=2000, model="workers")
  config.checkpoint.every_steps = 2000
  if a.cpu:
    cpu_scale(config, batch_size=a.B // 2 if a.B > 32 else a.B, epochs=60.0, base_lr=0.05)
    config.optim.update(base_batch=a.n * config.data.batch_size, lr_scaling="none")
    config.eval.model = "workers"
  return config
