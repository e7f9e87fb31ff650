"""Cost of simulating K workers: time per training example against one model on the same batch.

K workers with batch B do the FLOPs of one model on a batch of K*B; the ratio
  (time per example, K simulated workers) / (time per example, one model on K*B)
is the engine's overhead. Measured after compilation on the jitted training chunk that `launch`
runs (MLP 40-256-256-10 on MNIST-1D, Nesterov SGD with weight decay), batches already on the device:
local SGD (H=4) and mini-batch SGD with K workers simulated on one device (vmap), and local SGD
with the K workers spread over 8 fake CPU devices (shard_map). Compile times in the last column
(one model / local / mini-batch / shard_map).

  python benchmarks/simulation_overhead.py [--batch 32 128] [--workers 1 8 32]
"""

import argparse
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax

from jaxdist.experiment.config import default
from timing import Case, measure

STEPS = 50


def _config(num_workers, batch, algorithm, backend, data_dir):
  config = default()
  config.algo.update(name=algorithm, local_steps=4)
  config.workers.update(num_workers=num_workers, backend=backend)
  config.data.update(name="mnist1d_large", batch_size=batch, data_dir=data_dir)
  config.optim.update(base_lr=0.05, lr_scaling="none", schedule="constant")
  config.train.update(num_steps=10**6, log_every=STEPS)
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} devices; "
        f"MLP 40-256-256-10 on MNIST-1D, Nesterov SGD; medians of {args.repeats} chunks of "
        f"{STEPS} steps, taken in turns.\nratio = time per example / that of one model on the "
        "same total batch K*B (mini-batch SGD)\n")
  header = (f"{'B':>4} {'K':>3} | {'one model':>10} | {'local SGD H=4':>16} | "
            f"{'mini-batch SGD':>16} | {'local, shard_map x8':>19} | compile s")
  print(header)
  print("-" * len(header))
  for batch in args.batch:
    for k in args.workers:
      case = lambda *settings: Case(_config(*settings, args.data_dir), STEPS)
      cases = {"one": case(1, k * batch, "minibatch_sgd", "simulated"),
               "local": case(k, batch, "local_sgd", "simulated"),
               "minibatch": case(k, batch, "minibatch_sgd", "simulated")}
      if k % 8 == 0:
        cases["mesh"] = case(k, batch, "local_sgd", "shard_map")
      measure(list(cases.values()), args.repeats)
      one = cases["one"].seconds_per_example

      def cell(name, width):
        if name not in cases:
          return f"{'-':>{width}}"
        seconds = cases[name].seconds_per_example
        return f"{1 / seconds:>9,.0f}/s {seconds / one:>4.2f}x".rjust(width)

      compiles = "/".join(f"{c.compile_seconds:.1f}" for c in cases.values())
      print(f"{batch:>4} {k:>3} | {1 / one:>8,.0f}/s | {cell('local', 16)} | "
            f"{cell('minibatch', 16)} | {cell('mesh', 19)} | {compiles}", flush=True)


if __name__ == "__main__":
  main()
