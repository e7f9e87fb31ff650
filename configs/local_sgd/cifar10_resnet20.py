"""The local SGD family on CIFAR-10 with ResNet-20 and 16 workers ([Lin22] ch. 2, App. 11).

Thesis recipe: B_loc = 128, lr 0.2 per 128 samples scaled linearly with K*B_loc, 5 warmup epochs,
/10 at 50% and 75% of 300 epochs, Nesterov 0.9, weight decay 1e-4 (not on BN and biases).

  --config configs/local_sgd/cifar10_resnet20.py                     local SGD, H = 8 (Fig. 2.3)
  --config ...:algo=minibatch_sgd                                    mini-batch SGD, K*B = 2048
  --config ...:algo=minibatch_sgd,batch=2048                         huge-batch SGD (Table 2.1)
  --config ...:algo=post_local_sgd,H=16                              post-local SGD (Table 2.2)
  --config ...:algo=post_local_sgd,H=16,compression=ef_sign          EF-signSGD (Table 2.3)
  --config ...:algo=hierarchical_local_sgd,H=2,Hb=8,per_node=2       8 nodes x 2 (Table 11.12)
  --config ...:global_momentum=0.3,H=1                               hybrid momentum (Table 11.3)
  --config ...:H=8,h_warmup=exponential,h_warmup_epochs=3            H = 1, 2, 4, then 8 (L2959)
  --config ...:algo=post_local_sgd,H=16,per_node=2,grad_allreduce    gradients all-reduced in
                                                                     the node after the switch
  --config ...:algo=post_local_sgd,H=16,compression=sign_majority    majority vote (Table 11.10)
  --config ...:algo=ef_sign_sgd                                      centralized EF-signSGD
  --config ...:cpu                                                   any of these on MNIST-1D
"""

from jaxdist.experiment.config import cpu_scale, default, parse_arg


def get_config(arg: str = ""):
  a = parse_arg(arg, algo="local_sgd", H=8, Hb=1, per_node=0, batch=128, compression="none",
                global_momentum=0.0, h_warmup="exponential", h_warmup_epochs=0.0,
                grad_allreduce=False, cpu=False)
  config = default()
  config.algo.update(name=a.algo, local_steps=a.H, block_steps=a.Hb, compression=a.compression,
                     global_momentum=a.global_momentum, local_steps_warmup=a.h_warmup,
                     local_steps_warmup_epochs=a.h_warmup_epochs,
                     post_local_gradient_allreduce=a.grad_allreduce)
  config.workers.update(num_workers=16, per_node=a.per_node)
  config.data.update(name="cifar10", batch_size=a.batch, augment="crop_flip")
  config.model.name = "resnet20"
  config.optim.update(base_lr=0.2, base_batch=128, lr_scaling="linear", warmup_epochs=5.0,
                      schedule="step", decay_at=(0.5, 0.75), momentum=0.9, nesterov=True,
                      weight_decay=1e-4)
  if a.compression != "none":  # signSGD: no scaling, no warmup; EF-signSGD: warmup from 0.1
    config.optim.update(base_lr=0.15, lr_scaling="none",
                        warmup_epochs=5.0 if a.compression == "ef_sign" else 0.0,
                        warmup_start_lr=0.1 if a.compression == "ef_sign" else None)
  config.train.update(num_epochs=300.0, log_every=100)
  config.eval.every_steps = 2000
  config.checkpoint.every_steps = 2000
  if a.cpu:  # K x 16 samples; the rate 0.05 is for 256 samples per step, scaled beyond
    sign_steps = a.compression != "none"
    cpu_scale(config, batch_size=a.batch // 8, epochs=60.0, base_lr=0.01 if sign_steps else 0.05)
    config.optim.update(base_batch=16 * 16, lr_scaling="none" if sign_steps else "linear",
                        warmup_start_lr=None)
  return config
