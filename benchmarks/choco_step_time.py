"""Time per iteration of CHOCO-SGD (top-1%) against exact D-SGD, and the bits it sends.

Logistic regression (d features + bias, synthetic binary labels) on n workers in a ring, batch 32
per worker, Nesterov SGD; each worker runs the local step and one gossip round per iteration.
Workers are simulated on one device (vmap) or spread over 8 fake CPU devices (shard_map). Each
timed call is one chunk of the library's runner, one jitted lax.scan of --steps iterations; the
time per iteration is the median over --repeats calls (taken in turns) divided by --steps. The
consensus distance is not measured (measure_consensus=False): it is an extra all-reduce that
neither method needs.

Bits: the `comm/bits_sent` metric in one round (the runner's mean over the workers, who all send
the same on a ring), and the count by hand for top-1%: per tensor
2 * 32 * max(1, floor(size / 100)) bits (values and indices), to 2 ring neighbours.

  python benchmarks/choco_step_time.py [--workers 8 16 64] [--dim 2000] [--steps 50]
"""

import argparse
import functools
import os
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist import compression, topology

BATCH, CYCLE = 32, 4  # per-worker batch; distinct batches per worker, cycled through
NESTEROV = functools.partial(jaxdist.optim.sgd, momentum=0.9, nesterov=True, weight_decay=1e-4)
LAYOUTS = {"simulated": jaxdist.Simulated(), "shard_map": jaxdist.Sharded()}


def logistic_loss(params, model_state, batch, rng):
  del rng
  logits = batch["x"] @ params["w"] + params["b"]
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["y"]))
  return loss, (model_state, {"loss": loss})


def analytic_bits(params):
  """Top-1% CHOCO message to each of the 2 ring neighbours."""
  return 2 * sum(2 * 32 * max(1, x.size // 100) for x in jax.tree.leaves(params))


class Case:
  """One algorithm on n workers: the runner's chunk, compiled, with its state and batches on the
  devices."""

  def __init__(self, name, n, backend, dim, steps):
    common = dict(learning_rate=0.1, topology=topology.ring(n), measure_consensus=False)
    if name == "choco_sgd":
      algorithm = jaxdist.choco_sgd(logistic_loss, NESTEROV, compressor=compression.TopK(0.01),
                                    consensus_step=0.1, **common)
    else:
      algorithm = jaxdist.dsgd(logistic_loss, NESTEROV, **common)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(CYCLE, n, BATCH, dim)).astype(np.float32)
    y = (x @ rng.normal(size=dim) > 0).astype(np.float32)
    data = jaxdist.data.from_function(
        lambda t, k: {"x": x[t % CYCLE, k], "y": y[t % CYCLE, k]})
    self.runner = jaxdist.Runner(algorithm, data, num_workers=n, layout=LAYOUTS[backend],
                                 steps_per_chunk=steps)
    self.params = {"w": jnp.zeros(dim), "b": jnp.zeros(())}
    self.state, self.batches = self.runner.init(self.params), self.runner.batches(0, steps)
    self.compile_seconds = self.runner.compile(
        self.runner.abstract_state(self.params),
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                     self.batches))
    self.steps, self.times = steps, []
    self.run()  # warm-up
    bits = np.asarray(self.metrics["comm/bits_sent"])  # [steps], averaged over the workers
    assert np.all(bits == bits[0]) and np.isfinite(self.metrics["loss"]).all()
    self.bits = int(bits[0])

  def run(self):
    started = time.perf_counter()
    self.state, self.metrics = self.runner.train(self.state, self.batches)
    jax.block_until_ready((self.state, self.metrics))
    return time.perf_counter() - started

  @property
  def ms_per_step(self):
    return 1e3 * float(np.median(self.times)) / self.steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[8, 16, 64])
  parser.add_argument("--dim", type=int, default=2000)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} devices, "
        f"{os.cpu_count()} cores; logistic regression d={args.dim}, batch {BATCH}/worker, ring; "
        f"medians of {args.repeats} scans of {args.steps} steps, taken in turns.\n"
        "vs base: time per iteration / CHOCO's at the first n simulated; per worker: the same "
        "for time / n;\nxD-SGD: CHOCO's time / D-SGD's on the same n and backend. "
        "bits: per worker per round, measured | by hand.\n")
  header = (f"{'n':>3} {'backend':>9} | {'CHOCO ms/it':>11} {'vs base':>7} {'per worker':>10} | "
            f"{'D-SGD ms/it':>11} {'xD-SGD':>6} | {'CHOCO bits':>16} {'equal':>5} "
            f"{'D-SGD bits':>10} | compile s")
  print(header)
  print("-" * len(header))
  base = None
  for n in args.workers:
    cases = {(name, backend): Case(name, n, backend, args.dim, args.steps)
             for backend in ("simulated", "shard_map") for name in ("choco_sgd", "dsgd")}
    for _ in range(args.repeats):
      for case in cases.values():
        case.times.append(case.run())
    for backend in ("simulated", "shard_map"):
      choco, dsgd = cases["choco_sgd", backend], cases["dsgd", backend]
      base = base or (choco.ms_per_step, n)
      by_hand = analytic_bits(choco.params)
      print(f"{n:>3} {backend:>9} | {choco.ms_per_step:>11.3f} "
            f"{choco.ms_per_step / base[0]:>6.2f}x "
            f"{choco.ms_per_step / n / (base[0] / base[1]):>9.2f}x | {dsgd.ms_per_step:>11.3f} "
            f"{choco.ms_per_step / dsgd.ms_per_step:>5.2f}x | {choco.bits:>7,} | {by_hand:>6,} "
            f"{choco.bits == by_hand!s:>5} {dsgd.bits:>10,} | "
            f"{choco.compile_seconds:.1f}/{dsgd.compile_seconds:.1f}", flush=True)


if __name__ == "__main__":
  main()
