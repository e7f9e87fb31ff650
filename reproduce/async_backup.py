"""Stragglers and backup workers (spec check 6 [S3 L1449-1469]; Chen et al. 2016 [ext]).

Worker times are i.i.d. Exp(1). A synchronous step waits for the slowest of N: E = H_N (3.38 for
N = 16); with b backup workers the server takes the first N of N + b, and a step waits
H_{N+b} - H_b (2.00 for b = 2, 1.51 for b = 4). Measured here as the mean `time/step` of
`jaxdist.asynchrony.backup_sgd` over 400 steps on 16 + b simulated workers. Every step uses N
gradients at the same x_t, so the loss per step is that of synchronous SGD on N workers and the
model time to reach a loss falls with the wait: least squares (d = 20), a target of 1.1 times the
noise floor.

  python reproduce/async_backup.py      (about a minute on two CPU cores)
"""

import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist import asynchrony

N, STEPS = 16, 400


def loss_fn(params, model_state, batch, rng):
  del rng
  value = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
  return value, (model_state, {"loss": value})


def main():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20000, 20)).astype(np.float32)
  y = (x @ rng.normal(size=20) + 0.3 * rng.normal(size=20000)).astype(np.float32)
  floor = 0.09  # the noise variance
  params = {"w": jnp.zeros(20)}
  print(f"N = {N}, Exp(1) times; target loss {1.1 * floor:.3f} (1.1 x the noise floor)")
  print(f"{'b':>3} {'wait':>7} {'H_N+b - H_b':>12} {'steps to target':>16} "
        f"{'time to target':>15} {'final loss':>11}")
  for b in (0, 1, 2, 4, 8):
    algorithm = asynchrony.backup_sgd(loss_fn, optax.sgd, learning_rate=0.02, num_backup=b)
    data = jaxdist.data.sampled({"x": x, "y": y}, num_workers=N + b, batch_size=4, seed=1,
                                replacement=True)
    runner = jaxdist.Runner(algorithm, data, seed=2, steps_per_chunk=STEPS)
    _, metrics = runner.run(runner.init(params, {}), STEPS)
    # a step's loss is the mean over all N + b workers' batches at x_t: the same x_t for all
    losses, clock = np.asarray(metrics["loss"]), np.asarray(metrics["time/total"])
    hit = int(np.argmax(losses < 1.1 * floor)) if (losses < 1.1 * floor).any() else None
    steps = "-" if hit is None else str(hit + 1)
    when = "-" if hit is None else f"{clock[hit]:.1f}"
    print(f"{b:>3} {np.mean(metrics['time/step']):7.3f} {asynchrony.expected_wait(N, b):12.3f} "
          f"{steps:>16} {when:>15} {losses[-50:].mean():11.4f}")
  print(f"\nno backup, N = 16 alone: H_16 = {asynchrony.expected_wait(16, 0):.2f} (source 3.38); "
        f"b = 2: {asynchrony.expected_wait(16, 2):.2f} (2.00); b = 4: "
        f"{asynchrony.expected_wait(16, 4):.2f} (1.51)")


if __name__ == "__main__":
  main()
