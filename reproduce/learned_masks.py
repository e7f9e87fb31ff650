"""Learned binary masks against fine-tuning at CPU scale ([Lin22] ch. 7: Table 7.1, Fig. 7.1).

The MLP 40-256-256-10 is pretrained once on MNIST-1D's ten digits (by default its 40,000-signal
version, 10 epochs), then reused for the parity of the digit (configs/masking/learned_mnist1d.py,
5 epochs on the large set): either all weights are fine-tuned (Adam 1e-3) or the weights stay
frozen and only binary masks are learned (Adam 1e-2 on the scores, a random frozen classifier
masked too), from several initial sparsities. A task then costs its whole model.npz (fp32), or
its masks.npz (one packed bit per masked weight). Reference: a logistic regression trained on the
frozen pretrained features. The thesis's claims (BERT on GLUE & co.): masking matches
fine-tuning (e.g. SST2 93.2 vs 93.3) at ~3% of the fp32 storage; initial sparsity 3-10% works,
1% is slightly worse, larger values get progressively worse.

  python reproduce/learned_masks.py [--seeds 1] [--data mnist1d_large] [--data_dir DIR]
"""

import argparse
import contextlib
import io
import os
import tempfile

import numpy as np
from sklearn.linear_model import LogisticRegression

from jaxdist import experiment
from jaxdist.data import datasets
from jaxdist.experiment import overrides

CONFIG = "configs/masking/learned_mnist1d.py"
EPOCHS = {"mnist1d": (100.0, 30.0), "mnist1d_large": (10.0, 5.0)}  # pretraining, task
ROWS = [  # name, config variant, thesis
    ("fine-tune all weights", "finetune", "SST2 93.3 (BERT); the whole model"),
    ("masks, s0 = 1%", "initial_sparsity=0.01", "slightly below 5% (Fig 7.1)"),
    ("masks, s0 = 5% (default)", "initial_sparsity=0.05", "SST2 93.2 = fine-tuning; ~3% fp32"),
    ("masks, s0 = 15%", "initial_sparsity=0.15", "clearly below 5% (Table 16.4)"),
    ("masks, s0 = 50%", "initial_sparsity=0.5", "much worse (Fig 7.1)"),
    ("masks, s0 = 95%", "initial_sparsity=0.95", "bad (Fig 7.1)"),
]


def run(variant: str, workdir: str, args, seed: int = 0, pretrained: str = "") -> dict:
  """Trains `variant` into `workdir`; adds the bytes a task stores ("bytes": masks.npz if there
  is one, else model.npz) and those of the fp32 model.npz ("fp32_bytes")."""
  config = overrides.load(f"{CONFIG}:{variant}")
  config.data.update(name=args.data, data_dir=args.data_dir)
  config.train.num_epochs = EPOCHS[args.data][variant != "pretrain"]
  config.model.pretrained = pretrained
  config.seed = seed
  with contextlib.redirect_stdout(io.StringIO()):
    result = experiment.run(config, workdir)
  sizes = {name: os.path.getsize(os.path.join(workdir, name))
           for name in ("masks.npz", "model.npz") if os.path.exists(os.path.join(workdir, name))}
  return {**result, "bytes": sizes.get("masks.npz", sizes["model.npz"]),
          "fp32_bytes": sizes["model.npz"]}


def linear_probe(model_path: str, data: str, data_dir: str) -> float:
  """Test accuracy on parity of a logistic regression on the frozen features (the MLP's last
  hidden layer) of the pretrained model."""
  dataset = datasets.relabel(datasets.load(data, data_dir), "parity")
  with np.load(model_path) as saved:
    layers = sorted({k.split("/")[1] for k in saved if k.startswith("params/")})[:-1]
    weights = [(saved[f"params/{n}/kernel"], saved[f"params/{n}/bias"]) for n in layers]

  def features(split):
    x = ((split["input"].astype(np.float32) - dataset.mean) / dataset.std).reshape(
        len(split["label"]), -1)
    for kernel, bias in weights:
      x = np.maximum(x @ kernel + bias, 0.0)
    return x

  probe = LogisticRegression(max_iter=2000).fit(features(dataset.train), dataset.train["label"])
  return probe.score(features(dataset.test), dataset.test["label"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--data", default="mnist1d_large", choices=sorted(EPOCHS))
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as pretrain_dir:
    pretrained = run("pretrain", pretrain_dir, args)
    model_path = os.path.join(pretrain_dir, "model.npz")
    print(f"pretrained on the ten digits of {args.data}: test accuracy "
          f"{100 * pretrained['test/accuracy']:.1f}%; task: parity of the digit, "
          f"{args.seeds} seed(s)\n")
    print(f"{'method':26} {'test acc':>11} {'sparsity':>8} {'stored per task':>21} | "
          "thesis (BERT, Table 7.1 / Fig 7.1)")
    for name, variant, thesis in ROWS:
      results = []
      for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as workdir:
          results.append(run(variant, workdir, args, seed, model_path))
      accuracy = 100 * np.array([r["test/accuracy"] for r in results])
      spread = f" ± {accuracy.std():.1f}" if args.seeds > 1 else ""
      sparsity = results[0].get("train/masking/sparsity")
      sparsity = f"{100 * sparsity:.1f}%" if sparsity is not None else "-"
      stored = results[0]["bytes"]
      print(f"{name:26} {f'{accuracy.mean():.1f}{spread}':>11} {sparsity:>8} {stored:>10,} B "
            f"{100 * stored / results[0]['fp32_bytes']:>6.1f}% | {thesis}", flush=True)
    probe = 100 * linear_probe(model_path, args.data, args.data_dir)
    print(f"{'linear probe, frozen':26} {probe:>11.1f} {'-':>8} {'':>21} | "
          "(reference: a trained classifier on the frozen features)")


if __name__ == "__main__":
  main()
