"""Batch-size rules against fixed-batch SGD, and ATOMO's time per step ([Sievert] §3.1-3.3).

1. Model updates and wall time until 91% test accuracy, an MLP (64 hidden) on scikit-learn's
   digits, Nesterov SGD lr 0.05: fixed B = 16 and B = 256, GeoDamp (16 -> 256, x2 every
   2 epochs) and RADADAMP (16 -> 256, rho 0.99); evaluated every 10 updates; wall time of the
   training calls only (compiled beforehand), and the number of programs compiled while the
   batch grows.
2. Time per step of mini-batch SGD with compressed gradients (`jaxdist.compressed_sgd`), an MLP
   64-256-256-10, 4 simulated workers x 64 examples: dense, QSGD 4-bit, 1-bit QSGD, TernGrad,
   entry-wise ATOMO (s = 512) and spectral ATOMO (s = 2, with its SVDs). Medians of 5 chunks of
   20 steps after a warm-up, taken in turns.

  python benchmarks/batching_rules.py
"""

import functools
import time

import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

import jaxdist
from jaxdist import batching
from jaxdist.communication import atomo, compression

TARGET = 0.91


def digits():
  x, y = load_digits(return_X_y=True)
  x, y = (x / 16).astype(np.float32), y.astype(np.int32)
  return ({"input": x[:1500], "label": y[:1500]},
          {"input": x[1500:], "label": y[1500:], "mask": np.ones(len(y) - 1500, np.float32)})


def rules_to_target():
  train, test = digits()
  model = jaxdist.models.build("mlp", (64,), 10, hidden=(64,))
  task = jaxdist.classification(model)
  params, _ = model.init(jax.random.PRNGKey(0))
  accuracy = jax.jit(lambda p: task.evaluate(p, {}, test)["accuracy"] / len(test["label"]))
  sgd = functools.partial(jaxdist.optim.sgd, momentum=0.9, nesterov=True)
  rules = {"fixed B=16": (batching.Constant(16), 16),
           "fixed B=256": (batching.Constant(256), 256),
           "GeoDamp 16->256": (batching.GeoDamp(16, 256, factor=2.0, delay=2.0), 256),
           "RADADAMP 16->256": (batching.RadaDamp(16, 256, rho=0.99), 256)}
  print(f"1. until {TARGET:.0%} test accuracy (digits, MLP), every 10 updates")
  print(f"{'rule':>18} {'updates':>8} {'epochs':>7} {'seconds':>8} {'programs':>9}")
  out = {}
  for name, (rule, cap) in rules.items():
    trainer = batching.AdaptiveBatchSGD(task.loss, train, rule, optimizer=sgd,
                                        learning_rate=0.05, max_batch=cap, micro_batch=16)
    state = trainer.init(params)
    jax.block_until_ready(trainer.run(state, 10))  # compile
    seconds = 0.0
    while int(state.updates) < 3000:
      started = time.perf_counter()
      state, _ = trainer.run(state, 10)
      jax.block_until_ready(state.params)
      seconds += time.perf_counter() - started
      if float(accuracy(state.params)) >= TARGET:
        break
    out[name] = (int(state.updates), seconds)
    print(f"{name:>18} {int(state.updates):>8} {int(state.examples) / 1500:>7.1f} "
          f"{seconds:>8.2f} {trainer.compile_count():>9}")
  base_updates, base_seconds = out["fixed B=16"]
  for name in ("GeoDamp 16->256", "RADADAMP 16->256"):
    updates, seconds = out[name]
    print(f"   {name}: {base_updates / updates:.2f}x fewer updates than fixed B=16, wall time "
          f"{seconds / base_seconds:.2f}x its (one device computes every update's examples in "
          "turn, through the fixed-capacity scan; the time per update a growing worker count "
          "would give is what `variable_workers` models)")


def atomo_step_time():
  x, y = load_digits(return_X_y=True)
  data = {"input": (x / 16).astype(np.float32), "label": y.astype(np.int32)}
  model = jaxdist.models.build("mlp", (64,), 10, hidden=(256, 256))
  task = jaxdist.classification(model)
  params, _ = model.init(jax.random.PRNGKey(0))
  compressors = {"dense": compression.Identity(), "QSGD 4-bit": atomo.qsgd(4),
                 "1-bit QSGD": atomo.one_bit_qsgd(), "TernGrad": atomo.terngrad(),
                 "ATOMO entries s=512": atomo.Atomo(512), "ATOMO spectral s=2":
                 atomo.Atomo(2, "spectral")}
  cases = {}
  for name, compressor in compressors.items():
    runner = jaxdist.Runner(jaxdist.compressed_sgd(task.loss, optax.sgd, learning_rate=0.1,
                                                   compressor=compressor),
                            jaxdist.data.sampled(data, num_workers=4, batch_size=64),
                            steps_per_chunk=20)
    state, batches = runner.init(params), runner.batches(0, 20)
    state, _ = runner.train(state, batches)  # warm-up
    cases[name] = [runner, state, batches, [], compressor.tree_bits(params)]
  for _ in range(5):
    for case in cases.values():
      runner, state, batches, times, _ = case
      started = time.perf_counter()
      state, metrics = runner.train(state, batches)
      jax.block_until_ready((state, metrics))
      times.append((time.perf_counter() - started) / 20)
      case[1] = state
  dense = np.median(cases["dense"][3])
  print("\n2. compressed mini-batch SGD, time per step (MLP 64-256-256-10, 4 workers x 64)")
  print(f"{'compressor':>22} {'ms/step':>8} {'x dense':>8} {'bits/worker':>12}")
  for name, (_, _, _, times, bits) in cases.items():
    print(f"{name:>22} {1e3 * np.median(times):>8.2f} {np.median(times) / dense:>8.2f} "
          f"{bits:>12,.0f}")


if __name__ == "__main__":
  rules_to_target()
  atomo_step_time()
