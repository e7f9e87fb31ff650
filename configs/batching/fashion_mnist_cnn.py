"""[Sievert] App. B.4 (S0 L2242-2263): a CNN on Fashion-MNIST, RADADAMP, GeoDamp and their -LR
twins, lr 0.005, B 256 -> 1024, weight decay 3e-3, Nesterov 0.9, 200 epochs; GeoDamp x1.219231
every 10 epochs, RADADAMP rho 0.999, lambda 1e-3, dwell 1. Needs Fashion-MNIST prepared for tfds
(`tfds build fashion_mnist --file_format=array_record`, then --config.data.data_dir=DIR).

  python -m launch --config configs/batching/fashion_mnist_cnn.py --workdir runs/fm_radadamp
  python -m launch --config configs/batching/fashion_mnist_cnn.py:rule=geodamp --workdir runs/g
  python -m launch --config configs/batching/fashion_mnist_cnn.py:rule=radadamp_lr --workdir r
  python -m launch --config configs/batching/fashion_mnist_cnn.py:rule=geodamp_lr --workdir r
  python -m launch --config configs/batching/fashion_mnist_cnn.py:cpu --workdir runs/fm_cpu

The CNN is the library's (strided 3x3 convolutions 32-64-64, a dense layer of 128; the thesis's
has max-pooling and about 111k weights). `cpu` runs the same recipe on digits, 20 epochs, with
GeoDamp's delay scaled to 1 epoch.
"""

from jaxdist.experiment.batching import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, rule="radadamp", cpu=False)
  c = default()
  c.rule.update(name=a.rule, initial_batch=256, max_batch=1024, rho=0.999, regularization=1e-3,
                factor=1.219231, delay=10.0)
  c.data.name = "fashion_mnist"
  c.model.update(name="cnn", features=(32, 64, 64), dense=128)
  c.optim.update(learning_rate=0.005, momentum=0.9, nesterov=True, weight_decay=3e-3)
  c.workers.update(num_workers=8, examples_per_worker=128)
  c.train.update(num_epochs=200.0, micro_batch=128, updates_per_chunk=100)
  if a.cpu:
    c.data.name = "digits"
    c.model.update(name="mlp", hidden=(64,))
    c.rule.update(initial_batch=16, max_batch=256, delay=1.0, rho=0.99)
    c.optim.learning_rate = 0.05
    c.workers.update(num_workers=4, examples_per_worker=16)
    c.train.update(num_epochs=20.0, micro_batch=16, updates_per_chunk=50)
  return c
