"""Time per iteration of CHOCO-SGD (top-1%) against exact D-SGD, and the bits it sends; time per
epoch on the convex problem against a numpy implementation that loops over the workers.

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

Epoch (`--cases epoch`): reproduce/choco_bits.py's convex problem (w8a-shaped logistic
regression) at d = 200, n = 8 and 16 on a ring, plain SGD, one sample per worker per iteration,
4000 worker-steps an epoch (500 iterations at n = 8), in float32 and float64: plain D-SGD, CHOCO
top-1% and CHOCO qsgd 4-bit. The reference is numpy with a Python loop over the workers (what a
simulation without JAX looks like); ours is one chunk of the library's runner per epoch, compiled
as XLA does by default and with the loop compiled whole (`jaxdist.core.cpu`, a second process).

  python benchmarks/choco_step_time.py [--workers 8 16 64] [--dim 2000] [--steps 50]
                                       [--cases iteration epoch]
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist import compression, topology
from jaxdist.core import cpu

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


EPOCH_WORKER_STEPS, EPOCH_DIM = 4000, 200


def w8a_shaped(dim, size=8000, seed=0):
  """reproduce/choco_bits.py's stand-in for w8a: sparse binary rows, +-1 labels."""
  rng = np.random.default_rng(seed)
  frequency = np.minimum(0.5, 2.0 / np.sqrt(1 + np.arange(dim)))
  frequency *= 12 / frequency.sum()
  a = (rng.random((size, dim)) < rng.permutation(frequency)).astype(np.float64)
  score = a @ (rng.normal(size=dim) * (rng.random(dim) < 0.5)) + rng.logistic(size=size)
  return a, np.where(score > np.quantile(score, 0.9), 1.0, -1.0)


def numpy_epoch(method, a, b, picks, lam, lr, gamma, rng):
  """One epoch in numpy, a Python loop over the workers: D-SGD, or CHOCO-SGD (Alg. 2) with
  top-1% or qsgd 4-bit; ring weights 1/3."""
  steps, n = picks.shape
  dim = a.shape[1]
  x = np.zeros((n, dim))
  xhat, s = np.zeros((n, dim)), np.zeros((n, dim))
  k, levels = max(1, dim // 100), 8
  tau = 1 + min(dim / levels**2, np.sqrt(dim) / levels)
  for t in range(steps):
    if method != "dsgd":
      q = np.empty((n, dim))
      for i in range(n):
        x[i] += gamma * (s[i] - xhat[i])
        v = x[i] - xhat[i]
        if method == "top_k":
          q[i] = 0.0
          kept = np.argpartition(-np.abs(v), k)[:k]
          q[i, kept] = v[kept]
        else:
          norm = np.linalg.norm(v) or 1.0
          level = np.floor(levels * np.abs(v) / norm + rng.random(dim))
          q[i] = norm * np.sign(v) * level / levels / tau
        xhat[i] += q[i]
      for i in range(n):
        s[i] += (q[i - 1] + q[i] + q[(i + 1) % n]) / 3
    half = np.empty((n, dim))
    for i in range(n):
      row, label = a[picks[t, i]], b[picks[t, i]]
      sigma = 1 / (1 + np.exp(label * (row @ x[i])))
      half[i] = x[i] - lr * (-label * sigma * row + lam * x[i])
    if method == "dsgd":
      x = np.stack([(half[i - 1] + half[i] + half[(i + 1) % n]) / 3 for i in range(n)])
    else:
      x = half
  return x


class EpochCase:
  """One epoch of the library's runner on the convex problem."""

  def __init__(self, method, n, dtype, a, b, picks, lam, lr, gamma):
    def loss(params, model_state, batch, rng):
      del rng
      margin = batch["b"] * (batch["a"] @ params)
      value = jnp.mean(jnp.logaddexp(0.0, -margin)) + 0.5 * lam * jnp.sum(params * params)
      return value, (model_state, {})

    common = dict(learning_rate=lr, topology=topology.ring(n), measure_consensus=False)
    if method == "dsgd":
      algorithm = jaxdist.dsgd(loss, optax.sgd, **common)
    else:
      compressor = compression.TopK(0.01) if method == "top_k" else compression.QSGD(4)
      algorithm = jaxdist.choco_sgd(loss, optax.sgd, compressor=compressor,
                                    consensus_step=gamma, **common)
    steps = picks.shape[0]
    a, b = a.astype(dtype), b.astype(dtype)
    data = jaxdist.data.from_function(
        lambda t, i: {"a": a[picks[t % steps, i]][None], "b": b[picks[t % steps, i]][None]})
    self.runner = jaxdist.Runner(algorithm, data, num_workers=n, steps_per_chunk=steps)
    self.state = self.runner.init(jnp.zeros(a.shape[1], dtype))
    self.batches = self.runner.batches(0, steps)
    self.times = []
    self.run()  # compile and warm up

  def run(self):
    started = time.perf_counter()
    self.state, metrics = self.runner.train(self.state, self.batches)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - started


def measure_epochs(workers, repeats):
  """{(n, method): {"numpy": ms, "float32": ms, "float64": ms}}, medians of epochs in turns."""
  a, b = w8a_shaped(EPOCH_DIM)
  lam, lr, gammas = 1 / len(b), 0.5, {"dsgd": None, "top_k": 0.04, "qsgd": 0.4}
  rows = {}
  for n in workers:
    picks = np.random.default_rng(n).integers(0, len(b), size=(EPOCH_WORKER_STEPS // n, n))
    for method, gamma in gammas.items():
      ours = {}
      for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
          ours[dtype] = EpochCase(method, n, np.dtype(dtype), a, b, picks, lam, lr, gamma)
      reference = []
      for _ in range(repeats):
        for dtype, case in ours.items():
          with jax.enable_x64(dtype == "float64"):
            case.times.append(case.run())
        started = time.perf_counter()
        numpy_epoch(method, a, b, picks, lam, lr, gamma, np.random.default_rng(0))
        reference.append(time.perf_counter() - started)
      rows[f"{n} {method}"] = {"numpy": 1e3 * float(np.median(reference)),
                               **{d: 1e3 * float(np.median(c.times)) for d, c in ours.items()}}
  return rows


def epoch_cases(workers, repeats):
  """The epochs as XLA compiles them by default (this process), then with small loops compiled
  whole (a second process: the flag is read when JAX starts)."""
  print(f"\nEpoch on the convex problem: d = {EPOCH_DIM}, ring, one sample per worker per "
        f"iteration, {EPOCH_WORKER_STEPS} worker-steps; medians of {repeats} epochs, taken in "
        "turns with the numpy reference.\ndefault: XLA's compilation; whole loop: "
        f"jaxdist.core.cpu.compile_small_loops_whole() ({cpu.SMALL_LOOP_BYTES:,} bytes), run "
        "right after in a second process, beside its own numpy timing.\n")
  default = measure_epochs(workers, repeats)
  env = dict(os.environ, XLA_FLAGS=cpu.small_loop_flags(os.environ.get("XLA_FLAGS", "")))
  child = subprocess.run(
      [sys.executable, __file__, "--cases", "epoch_json", "--repeats", str(repeats),
       "--epoch_workers", *map(str, workers)], env=env, capture_output=True, text=True, check=True)
  whole = json.loads(child.stdout.splitlines()[-1])
  header = (f"{'n':>3} {'method':>6} | {'numpy ms':>11} | {'fp32 ms default':>15} {'faster':>7} "
            f"| {'whole loop':>10} {'faster':>7} | {'fp64 ms default':>15} {'faster':>7} | "
            f"{'whole loop':>10} {'faster':>7}")
  print(header)
  print("-" * len(header))
  for key, ours in default.items():
    n, method = key.split()
    other = whole[key]
    cells = []
    for dtype in ("float32", "float64"):
      cells.append(f"{ours[dtype]:>15.2f} {ours['numpy'] / ours[dtype]:>6.1f}x | "
                   f"{other[dtype]:>10.2f} {other['numpy'] / other[dtype]:>6.1f}x")
    print(f"{n:>3} {method:>6} | {ours['numpy']:>5.1f}/{other['numpy']:<5.1f} | "
          + " | ".join(cells), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[8, 16, 64])
  parser.add_argument("--epoch_workers", type=int, nargs="+", default=[8, 16])
  parser.add_argument("--dim", type=int, default=2000)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--cases", nargs="+", choices=("iteration", "epoch", "epoch_json"),
                      default=["iteration", "epoch"], help="epoch_json: the epochs of this "
                      "process only, as one line of JSON")
  args = parser.parse_args()
  if args.cases == ["epoch_json"]:
    print(json.dumps(measure_epochs(args.epoch_workers, args.repeats)))
    return
  if "iteration" in args.cases:
    iteration_cases(args)
  if "epoch" in args.cases:
    epoch_cases(args.epoch_workers, args.repeats)


def iteration_cases(args):
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
