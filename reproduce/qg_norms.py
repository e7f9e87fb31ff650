"""Normalisation under non-i.i.d. data at CPU scale ([Lin22] Table 9.1, alpha = 0.1): ResNet-20
with BatchNorm, GroupNorm (2 groups) or EvoNorm-S0, and VGG-11 at half width without
normalisation, each trained by DSGDm-N and QG-DSGDm-N.

A ring of 16 workers x 32 samples on MNIST-1D (the 4000-signal split), the CPU scale of
configs/decentralized/cifar10_resnet20.py, ResNet-20 at width 4 and VGG-11 at half width, so a run
takes seconds: data split once with a Dirichlet prior (alpha = 0.1), Nesterov 0.9, weight decay
1e-4, lr 0.1, /10 at 50% and 75%. Accuracy: the mean test accuracy of the workers' own models
(BatchNorm: with each worker's own statistics). The thesis (CIFAR-10, 300 epochs): QG's gain is
small with BatchNorm (57.19 -> 58.16) and large with GroupNorm (71.86 -> 82.78), EvoNorm
(77.48 -> 82.20) and VGG-11 (77.45 -> 83.41).

  python reproduce/qg_norms.py [--epochs 30] [--alpha 0.1] [--data_dir DIR]
"""

import argparse
import contextlib
import io
import tempfile

from jaxdist import experiment
from jaxdist.experiment import overrides

CONFIG = "configs/decentralized/cifar10_resnet20.py"
THESIS = {  # Table 9.1, ring of 16, alpha = 0.1: (DSGDm-N, QG-DSGDm-N)
    "resnet20": (57.19, 58.16), "resnet20_gn": (71.86, 82.78),
    "resnet20_evonorm": (77.48, 82.20), "vgg11": (77.45, 83.41)}


def run(model: str, algo: str, alpha: float, epochs: float, data_dir: str) -> float:
  config = overrides.load(f"{CONFIG}:algo={algo},alpha={alpha},cpu")
  config.data.update(name="mnist1d", data_dir=data_dir)
  config.model.update(name=model, width=4)
  config.optim.update(base_lr=0.1, warmup_epochs=0.0)
  config.train.update(num_epochs=epochs, log_every=10)
  config.eval.every_steps = 0
  config.checkpoint.every_steps = 0
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    return 100 * experiment.run(config, workdir)["test/accuracy"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=30.0)
  parser.add_argument("--alpha", type=float, default=0.1)
  parser.add_argument("--models", nargs="+", default=list(THESIS))
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"ring of 16, MNIST-1D (4000), alpha = {args.alpha:g}, {args.epochs:g} epochs; mean test "
        "accuracy of the workers' models (%)\n")
  print(f"{'model':18} {'DSGDm-N':>8} {'QG':>8} {'gain':>6} | thesis {'DSGDm-N':>8} {'QG':>6} "
        f"{'gain':>6}")
  for model in args.models:
    ours = [run(model, algo, args.alpha, args.epochs, args.data_dir)
            for algo in ("dsgd", "qg_dsgdm")]
    thesis = THESIS[model]
    print(f"{model:18} {ours[0]:>8.2f} {ours[1]:>8.2f} {ours[1] - ours[0]:>+6.2f} | "
          f"{thesis[0]:>15.2f} {thesis[1]:>6.2f} {thesis[1] - thesis[0]:>+6.2f}", flush=True)


if __name__ == "__main__":
  main()
