"""Large-batch optimizers on CIFAR-10 with ResNet-20: SGD, LARS, LAMB ([You20] ch. 5-6).

LAMB follows [You20] ch. 6: square-root scaling, LEGW warmup (its epochs grow with the batch),
polynomial decay to zero, Adam moments with decoupled weight decay 0.01. LARS follows ch. 5:
trust coefficient 0.001, trust ratio clipped to [0, 50], gradients to [-10, 10], linear scaling,
polynomial decay of power 2. 16 workers x 512 = 8192 samples per step, 90 epochs.

  --config configs/large_batch/cifar10_resnet20.py:optimizer=lamb
  --config ...:optimizer=lars
  --config ...:optimizer=sgd                  Goyal et al.'s recipe, the baseline
  --config ...:optimizer=adamw                AdamW on LAMB's schedule (ch. 6's baseline)
  --config ...:optimizer=adagrad              AdaGrad on Goyal et al.'s schedule
  --config ...:optimizer=lamb,lamb_variant=n_lamb    N-LAMB (Alg. 17; nn_lamb: Alg. 18)
  --config ...:optimizer=lars,lars_form=ema_normalized   ch. 6's Alg. 15 LARS
  --config ...:optimizer=lamb,trust_norm=linf        another trust-ratio norm (Fig. 6.4)
  --config ...:optimizer=lamb,cpu             MNIST-1D at CPU scale

N-LAMB and NN-LAMB run with Dozat's beta1 = 0.975, beta2 = 0.999, eps = 1e-8 (L2973).
"""

import math

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, optimizer="lamb", batch=512, lamb_variant="lamb", lars_form="lr_inside",
                trust_norm="l2", cpu=False)
  config = default()
  config.algo.name = "minibatch_sgd"
  config.workers.num_workers = 16
  config.data.update(name="cifar10", batch_size=a.batch, augment="crop_flip")
  config.model.name = "resnet20"
  config.optim.update(optimizer=a.optimizer, lamb_variant=a.lamb_variant,
                      lars_momentum=a.lars_form, trust_norm=a.trust_norm)
  if a.optimizer in ("lamb", "adamw"):
    config.optim.update(base_lr=0.04 * math.sqrt(512 / 32768), base_batch=512,
                        lr_scaling="sqrt", warmup_epochs=0.3125, warmup_scaling="legw",
                        warmup_start_lr=0.0, schedule="poly", decay_power=1.0,
                        weight_decay=0.01, eps=1e-6)
    if a.lamb_variant != "lamb":
      config.optim.update(b1=0.975, b2=0.999, eps=1e-8)
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
    lr = {"lamb": 0.01, "adamw": 0.001, "lars": 10.0, "sgd": 0.2, "adagrad": 0.05}[a.optimizer]
    cpu_scale(config, dataset="mnist1d_large", batch_size=a.batch // 8, epochs=30.0, base_lr=lr)
  return config
