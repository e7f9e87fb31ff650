"""Asynchronous updates per second, measured side by side (medians after warm-up).

1. The seeded simulator (`jaxdist.asynchrony.async_ps`: waves of workers' gradients in one
   vmapped call, the whole run one jitted scan) against a Python event loop doing the same
   simulation the way research code does: a heap of finish times, a jitted gradient step called
   per worker per event and a jitted server update. Goal: >= 10x.
2. The real threaded runner (`ThreadedAsyncSGD`, one thread per device, no barrier) against
   synchronous SGD on the same devices (`sync_ps` over a `Sharded` mesh), in gradients applied per
   second. On a CPU the devices are simulated (8 fake devices over the same cores), so this says
   what the host-side overheads cost, not what a real multi-accelerator machine would gain.

The problem: softmax regression on 64 features and 10 classes, batches of 32. The machine is
shared and loaded: only ratios measured in the same run mean anything.

  python benchmarks/async_updates.py
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import heapq
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist import asynchrony

P, BATCH, WAVES, REPEATS = 8, 32, 500, 5
rng = np.random.default_rng(0)
X = rng.normal(size=(4096, 64)).astype(np.float32)
Y = rng.integers(0, 10, size=4096).astype(np.int32)
DATA = asynchrony.sampler({"x": X, "y": Y}, BATCH, seed=0)
PARAMS = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}


def loss(params, batch):
  logits = batch["x"] @ params["w"] + params["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def simulated(sim, state):
  started = time.perf_counter()
  state, trace = sim.run(state, WAVES)
  jax.block_until_ready(state)
  return time.perf_counter() - started, int(np.sum(trace["updates"])), state


def event_loop(updates, tx, compute_time, key):
  """The same simulation in Python: one jitted gradient call per worker per event."""
  grad = jax.jit(lambda p, i, w: jax.grad(loss)(p, DATA(i, w)))
  apply = jax.jit(lambda p, o, g: (lambda u, o: (optax.apply_updates(p, u), o))(
      *tx.update(g, o, p)))
  draw = jax.jit(lambda w, c: asynchrony.compute_time.draw(compute_time, key, w, c))
  params, opt_state = PARAMS, tx.init(PARAMS)
  reads = [params] * P
  heap = [(float(draw(w, 0)), w) for w in range(P)]
  heapq.heapify(heap)
  counts = [1] * P
  started = time.perf_counter()
  for j in range(updates):
    at, w = heapq.heappop(heap)
    g = grad(reads[w], j, w)
    params, opt_state = apply(params, opt_state, g)
    reads[w] = params
    heapq.heappush(heap, (at + float(draw(w, counts[w])), w))
    counts[w] += 1
  jax.block_until_ready(params)
  return time.perf_counter() - started


def main():
  print(f"devices: {jax.device_count()} ({jax.devices()[0].platform}); P = {P} workers")
  tx, times = optax.sgd(0.05), asynchrony.Exponential()
  sim = asynchrony.async_ps(loss, tx, DATA, num_workers=P, compute_time=times, reduction="sum")
  state = sim.init(PARAMS, seed=0)
  simulated(sim, state)  # compile
  sims = [simulated(sim, state)[:2] for _ in range(REPEATS)]
  sim_rate = float(np.median([n / s for s, n in sims]))
  updates = sims[0][1]
  event_loop(20, tx, times, state.key)  # compile
  loop_rate = float(np.median([updates / event_loop(updates, tx, times, state.key)
                               for _ in range(REPEATS)]))
  print(f"1. simulated asynchronous updates/s: simulator {sim_rate:,.0f}, Python event loop "
        f"{loop_rate:,.0f}: {sim_rate / loop_rate:.1f}x (goal >= 10x; {updates} updates in "
        f"{WAVES} waves)")

  devices = jax.devices()[:P]
  threaded = asynchrony.ThreadedAsyncSGD(loss, 0.05, DATA, devices=devices)
  host_params = jax.tree.map(np.asarray, PARAMS)
  threaded.run(host_params, 50)  # warm-up
  runs = [threaded.run(host_params, 2000) for _ in range(REPEATS)]
  thread_rate = float(np.median([r.updates_per_second for r in runs]))
  staleness = np.concatenate([r.staleness for r in runs])

  def sync_loss(params, model_state, batch, rng):
    del rng
    value = loss(params, batch)
    return value, (model_state, {"loss": value})

  data = jaxdist.data.sampled({"x": X, "y": Y}, num_workers=P, batch_size=BATCH, seed=0)
  runner = jaxdist.Runner(asynchrony.sync_ps(sync_loss, optax.sgd, learning_rate=0.05,
                                             reduction="mean"),
                          data, layout=jaxdist.Sharded(P), seed=0, steps_per_chunk=50)
  run_state = runner.init(PARAMS, {})
  batches = runner.batches(0, 50)
  run_state, _ = runner.train(run_state, batches)  # compile
  rates = []
  for _ in range(REPEATS):
    started = time.perf_counter()
    run_state, metrics = runner.train(run_state, batches)
    jax.block_until_ready(metrics)
    rates.append(50 * P / (time.perf_counter() - started))
  sync_rate = float(np.median(rates))
  print(f"2. gradients applied/s on {P} devices: threaded asynchronous {thread_rate:,.0f} "
        f"(staleness mean {staleness.mean():.2f}, max {staleness.max()}), synchronous SGD "
        f"{sync_rate:,.0f} ({P} per step): threaded / sync = {thread_rate / sync_rate:.2f}")


if __name__ == "__main__":
  main()
