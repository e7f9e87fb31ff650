"""Learned binary masks instead of fine-tuning ([Lin22] ch. 7, App. 16), at CPU scale.

A model pretrained on one task (the MLP on MNIST-1D's ten digits) is reused for another (the
parity of the digit, two classes): its weights stay frozen and only binary masks are learned
(scores thresholded at 1/2, straight-through estimator, 5% initial sparsity, Adam), against
fine-tuning all weights. A fresh classifier is random: frozen and masked, or trained.

  python -m launch --config configs/masking/learned_mnist1d.py:pretrain --workdir runs/mnist1d
  --config configs/masking/learned_mnist1d.py --config.model.pretrained=runs/mnist1d/model.npz
  --config ...:finetune --config.model.pretrained=runs/mnist1d/model.npz
  --config ...:initial_sparsity=0.5                                     a sparser start
"""

from jaxdist.experiment.config import default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, pretrain=False, finetune=False, initial_sparsity=0.05, K=1)
  config = default()
  config.algo.name = "minibatch_sgd"
  config.workers.num_workers = a.K
  config.data.update(name="mnist1d", batch_size=128 // a.K)
  config.model.name = "mlp"
  config.train.update(num_epochs=30.0, log_every=50)
  config.eval.every_steps = 100
  if a.pretrain:  # task A: the ten digits, Nesterov SGD
    config.optim.update(base_lr=0.1, base_batch=128, lr_scaling="none", weight_decay=5e-4)
    config.train.num_epochs = 100.0
    return config
  config.data.relabel = "parity"  # task B
  config.optim.update(optimizer="adam", lr_scaling="none", base_batch=128, weight_decay=0.0,
                      schedule="constant", b2=0.999, eps=1e-8)
  if a.finetune:
    config.optim.base_lr = 1e-3
  else:
    config.masking.update(name="learned", initial_sparsity=a.initial_sparsity)
    config.optim.base_lr = 1e-2
  return config
