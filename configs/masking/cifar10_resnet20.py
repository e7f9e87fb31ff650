"""Pruning during training on CIFAR-10 with ResNet-20 ([Lin22] ch. 6, App. 15).

Thesis setup (L1749, L4848): one model, batch 128, Nesterov 0.9, lr 0.2, weight decay 1e-4,
/10 at 50% and 75% of 300 epochs; the mask is one global magnitude threshold over all
convolutions (not the classifier, biases or BatchNorm), recomputed every 16 steps, on a cubic
ramp that reaches the target at the second decay.

  --config configs/masking/cifar10_resnet20.py                          DPF to 90% (Table 6.1)
  --config ...:sparsity=0.95                                            DPF to 95%
  --config ...:method=incremental,sparsity=0.95                         incremental (Table 6.2)
  --config ...:method=one_shot,sparsity=0.95                            one-shot + fine-tuning
  --config ...:granularity=filters,sparsity=0.7                         structured (Table 15.3)
  --config ...:thresholds=per_layer                                     per layer (Table 15.2)
  --config ...:sparsity=0.95,finetune=0.2       DPF, then the last 20% with the mask frozen
                                                (Table 6.2's DPF + fine-tuning)
  --config ...:algo=local_sgd,K=8                                       DPF under local SGD
  --config ...:cpu                                                      any of these on MNIST-1D
"""

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, method="dpf", sparsity=0.9, algo="minibatch_sgd", K=1, H=4,
                granularity="weights", thresholds="global", finetune=0.0, cpu=False)
  config = default()
  config.masking.update(name=a.method, sparsity=a.sparsity, recompute_every=16,
                        granularity=a.granularity, thresholds=a.thresholds,
                        freeze_at=1.0 - a.finetune if a.finetune else -1.0)
  config.algo.update(name=a.algo, local_steps=a.H)
  config.workers.num_workers = a.K
  config.data.update(name="cifar10", batch_size=128 // a.K, augment="crop_flip")
  config.model.name = "resnet20"
  config.optim.update(base_lr=0.2, base_batch=128, lr_scaling="linear", warmup_epochs=0.0,
                      schedule="step", decay_at=(0.5, 0.75), momentum=0.9, nesterov=True,
                      weight_decay=1e-4)
  config.train.update(num_epochs=300.0, log_every=100)
  config.eval.every_steps = 2000
  config.checkpoint.every_steps = 2000
  if a.cpu:  # MLP 40-256-256-10 on MNIST-1D, 128 samples per step
    cpu_scale(config, batch_size=128 // a.K, epochs=100.0, base_lr=0.1)
    config.optim.base_batch = 128
  return config
