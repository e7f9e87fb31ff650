"""Cost of masking: time per training step of pruning and learned masks against the dense step.

The same model (MLP 40-256-256-10 on MNIST-1D), batch and optimizer (Nesterov SGD) in every case;
only config.masking differs: DPF at 90% sparsity with the mask recomputed every 16 steps (the
thesis's default) or every step (the worst case), incremental pruning (every 16), and learned
masks over a saved model (scores instead of weights, one threshold per weight and step). Mini-batch
SGD with K workers simulated on one device, global batch K*B fixed. Measured after compilation on
the jitted training chunk that `launch` runs, batches already on the device, cases taken in turns.
The thesis (Fig 15.6): DPF's overhead, a global magnitude threshold every 16 steps, is trivial.

  python benchmarks/masking_overhead.py [--batch 128] [--workers 1 8] [--repeats 15]
"""

import argparse
import os
import tempfile

import jax

from jaxdist import models
from jaxdist.experiment.config import default
from timing import Case, measure

STEPS = 64  # a multiple of 16: every chunk holds the same number of mask recomputes
CASES = [  # name, masking.name, masking.recompute_every
    ("dense", "none", 16), ("DPF /16", "dpf", 16), ("DPF /1", "dpf", 1),
    ("incremental /16", "incremental", 16), ("learned masks", "learned", 16)]


def _config(num_workers, batch, masking, every, pretrained, data_dir):
  config = default()
  config.algo.name = "minibatch_sgd"
  config.workers.num_workers = num_workers
  config.data.update(name="mnist1d_large", batch_size=batch // num_workers, data_dir=data_dir)
  config.optim.update(base_lr=0.05, lr_scaling="none", schedule="constant")
  config.train.update(num_steps=10**6, log_every=STEPS)
  # ramp_end=0: the target sparsity from the start (a schedule has no cost of its own)
  config.masking.update(name=masking, sparsity=0.9, recompute_every=every, ramp_end=0.0)
  config.model.pretrained = pretrained if masking == "learned" else ""
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128, help="global batch K*B")
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; MLP 40-256-256-10 on MNIST-1D, "
        f"Nesterov SGD, global batch {args.batch}, 90% sparsity; medians of {args.repeats} chunks "
        f"of {STEPS} steps, taken in turns.\nms per step and ratio to the dense step; /16: mask "
        "recomputed every 16 steps; recompute: the time of one mask recomputation (DPF /1 "
        "against DPF /16)\n")
  header = (f"{'K':>3} {'B':>4} | " + " | ".join(f"{name:>15}" for name, _, _ in CASES) +
            " | recompute | compile s")
  print(header)
  print("-" * len(header))
  with tempfile.TemporaryDirectory() as tmp:
    pretrained = os.path.join(tmp, "model.npz")
    for k in args.workers:
      cases = []
      for _, masking, every in CASES:
        cases.append(Case(_config(k, args.batch, masking, every, pretrained, args.data_dir),
                          STEPS))
        if not os.path.exists(pretrained):  # the weights learned masks freeze: a fresh dense init
          models.save(pretrained, *cases[0].experiment.model.init(jax.random.PRNGKey(0)))
      measure(cases, args.repeats)
      base = cases[0].seconds_per_step
      cells = " | ".join(f"{1e3 * c.seconds_per_step:>6.2f} ms {c.seconds_per_step / base:>4.2f}x"
                         for c in cases)
      # one mask recompute: what recomputing every step adds over every 16th, per recompute
      recompute = (cases[2].seconds_per_step - cases[1].seconds_per_step) * 16 / 15
      compiles = "/".join(f"{c.compile_seconds:.1f}" for c in cases)
      print(f"{k:>3} {args.batch // k:>4} | {cells} | {1e3 * recompute:>6.2f} ms | {compiles}",
            flush=True)


if __name__ == "__main__":
  main()
