"""[Holt & Sievert] S1 §"Experiments" (S1 L186-213; Smith et al. §5.1): CIFAR-10, Nesterov 0.9,
weight decay 5e-4, lr 0.05, 200 epochs; at epochs 60, 120 and 180 the batch grows x5 up to the
maximum batch, then the rate decays /5; the workers follow the batch (128 examples each).

  python -m launch --config configs/batching/cifar10_schedules.py --workdir runs/c_5120x2
  python -m launch --config configs/batching/cifar10_schedules.py:max_batch=3200 --workdir r
  python -m launch --config configs/batching/cifar10_schedules.py:max_batch=16000 --workdir r
  python -m launch --config configs/batching/cifar10_schedules.py:max_batch=640 --workdir r
  python -m launch --config configs/batching/cifar10_schedules.py:max_batch=128 --workdir r
  python -m launch --config configs/batching/cifar10_schedules.py:cpu --workdir runs/c_cpu

The default is the "5.1k (*2)" schedule (B_0 = 256: 256 -> 1280 -> 5120); every other maximum
starts at 128, and 128 itself is plain SGD with the rate /5 at each milestone (GeoDamp-LR).
The model is S1's Wide-ResNet 16-4 with BatchNorm: every batch of these schedules is a multiple
of the 128-example micro-batch, so BatchNorm sees whole micro-batches (ghost batches of 128) and
its statistics are threaded through them; the time model (centralized by default,
`--config.time_model.architecture=ring`) charges each update as S1 Table 2 does.
Needs CIFAR-10 prepared for tfds. `cpu`: MNIST-1D, 20 epochs, milestones at 6/12/18.
"""

from jaxdist.experiment.batching import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, max_batch=5120, cpu=False)
  c = default()
  initial = 256 if a.max_batch == 5120 else 128
  c.rule.update(name="geodamp" if a.max_batch > 128 else "geodamp_lr", initial_batch=initial,
                max_batch=a.max_batch, factor=5.0, milestones=(60.0, 120.0, 180.0))
  c.data.name = "cifar10"
  c.model.name = "wrn16_4"
  c.optim.update(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
  c.workers.update(num_workers=8, examples_per_worker=128, max_workers=max(1, a.max_batch // 128))
  c.time_model.update(architecture="centralized", network="moderate", per_example=1e-3,
                      per_update=0.02, overhead_per_worker=5e-3)
  c.train.update(num_epochs=200.0, micro_batch=128, updates_per_chunk=100)
  if a.cpu:
    c.data.name = "mnist1d"
    c.model.update(name="mlp", hidden=(128,))
    c.rule.update(initial_batch=initial // 16, max_batch=max(8, a.max_batch // 16),
                  milestones=(6.0, 12.0, 18.0))
    c.workers.update(num_workers=4, examples_per_worker=8,
                     max_workers=max(1, a.max_batch // 128))
    c.train.update(num_epochs=20.0, micro_batch=8, updates_per_chunk=50)
  return c
