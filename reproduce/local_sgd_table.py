"""Local and post-local SGD against mini-batch and huge-batch SGD at CPU scale ([Lin22] Table 2.1).

K = 16 workers x B_loc = 16 on MNIST-1D (40,000 signals), MLP, 30 epochs, the thesis's recipe
(Nesterov, weight decay, /10 at 50% and 75% of the samples). Every method sees the same samples.
The thesis's claims (ResNet-20, CIFAR-10, K = 16): local SGD reaches mini-batch accuracy with
H x fewer communication rounds; a huge batch (K*H*B_loc) loses accuracy; post-local SGD, local
steps only after the first decay, matches or beats mini-batch SGD.

  python reproduce/local_sgd_table.py [--seeds 2] [--data_dir DIR]
"""

import argparse
import contextlib
import io
import tempfile

import numpy as np

from jaxdist import experiment
from jaxdist.experiment import overrides

CONFIG = "configs/local_sgd/cifar10_resnet20.py"
H = 16
ROWS = [  # name, config variant, thesis test accuracy at K=16 (Table 2.1)
    ("mini-batch SGD, K*B = 256", "algo=minibatch_sgd", 92.5),
    (f"huge-batch SGD, K*B = {256 * H}", f"algo=minibatch_sgd,batch={8 * 16 * H}", 76.3),
    ("local SGD, H = 2", "algo=local_sgd,H=2", None),
    ("local SGD, H = 4", "algo=local_sgd,H=4", None),
    (f"local SGD, H = {H}", f"algo=local_sgd,H={H}", 92.0),
    (f"post-local SGD, H = {H}", f"algo=post_local_sgd,H={H}", 92.9),
]


def run(variant: str, seed: int, data_dir: str) -> dict:
  config = overrides.load(f"{CONFIG}:{variant},cpu")
  config.data.update(name="mnist1d_large", data_dir=data_dir)
  config.train.num_epochs = 30.0
  config.seed = seed
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    return experiment.run(config, workdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"{'method':28} {'test accuracy':>16} {'rounds':>7} {'rounds vs mini-batch':>21} "
        f"{'thesis (CIFAR-10)':>18}")
  baseline_rounds = None
  for name, variant, thesis in ROWS:
    results = [run(variant, seed, args.data_dir) for seed in range(args.seeds)]
    accuracy = 100 * np.array([r["test/accuracy"] for r in results])
    rounds = results[0]["comm/rounds"]
    baseline_rounds = baseline_rounds or rounds
    print(f"{name:28} {accuracy.mean():>9.1f} ± {accuracy.std():.1f} {rounds:>7.0f} "
          f"{baseline_rounds / rounds:>20.1f}x {thesis if thesis else '-':>18}", flush=True)


if __name__ == "__main__":
  main()
