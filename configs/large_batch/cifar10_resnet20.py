"""Large-batch optimizers on CIFAR-10 with ResNet-20: SGD, LARS, LAMB ([You20] ch. 5-6).

LAMB follows [You20] ch. 6: square-root scaling, LEGW warmup (its epochs grow with the batch),
polynomial decay to zero, Adam moments with decoupled weight decay 0.01. LARS follows ch. 5:
trust coefficient 0.001, trust ratio clipped to [0, 50], gradients to [-10, 10], linear scaling,
polynomial decay of power 2. 16 workers x 512 = 8192 samples per step, 90 epochs.

  --config configs/large_batch/cifar10_resnet20.py:optimizer=lamb
  --config ...:optimizer=lars
  --config ...:optimizer=sgd                  Goyal et al.'s recipe, the baseline
  --config ...:optimizer=lamb,cpu             MNIST-1D at CPU scale
"""

import math

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, optimizer="lamb", batch=512, cpu=False)
  config = default()
  config.algo.name = "minibatch_sgd"
  config.workers.num_workers = 16
  config.data.update(name="cifar10", batch_size=a.batch, augment="crop_flip")
  config.model.name = "resnet20"
  config.optim.optimizer = a.optimizer
  if a.optimizer == "lamb":
    config.optim.update(base_lr=0.04 * math.sqrt(512 / 32768), base_batch=512,
                        lr_scaling="sqrt", warmup_epochs=0.3125, warmup_scaling="legw",
                        warmup_start_lr=0.0, schedule="poly", decay_power=1.0,
                        weight_decay=0.01, eps=1e-6)
  elif a.optimizer == "lars":
    config.optim.update(base_lr=0.2, base_batch=256, lr_scaling="linear", warmup_epochs=5.0,
                        warmup_start_lr=0.0, schedule="poly", decay_power=2.0, momentum=0.9,
                        nesterov=False, weight_decay=1e-4, trust_coefficient=0.001, trust_eps=1e-5,
                        trust_clip=(0.0, 50.0), grad_clip_value=10.0)
  else:
    config.optim.update(base_lr=0.1, base_batch=256, lr_scaling="linear", warmup_epochs=5.0,
                        schedule="step", decay_at=(0.5, 0.75), weight_decay=1e-4)
  config.train.update(num_epochs=90.0, log_every=20)
  config.eval.every_steps = 200
  if a.cpu:
    lr = {"lamb": 0.01, "lars": 10.0, "sgd": 0.2}[a.optimizer]
    cpu_scale(config, dataset="mnist1d_large", batch_size=a.batch // 8, epochs=30.0, base_lr=lr)
  return config
