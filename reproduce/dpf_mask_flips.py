"""How DPF's mask settles: the mask flips and delta_t = ||x - m x||^2 / ||x||^2 (eq. 6.1) that
every pruning run logs, plotted over training ([Lin22] Fig. 6.4: at 95% sparsity only 5% of the
mask entries still flip late in training).

DPF on configs/masking/cifar10_resnet20.py:cpu (MLP on MNIST-1D, 4,000 signals), 90% and 95%,
the ramp ending at the second decay (75% of the run).

  python reproduce/dpf_mask_flips.py [--epochs 40] [--out reproduce/figures/dpf_mask_flips.png]
"""

import argparse
import contextlib
import io
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from jaxdist import experiment
from jaxdist.experiment import overrides
from jaxdist.experiment.writers import read_metrics

CONFIG = "configs/masking/cifar10_resnet20.py"


def history(sparsity: float, epochs: float) -> list[dict]:
  config = overrides.load(f"{CONFIG}:sparsity={sparsity},cpu")
  config.train.update(num_epochs=epochs, log_every=16)
  config.eval.every_steps = 0
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    experiment.run(config, workdir)
    return read_metrics(workdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=40.0)
  parser.add_argument("--out", default="reproduce/figures/dpf_mask_flips.png")
  args = parser.parse_args()
  fig, (flips_ax, delta_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
  for sparsity in (0.9, 0.95):
    records = history(sparsity, args.epochs)
    steps = [r["step"] for r in records]
    kept = [r["train/masking/flips"] for r in records]
    flips_ax.plot(steps, kept, label=f"{sparsity:.0%}")
    delta_ax.plot(steps, [r["train/masking/delta"] for r in records], label=f"{sparsity:.0%}")
    late = records[int(0.8 * len(records)):]
    print(f"DPF {sparsity:.0%}: mask flips per recompute, mean over the last 20% of the run: "
          f"{sum(r['train/masking/flips'] for r in late) / len(late):.1f} (at the end of the "
          f"ramp: {records[int(0.75 * len(records)) - 1]['train/masking/flips']:.0f}); "
          f"delta_t at the end {records[-1]['train/masking/delta']:.3f}")
  flips_ax.set(title="mask entries flipped per recompute", xlabel="step", yscale="symlog")
  delta_ax.set(title="delta_t = ||x - m x||^2 / ||x||^2", xlabel="step")
  flips_ax.legend(title="target sparsity")
  fig.tight_layout()
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
