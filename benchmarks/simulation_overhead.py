"""Cost of simulating K workers: time per training example against one model on the same batch.

K workers with batch B do the FLOPs of one model on a batch of K*B; the ratio
  (time per example, K simulated workers) / (time per example, one model on K*B)
is the engine's overhead. Measured after compilation on the jitted training chunk that `launch`
runs (MLP 40-256-256-10 on MNIST-1D, Nesterov SGD with weight decay), batches already on the device:
local SGD (H=4) and mini-batch SGD with the K workers vmapped on one device, both simulated
the way `launch` does on CPU (`Simulated(devices=0)`: split over 4 CPU devices per core, vmapped
within each), and local SGD over 8 devices (shard_map). The one model runs on one device, its
products on every core; "one model /cores" is mini-batch SGD with the batch split over one device
per core (data parallel), the other way one model could use them. Compile times last.

  python benchmarks/simulation_overhead.py [--batch 32 128] [--workers 1 8 32] [--devices 8]
"""

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
parser.add_argument("--repeats", type=int, default=9)
parser.add_argument("--devices", type=int, default=4 * os.cpu_count(),
                    help="CPU devices the simulated workers are split over (as launch: 4 per core)")
parser.add_argument("--data_dir", default="")
ARGS = parser.parse_args()
MESH = 8
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                           f"device_count={max(MESH, ARGS.devices, os.cpu_count())}").strip()

import jax  # noqa: E402

import jaxdist  # noqa: E402
from timing import Case, config, measure  # noqa: E402

STEPS = 50


def main(args):
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} devices, "
        f"simulated workers over {args.devices}; MLP 40-256-256-10 on MNIST-1D, Nesterov SGD; "
        f"medians of {args.repeats} chunks of {STEPS} steps, taken in turns.\nratio = time per "
        "example / that of one model on the same total batch K*B (mini-batch SGD, one device)\n")
  columns = {"one/cores": "one model /cores", "local1": "local H=4, 1 dev",
             "local": f"local H=4 /{args.devices}", "minibatch1": "mini-batch, 1 dev",
             "minibatch": f"mini-batch /{args.devices}",
             "mesh": f"local, shard_map x{MESH}"}
  header = (f"{'B':>4} {'K':>3} | {'one model':>10} | " +
            " | ".join(f"{t:>16}" for t in columns.values()) + " | compile s")
  print(header)
  print("-" * len(header))
  one_device, spread = jaxdist.Simulated(), jaxdist.Simulated(devices=args.devices)
  cores = os.cpu_count()
  for batch in args.batch:
    for k in args.workers:
      def case(*settings, layout=None):
        return Case(config(*settings, args.data_dir), STEPS, layout)

      cases = {"one": case(1, k * batch, "minibatch_sgd", "simulated", layout=one_device)}
      if batch * k % cores == 0:
        cases["one/cores"] = case(cores, k * batch // cores, "minibatch_sgd", "simulated",
                                  layout=jaxdist.Simulated(devices=cores))
      cases["local1"] = case(k, batch, "local_sgd", "simulated", layout=one_device)
      cases["minibatch1"] = case(k, batch, "minibatch_sgd", "simulated", layout=one_device)
      if k % args.devices == 0:
        cases["local"] = case(k, batch, "local_sgd", "simulated", layout=spread)
        cases["minibatch"] = case(k, batch, "minibatch_sgd", "simulated", layout=spread)
      if k % MESH == 0 and args.devices != MESH:  # the same program as local /8 otherwise
        cases["mesh"] = case(k, batch, "local_sgd", "shard_map")
      measure(list(cases.values()), args.repeats)
      one = cases["one"].seconds_per_example

      def cell(name):
        if name not in cases:
          return f"{'-':>16}"
        seconds = cases[name].seconds_per_example
        return f"{1 / seconds:>9,.0f}/s {seconds / one:>4.2f}x".rjust(16)

      compiles = "/".join(f"{c.compile_seconds:.1f}" for c in cases.values())
      print(f"{batch:>4} {k:>3} | {1 / one:>8,.0f}/s | " + " | ".join(map(cell, columns)) +
            f" | {compiles}", flush=True)


if __name__ == "__main__":
  main(ARGS)
