"""Global (block) momentum on top of local momentum at CPU scale ([Lin22] Table 11.3, T18).

Local SGD with H = 1 on 16 workers (MNIST-1D, MLP, configs/local_sgd/cifar10_resnet20.py:cpu,
30 epochs), local Nesterov momentum 0.9, and global momentum m on the averaged model differences
(App. 11.2.4). The thesis (ResNet-20, CIFAR-10, 5 x 2 GPUs): local 0.9 with global 0 or 0.3
trains (92.41, 92.54), global >= 0.7 collapses (18.76, 14.35, 12.21, 10.11 at 0.7, 0.8, 0.9,
0.95); without any momentum 90.57.

  python reproduce/global_momentum.py [--epochs 30] [--data_dir DIR]
"""

import argparse
import contextlib
import io
import math
import tempfile

from jaxdist import experiment
from jaxdist.experiment import overrides

CONFIG = "configs/local_sgd/cifar10_resnet20.py"
ROWS = [  # local momentum, global momentum, thesis accuracy (Table 11.3)
    (0.0, 0.0, 90.57), (0.9, 0.0, 92.41), (0.9, 0.3, 92.54), (0.9, 0.7, 18.76),
    (0.9, 0.8, 14.35), (0.9, 0.9, 12.21), (0.9, 0.95, 10.11)]


def run(local: float, global_momentum: float, epochs: float, data_dir: str) -> dict:
  config = overrides.load(f"{CONFIG}:H=1,global_momentum={global_momentum},cpu")
  config.optim.momentum = local
  config.data.data_dir = data_dir
  config.train.num_epochs = epochs
  config.train.on_nonfinite = "skip"
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    return experiment.run(config, workdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=30.0)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"{'local m':>7} {'global m':>8} | {'ours: test acc.':>15} {'train loss':>10} | "
        f"{'thesis (ResNet-20)':>18}")
  for local, global_momentum, thesis in ROWS:
    result = run(local, global_momentum, args.epochs, args.data_dir)
    loss = result.get("train/loss", math.nan)
    print(f"{local:>7} {global_momentum:>8} | {100 * result['test/accuracy']:>15.1f} "
          f"{loss if loss is not None else math.nan:>10.3f} | {thesis:>18}", flush=True)


if __name__ == "__main__":
  main()
