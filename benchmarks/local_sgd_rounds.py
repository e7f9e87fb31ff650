"""Communication rounds and time to a target accuracy: mini-batch, local and post-local SGD.

K = 16 simulated workers x 16 on MNIST-1D (40,000 signals), MLP, the CPU-scale setup of
configs/local_sgd/cifar10_resnet20.py. A method reaches the target at the first evaluation (every
50 steps) whose test accuracy is at least --target. Time is the training time measured on this
machine, where all workers share one device: it shows the cost of simulating, not the saving of
communication, which the rounds column counts.

  python benchmarks/local_sgd_rounds.py [--target 0.85] [--data_dir DIR]
"""

import argparse
import contextlib
import io
import tempfile

from jaxdist import experiment
from jaxdist.experiment import overrides
from jaxdist.experiment.writers import read_metrics

METHODS = [("mini-batch SGD", "algo=minibatch_sgd"), ("local SGD, H = 2", "algo=local_sgd,H=2"),
           ("local SGD, H = 4", "algo=local_sgd,H=4"), ("local SGD, H = 16", "algo=local_sgd,H=16"),
           ("post-local SGD, H = 16", "algo=post_local_sgd,H=16")]


def to_target(variant: str, target: float, data_dir: str):
  """(rounds, samples, training seconds) at the first evaluation reaching `target`, or None."""
  config = overrides.load(f"configs/local_sgd/cifar10_resnet20.py:{variant},cpu")
  config.data.update(name="mnist1d_large", data_dir=data_dir)
  config.train.update(num_epochs=30.0, log_every=50)
  config.eval.every_steps = 50
  with tempfile.TemporaryDirectory() as workdir:
    with contextlib.redirect_stdout(io.StringIO()):
      experiment.run(config, workdir)
    seconds, samples = 0.0, 0
    for record in read_metrics(workdir):
      seconds += (record["samples"] - samples) / record["perf/examples_per_second"]
      samples = record["samples"]
      if record["test/accuracy"] >= target:
        return record["comm/rounds"], samples, seconds
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--target", type=float, default=0.85)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"target test accuracy {args.target:.0%}; K = 16, B_loc = 16, MNIST-1D, MLP\n")
  print(f"{'method':24} {'rounds':>7} {'x fewer':>8} {'samples':>10} {'train s':>8} "
        f"{'time ratio':>10}")
  base = None
  for name, variant in METHODS:
    result = to_target(variant, args.target, args.data_dir)
    if result is None:
      print(f"{name:24} {'target not reached':>45}")
      continue
    rounds, samples, seconds = result
    base = base or (rounds, seconds)
    print(f"{name:24} {rounds:>7.0f} {base[0] / rounds:>7.1f}x {samples:>10,} {seconds:>8.1f} "
          f"{seconds / base[1]:>9.2f}x", flush=True)


if __name__ == "__main__":
  main()
