"""Lever 2 of the simulation speed work: every worker's state as one flat buffer.

Local SGD (H=4, Nesterov SGD 0.9, no weight decay) on the benchmarks' MLP 40-256-256-10, run twice
side by side: on the model's pytree of 6 tensors, and on one flat vector per worker
(`jax.flatten_util.ravel_pytree`; the loss unravels it, so the optimizer update and the
averaging are single passes over a [K, d] buffer, as the PyTorch reference code does with its
flattened tensors). Both simulated on one device and split over `--devices` CPU devices. Prints
the time per chunk of 50 steps, the flat/pytree ratio, and the copy / slice / concatenate
instructions left in each compiled chunk.

  python benchmarks/flat_buffers.py [--batch 32 128] [--workers 8 32] [--devices 8]
"""

import argparse
import collections
import os
import re
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
parser.add_argument("--workers", type=int, nargs="+", default=[8, 32])
parser.add_argument("--repeats", type=int, default=9)
parser.add_argument("--devices", type=int, default=4 * os.cpu_count())
parser.add_argument("--data_dir", default="")
ARGS = parser.parse_args()
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                           f"device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import jaxdist  # noqa: E402
from jaxdist.experiment import Experiment  # noqa: E402
from jaxdist.training.runner import Runner  # noqa: E402
from timing import config  # noqa: E402

STEPS = 50
OPS = ("copy", "slice", "concatenate", "transpose")


class Chunk:
  """A compiled chunk of local SGD on `params` (a pytree or a flat vector)."""

  def __init__(self, experiment, loss_fn, params, model_state, layout):
    optimizer = lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)
    runner = experiment.runner
    self.runner = Runner(jaxdist.local_sgd(loss_fn, optimizer, learning_rate=0.05, local_steps=4),
                         runner.data, grid=runner.grid, layout=layout, steps_per_chunk=STEPS)
    self.state = self.runner.init(params, model_state)
    self.batches = self.runner.batches(0, STEPS)
    self.run()
    text = self.runner._compiled[STEPS].as_text()
    found = collections.Counter(re.findall(r"= \S+ (" + "|".join(OPS) + r")\(", text))
    self.ops = "/".join(str(found[op]) for op in OPS)
    self.times = []

  def run(self) -> float:
    started = time.perf_counter()
    self.state, metrics = self.runner.train(self.state, self.batches)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - started


def main(args):
  print(f"jax {jax.__version__}, {len(jax.devices())} CPU devices; local SGD H=4, MLP "
        f"40-256-256-10; medians of {args.repeats} chunks of {STEPS} steps, in turns.\n"
        f"ops = {'/'.join(OPS)} instructions in the compiled chunk\n")
  header = (f"{'B':>4} {'K':>3} | {'layout':>9} | {'pytree ms':>9} | {'flat ms':>8} | "
            f"{'flat/pytree':>11} | {'ops pytree':>10} | {'ops flat':>9}")
  print(header)
  print("-" * len(header))
  for batch in args.batch:
    for k in args.workers:
      experiment = Experiment(config(k, batch, "local_sgd", "simulated", args.data_dir))
      params, model_state = experiment.initial_model()
      flat, unravel = ravel_pytree(params)

      def flat_loss(vector, model_state, batch, rng):
        return experiment.task.loss(unravel(vector), model_state, batch, rng)

      layouts = {"1 device": jaxdist.Simulated()}
      if k % args.devices == 0:
        layouts[f"/{args.devices}"] = jaxdist.Simulated(devices=args.devices)
      chunks = {}
      for name, layout in layouts.items():
        chunks[name] = (Chunk(experiment, experiment.task.loss, params, model_state, layout),
                        Chunk(experiment, flat_loss, flat, model_state, layout))
      for _ in range(args.repeats):
        for pair in chunks.values():
          for chunk in pair:
            chunk.times.append(chunk.run())
      for name, (tree, vector) in chunks.items():
        t, v = np.median(tree.times) * 1e3, np.median(vector.times) * 1e3
        print(f"{batch:>4} {k:>3} | {name:>9} | {t:>9.1f} | {v:>8.1f} | {v / t:>10.2f}x | "
              f"{tree.ops:>10} | {vector.ops:>9}", flush=True)


if __name__ == "__main__":
  main(ARGS)
