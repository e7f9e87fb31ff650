"""Simulated local SGD against the way research code often simulates workers: a PyTorch loop.

K worker models (MLP 40-256-256-10 on MNIST-1D-shaped data, SGD with Nesterov momentum 0.9 and
weight decay 1e-4), each stepping on its own batch of B in a Python loop over the workers, their
parameters averaged every H = 4 steps (local SGD), against jaxdist's local SGD as `launch` runs it
(`Simulated(devices=0)`: the workers vmapped, split over 4 CPU devices per core) and against the
one-model limit (one model on the batch of K*B, one device). Examples per second, medians of
chunks of 50 steps after a warm-up; PyTorch gets the faster of one thread and one per core (on a
loaded machine its threads can lose 10x or more). The PyTorch loop runs in a subprocess
(`--torch_python`, by default this interpreter) between the jaxdist measurements of the same
batch size. "one model / PyTorch" is the most any simulation of the K workers could gain.

torch is an optional benchmark dependency (`make bench-torch` installs a CPU build); without it
the PyTorch column is skipped with a message.

  python benchmarks/torch_loop.py [--batch 32 128] [--workers 16] [--torch_python PYTHON]
"""

import argparse
import itertools
import json
import os
import subprocess
import sys

STEPS, LOCAL_STEPS, SIZES = 50, 4, (40, 256, 256, 10)


def torch_loop(workers: int, batch: int, repeats: int) -> float:
  """Examples/s of the PyTorch loop over `workers` models (run under the torch interpreter)."""
  import time

  import torch

  torch.manual_seed(0)

  def model():
    layers = []
    for n_in, n_out in itertools.pairwise(SIZES):
      layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])

  models = [model() for _ in range(workers)]
  for m in models[1:]:
    m.load_state_dict(models[0].state_dict())
  optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=1e-4) for m in models]
  x = torch.randn(STEPS, workers, batch, SIZES[0])
  y = torch.randint(0, SIZES[-1], (STEPS, workers, batch))
  loss_fn = torch.nn.CrossEntropyLoss()

  def chunk():
    for t in range(STEPS):
      for k, (m, opt) in enumerate(zip(models, optimizers)):
        opt.zero_grad(set_to_none=True)
        loss_fn(m(x[t, k]), y[t, k]).backward()
        opt.step()
      if (t + 1) % LOCAL_STEPS == 0:
        with torch.no_grad():
          for params in zip(*(m.parameters() for m in models)):
            mean = torch.stack(params).mean(0)
            for p in params:
              p.copy_(mean)

  chunk()  # warm-up
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    chunk()
    times.append(time.perf_counter() - started)
  times.sort()
  return STEPS * workers * batch / times[len(times) // 2]


def _torch_examples_per_second(python: str, workers: int, batch: int, repeats: int):
  """Runs `torch_loop` in a subprocess; None (and why) when torch is not there."""
  command = [python, __file__, "--torch_part", "--workers", str(workers), "--batch", str(batch),
             "--repeats", str(repeats)]
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode != 0:
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return None, last
  result = json.loads(done.stdout.strip().splitlines()[-1])
  return result["examples_per_second"], f"{result['threads']} thread(s)"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
  parser.add_argument("--workers", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--torch_python", default=sys.executable,
                      help="an interpreter with torch (default: this one)")
  parser.add_argument("--data_dir", default="")
  parser.add_argument("--torch_part", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.torch_part:
    import torch

    rates = {}
    for threads in sorted({1, os.cpu_count() or 1}):  # its best: one thread often wins here
      torch.set_num_threads(threads)
      rates[threads] = torch_loop(args.workers, args.batch[0], args.repeats)
    best = max(rates, key=rates.get)
    print(json.dumps({"examples_per_second": rates[best], "threads": best}))
    return
  devices = 4 * os.cpu_count()  # as launch asks for
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={devices}").strip()
  import jax

  import jaxdist
  from timing import Case, config, measure

  k = args.workers
  print(f"jax {jax.__version__}, {len(jax.devices())} CPU devices; K = {k} workers, local SGD "
        f"H = {LOCAL_STEPS}, MLP 40-256-256-10; examples/s, medians of {args.repeats} chunks "
        f"of {STEPS} steps\n")
  header = (f"{'B':>4} | {'one model K*B':>13} | {'jaxdist local SGD':>17} | "
            f"{'PyTorch loop':>12} | jaxdist / PyTorch | one model / PyTorch | time vs one model")
  print(header)
  print("-" * len(header))
  for batch in args.batch:
    one = Case(config(1, k * batch, "minibatch_sgd", "simulated", args.data_dir), STEPS,
               jaxdist.Simulated())
    local = Case(config(k, batch, "local_sgd", "simulated", args.data_dir), STEPS)
    measure([one, local], args.repeats)
    torch_rate, why = _torch_examples_per_second(args.torch_python, k, batch, args.repeats)
    measure([one, local], args.repeats)  # as many again after it, against a change of load
    ours, limit = 1 / local.seconds_per_example, 1 / one.seconds_per_example
    torch_cells = (f"{torch_rate:>10,.0f}/s | {ours / torch_rate:>16.2f}x | "
                   f"{limit / torch_rate:>18.2f}x" if torch_rate else
                   f"{'-':>12} | {'-':>17} | {'-':>19}")
    threads = f"   (PyTorch on {why})" if torch_rate else ""
    print(f"{batch:>4} | {limit:>11,.0f}/s | {ours:>15,.0f}/s | {torch_cells} | "
          f"{limit / ours:>16.2f}x{threads}", flush=True)
    if torch_rate is None:
      print(f"     PyTorch loop skipped: {args.torch_python} could not run it ({why}); "
            "`make bench-torch` installs torch, or pass --torch_python")


if __name__ == "__main__":
  main()
