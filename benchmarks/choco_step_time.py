"""Time per iteration of CHOCO-SGD (top-1%) against exact D-SGD, and the bits it sends.

Logistic regression (d features + bias, synthetic binary labels) on n workers in a ring, batch 32
per worker, Nesterov SGD; each worker runs the local step and one gossip round per iteration.
Workers are simulated on one device (vmap) or spread over 8 fake CPU devices (shard_map). Each
timed call is one jitted lax.scan of --steps iterations; the time per iteration is the median
over --repeats calls (taken in turns) divided by --steps. The consensus distance is not measured
(algo.measure_consensus=False): it is an extra all-reduce that neither method needs.

Bits: the `comm/bits_sent` metric of one worker in one round, and the count by hand for top-1%:
per tensor 2 * 32 * max(1, floor(size / 100)) bits (values and indices), to 2 ring neighbours.

  python benchmarks/choco_step_time.py [--workers 8 16 64] [--dim 2000] [--steps 50]
"""

import argparse
import os
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxdist import algorithms, recipes
from jaxdist.config import default
from jaxdist.train import compiler_options
from jaxdist.workers import SHARED, make_workers

BATCH, CYCLE = 32, 4  # per-worker batch; distinct batches per worker, cycled through


def logistic_loss(params, model_state, batch, rng):
  del rng
  logits = batch["x"] @ params["w"] + params["b"]
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["y"]))
  return loss, (model_state, {"loss": loss})


def analytic_bits(params):
  """Top-1% CHOCO message to each of the 2 ring neighbours."""
  return 2 * sum(2 * 32 * max(1, x.size // 100) for x in jax.tree.leaves(params))


class Case:
  """One algorithm on n workers, compiled, with its state and data on the devices."""

  def __init__(self, name, n, backend, dim, steps):
    config = default()
    config.algo.update(name=name, compressor="top_k", compress_fraction=0.01, consensus_step=0.1,
                       measure_consensus=False)
    config.topology.name = "ring"
    config.workers.update(num_workers=n, backend=backend)
    config.optim.update(schedule="constant")
    workers = make_workers((n,), ("workers",), backend)
    lr = optax.constant_schedule(0.1)
    run = algorithms.Run(config, lr, global_batch=n * BATCH, train_size=10**6, total_steps=10**6)
    algorithm = algorithms.build(run, logistic_loss, recipes.optimizer(config.optim, lr),
                                 workers.comm)
    axes, comm = algorithm.state_axes, workers.comm

    def chunk(state, data, key):
      def body(state, t):
        batch = jax.tree.map(lambda a: a[t % CYCLE], data)
        rng = jax.random.fold_in(jax.random.fold_in(key, state.step), comm.index())
        return algorithm.step(state, batch, rng)
      return lax.scan(body, state, jnp.arange(steps))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(CYCLE, n, BATCH, dim)).astype(np.float32)
    y = (x @ rng.normal(size=dim) > 0).astype(np.float32)
    data = jax.device_put({"x": x, "y": y}, workers.shardings(1, {"x": x, "y": y}))
    self.params = {"w": jnp.zeros(dim), "b": jnp.zeros(())}
    init = jax.jit(workers.map(algorithm.init, in_axes=SHARED, out_axes=axes),
                   compiler_options=compiler_options())
    self.state = init(self.params, {}, jax.random.PRNGKey(1))
    self.args = (data, jax.device_put(jax.random.PRNGKey(2), workers.shardings(SHARED, 0)))
    started = time.perf_counter()
    self.step = jax.jit(workers.map(chunk, in_axes=(axes, 1, SHARED), out_axes=(axes, 1)),
                        donate_argnums=0, compiler_options=compiler_options()
                        ).lower(self.state, *self.args).compile()
    self.compile_seconds = time.perf_counter() - started
    self.steps, self.times = steps, []
    self.run()  # warm-up
    bits = np.asarray(self.metrics["comm/bits_sent"])  # [steps, n]
    assert np.all(bits == bits[0, 0]) and np.isfinite(self.metrics["loss"]).all()
    self.bits = int(bits[0, 0])

  def run(self):
    started = time.perf_counter()
    self.state, self.metrics = self.step(self.state, *self.args)
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
