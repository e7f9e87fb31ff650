"""The staleness a parameter server sees (spec check 5): P workers with i.i.d. compute times, each
reading the version when it starts and pushing when it ends, on the seeded discrete-event
simulator. Prediction [derived]: with identical workers the mean staleness is about P - 1; heavy
tails (log-normal) raise the maximum far above P, which is why bounded-delay theory is
optimistic. In fact the mean tends to P - 1 for every distribution: each push adds one to the
staleness of the P - 1 computations then in flight, so the staleness sums to P - 1 per update
(less the computations still in flight at the end); only the spread and the tail change.

  python reproduce/async_staleness.py      (about a minute on two CPU cores)
"""

import jax.numpy as jnp
import optax

from jaxdist import asynchrony


def loss(params, batch):  # the clock does not depend on the model: a scalar one suffices
  return jnp.mean((params["w"] - batch) ** 2)


def data(index, worker):
  del worker
  return jnp.sin(index.astype(jnp.float32))[None]


def measure(num_workers, compute_time, updates=10000):
  sim = asynchrony.async_ps(loss, optax.sgd(0.01), data, num_workers=num_workers,
                            compute_time=compute_time, reduction="mean")
  waves = max(50, 4 * updates // num_workers)  # waves hold about P/4 .. P updates
  _, trace = sim.run(sim.init({"w": jnp.zeros(())}), waves)
  return asynchrony.staleness_summary(trace)


def main():
  print(f"{'times':>24} {'P':>3} {'updates':>8} {'mean':>7} {'P - 1':>6} {'p99':>6} {'max':>5}")
  models = {"exponential": asynchrony.Exponential(), "constant": asynchrony.Constant(),
            "lognormal sigma=1": asynchrony.LogNormal(sigma=1.0),
            "lognormal sigma=2": asynchrony.LogNormal(sigma=2.0),
            "straggler x10 (worker 0)": asynchrony.Straggler(asynchrony.Exponential(),
                                                             slowdown=10.0)}
  for name, model in models.items():
    for p in (2, 4, 8, 16, 32):
      s = measure(p, model)
      print(f"{name:>24} {p:>3} {s['updates']:>8} {s['staleness/mean']:7.2f} {p - 1:>6} "
            f"{s['staleness/p99']:6.0f} {s['staleness/max']:>5}")


if __name__ == "__main__":
  main()
