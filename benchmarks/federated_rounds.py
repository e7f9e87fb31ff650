"""Rounds per second of a vmapped cohort against a Python loop over jitted clients, and the memory
of 1,000 registered clients.

100 clients on MNIST-1D (4,000 signals, an i.i.d. split of 40 each), 10 a round, 1 local epoch
of plain SGD (batch 10, 4 steps), the MLP 40-256-256-10 (and 40-32-10, where the clients' compute
is small beside the cost of a call):

* jaxdist: `federated.fedavg` on the library's runner, rounds in one jitted chunk, the cohort
  vmapped; the host gathers each round's cohort (timed);
* the per-client way of simulators: for every client of the round, its data gathered, one
  jitted call of the same local training, then the weighted average jitted.

Both include the gathering on the host; medians of timed repeats taken in turns after warm-up,
`block_until_ready`. Then 1,000 clients registered on MNIST-1D's 40,000 signals: peak resident
memory of the process before and after 20 rounds, beside the bytes one round gathers.

  python benchmarks/federated_rounds.py [--rounds 20] [--repeats 5] [--data_dir DIR]
"""

import argparse
import resource
import time

import jax
import numpy as np

import jaxdist
from jaxdist import federated
from jaxdist.data import datasets


def peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(name, num_clients, cohort, data_dir, hidden=(256, 256)):
  dataset = datasets.load(name, data_dir)
  order = np.random.default_rng(0).permutation(len(dataset.train["label"]))
  clients = np.array_split(order, num_clients)
  data = federated.ClientData(dataset.train, clients, cohort_size=cohort)
  model = jaxdist.models.build("mlp", dataset.input_shape, dataset.num_classes, hidden=hidden)
  task = jaxdist.classification(model)
  algorithm = federated.fedavg(task.loss, learning_rate=0.05, batch_size=10, epochs=1)
  return data, model, algorithm


def vmapped(data, model, algorithm, rounds):
  runner = jaxdist.Runner(algorithm, data, steps_per_chunk=rounds)
  params, model_state = model.init(jax.random.PRNGKey(0))
  state = runner.init(params, model_state)
  state, _ = runner.run(state, rounds)  # compiles

  def timed():
    nonlocal state
    started = time.perf_counter()
    state, metrics = runner.run(state, rounds)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - started

  return timed


def python_loop(data, model, algorithm, rounds):
  params, model_state = model.init(jax.random.PRNGKey(0))
  train = jax.jit(lambda p, s, batch, key: algorithm.client.train(p, s, batch, key)[0])
  average = jax.jit(lambda models, weights: jax.tree.map(
      lambda *xs: sum(w * x for w, x in zip(weights, xs)) / sum(weights), *models))
  position = [0]

  def one_round(params):
    r = position[0]
    position[0] += 1
    models, weights = [], []
    for client in data.cohort(r):
      batch = data.client(int(client))
      models.append(train(params, model_state, batch, jax.random.PRNGKey(r)))
      weights.append(batch["count"])
    return average(models, weights)

  params = jax.block_until_ready(one_round(params))  # compiles

  def timed():
    nonlocal params
    started = time.perf_counter()
    for _ in range(rounds):
      params = one_round(params)
    jax.block_until_ready(params)
    return time.perf_counter() - started

  return timed


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--data_dir", default="")
  args = parser.parse_args()
  for hidden in ((256, 256), (32,)):
    data, model, algorithm = setup("mnist1d", 100, 10, args.data_dir, hidden)
    ours, loop = (vmapped(data, model, algorithm, args.rounds),
                  python_loop(data, model, algorithm, args.rounds))
    times = {"ours": [], "loop": []}
    for _ in range(args.repeats):  # in turns, so that the load of the machine hits both
      times["ours"].append(ours())
      times["loop"].append(loop())
    rate = {k: args.rounds / float(np.median(v)) for k, v in times.items()}
    widths = "-".join(str(w) for w in (40, *hidden, 10))
    print(f"MLP {widths}, 100 clients, 10 a round, 1 local epoch: vmapped cohort "
          f"{rate['ours']:.1f} rounds/s, Python loop over jitted clients {rate['loop']:.1f} "
          f"rounds/s: {rate['ours'] / rate['loop']:.2f}x", flush=True)

  before = peak_mb()
  data, model, algorithm = setup("mnist1d_large", 1000, 10, args.data_dir)
  registered = peak_mb()
  vmapped(data, model, algorithm, args.rounds)()
  after = peak_mb()
  one_round = sum(x.nbytes for x in jax.tree.leaves(data.batches(0, 1, range(10))))
  held = sum(x.nbytes for x in data.arrays.values())
  print(f"1,000 registered clients (40,000 signals, {held / 2**20:.1f} MiB on the host): peak "
        f"resident memory {before:.0f} MiB before, {registered:.0f} MiB registered, "
        f"{after:.0f} MiB after {args.rounds} rounds ({args.rounds} rounds of 10 clients "
        f"gathered, {one_round / 2**10:.0f} KiB a round)")


if __name__ == "__main__":
  main()
