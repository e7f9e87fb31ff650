"""EXTRAP-SGD and the extrapolation framework on CIFAR-10 with ResNet-20 ([Lin22] ch. 3, App. 12).

Thesis setup (Table 3.1): K = 32 workers x 256 = 8192 samples per step, LARS (trust 0.02),
Nesterov 0.9, unscaled lr 0.1 scaled linearly with K, 5 warmup epochs, /10 at 50% and 75% of 300
epochs; eta_hat = scale * lr / K with scale in {1, 2, 4} (noise variants {0.1 ... 4}).

  --config configs/extrap/cifar10_resnet20.py                              EXTRAP-SGD
  --config ...:extrapolation=none                                          mini-batch SGD
  --config ...:extrapolation=smoothout  (or gaussian, uniform, gradient_noise)
  --config ...:algo=post_local_sgd,H=8                                     EXTRAP + post-local
  --config ...:lars=false                                                  without LARS
  --config ...:extrapolation=none,neelakantan=1e-5                         Table 11.9's
      baseline: mini-batch SGD, Neelakantan noise N(0, eta / (1 + t)^0.55) on the gradient
  --config ...:cpu                                                         MNIST-1D, CPU scale
"""

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, algo="minibatch_sgd", extrapolation="extrap", scale=1.0, H=8, lars=True,
                neelakantan=0.0, cpu=False)
  config = default()
  config.algo.update(name=a.algo, local_steps=a.H, extrapolation=a.extrapolation,
                     extrapolation_scale=a.scale)
  config.workers.num_workers = 32
  config.data.update(name="cifar10", batch_size=256, augment="crop_flip")
  config.model.name = "resnet20"
  config.optim.update(optimizer="lars" if a.lars else "sgd", base_lr=0.1, base_batch=256,
                      lr_scaling="linear", warmup_epochs=5.0, schedule="step",
                      decay_at=(0.5, 0.75), momentum=0.9, nesterov=True, weight_decay=1e-4,
                      gradient_noise_eta=a.neelakantan)
  if a.lars:
    config.optim.trust_coefficient = 0.02
  config.train.update(num_epochs=300.0, log_every=50)
  config.eval.every_steps = 500
  config.checkpoint.every_steps = 500
  if a.cpu:
    cpu_scale(config, dataset="mnist1d_large", batch_size=32, epochs=30.0, base_lr=0.02)
  return config
