"""Plots training curves from workdirs.

  python -m jaxdist.experiment.plot WORKDIR [WORKDIR ...] --out F.png
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from jaxdist.experiment.writers import read_metrics

PANELS = (("train/loss", "training loss"), ("train/accuracy", "training accuracy"),
          ("test/accuracy", "test accuracy"))


def plot(workdirs: list[str], out: str) -> None:
  """One panel per metric, one line per workdir, against the number of samples seen."""
  fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
  for workdir in workdirs:
    records = read_metrics(workdir)
    label = os.path.basename(os.path.normpath(workdir))
    for ax, (name, title) in zip(axes, PANELS):
      points = [(r["samples"], r[name]) for r in records if name in r]
      if points:
        ax.plot(*zip(*points), marker="o" if name.startswith("test") else None, label=label)
      ax.set_title(title)
      ax.set_xlabel("samples seen")
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(out, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default="curves.png")
  args = parser.parse_args()
  plot(args.workdirs, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
