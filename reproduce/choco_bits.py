"""CHOCO-SGD against exact and naively compressed D-SGD on logistic regression ([Lin22] §15 T6).

n = 8 workers on a ring share a synthetic w8a-shaped problem (d = 300 sparse binary features,
N = 8,000, logistic loss + (1/2N)||x||^2), split once either at random (the thesis's setup) or
sorted by label (heterogeneous). Every method runs plain SGD from x0 = 0 with the same step size,
batch of 16 per worker and sample order: exact D-SGD (fp32 gossip); CHOCO-SGD with top-1%,
top-10%, sign and 4-bit qsgd, its consensus step gamma tuned on a grid; naive compressed D-SGD,
x_i += sum_j w_ij (Q(x_j) - Q(x_i)) after the local step, with the same compressors. Reported per
method: bits per iteration; iterations and megabytes sent per worker until the averaged model
stays within --target of f* (f(x_bar) - f* <= target from then on; f* by L-BFGS); after the last
step the gap of x_bar, the mean gap of the workers' own models and the consensus distance Xi.

The Table 4.1 baselines on the random split, same compressors (qsgd unbiased for DCD and ECD,
the form their analysis assumes): DCD-PSGD and ECD-PSGD (Tang et al. 2018a), DeepSqueeze (its
gamma tuned on a grid of small values, Table 13.3).

The thesis's claim (T6, Thm 4.5.1; Table 4.1 on CIFAR-10): CHOCO-SGD reaches the loss of exact
D-SGD in about as many iterations with far fewer bits; naive compressed gossip stalls (T4);
DCD-PSGD diverges with the coarsest compressors (qsgd2, random 10%/1%), ECD-PSGD with most,
DeepSqueeze trails CHOCO everywhere.

  python reproduce/choco_bits.py [--target 0.005] [--steps 2000] [--lr 1.0]
                                 [--splits random sorted]
"""

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jax import lax

import jaxdist
from jaxdist import collectives, compression, topology
from jaxdist.communication.gossip import Gossip, consensus_distance
from jaxdist.core.workers import PER_WORKER, SHARED, simulated

N_WORKERS, N, D, BATCH = 8, 8000, 300, 16
DEEPSQUEEZE_GAMMAS = (0.005, 0.02, 0.05)
COMPRESSORS = [  # name, compressor, gamma grid
    ("top-1%", compression.TopK(0.01), (0.01, 0.02, 0.04, 0.08)),
    ("top-10%", compression.TopK(0.1), (0.1, 0.2, 0.4, 0.8)),
    ("sign", compression.Sign(), (0.2, 0.4, 0.8, 1.0)),
    ("qsgd 4-bit", compression.QSGD(4), (0.2, 0.4, 0.8, 1.0)),
]


def w8a_shaped(seed=0):
  """Sparse binary features (a few frequent, many rare; ~12 active per row) and +-1 labels from a
  noisy sparse linear model, 10% positive."""
  rng = np.random.default_rng(seed)
  frequency = np.minimum(0.5, 2.0 / np.sqrt(1 + np.arange(D)))
  frequency *= 12 / frequency.sum()
  a = (rng.random((N, D)) < rng.permutation(frequency)).astype(np.float32)
  score = a @ (rng.normal(size=D) * (rng.random(D) < 0.5)) + rng.logistic(size=N)
  b = np.where(score > np.quantile(score, 0.9), 1.0, -1.0).astype(np.float32)
  return a, b


def objective(x, a, b, lam):
  return jnp.mean(jnp.logaddexp(0.0, -b * (a @ x))) + 0.5 * lam * jnp.sum(x * x)


def optimum(a, b, lam) -> float:
  """f* by L-BFGS in float64."""
  a, b = a.astype(np.float64), b.astype(np.float64)

  def f(x):
    margins = -b * (a @ x)
    sigma = 0.5 * (1 + np.tanh(0.5 * margins))
    return (np.mean(np.logaddexp(0.0, margins)) + 0.5 * lam * x @ x,
            -(a.T @ (b * sigma)) / len(b) + lam * x)

  result = scipy.optimize.minimize(f, np.zeros(D), jac=True, method="L-BFGS-B",
                                   options={"maxiter": 20_000, "ftol": 1e-16, "gtol": 1e-12})
  return float(result.fun)


@jaxdist.state_class
class NaiveState:
  step: jax.Array = jaxdist.shared()
  params: jax.Array = jaxdist.per_worker()


class NaiveCompressedDSGD:
  """Baseline only: the local SGD step, then gossip on compressed models,
  x_i <- x_i + sum_j w_ij (Q(x_j) - Q(x_i)). It keeps the mean but loses what Q drops."""

  def __init__(self, loss_fn, learning_rate: float, gossip: Gossip,
               compressor: compression.Compressor):
    self.loss_fn, self.learning_rate = loss_fn, learning_rate
    self.gossip, self.compressor = gossip, compressor

  def init(self, params, model_state, rng):
    del model_state, rng
    return NaiveState(jnp.zeros((), jnp.int32), params)

  def step(self, state, batch, rng):
    grads = jax.grad(lambda x: self.loss_fn(x, {}, batch, None)[0])(state.params)
    half = state.params - self.learning_rate * grads
    sent = self.compressor(half, rng)
    params = half + self.gossip.mix(sent, state.step) - sent
    bits = self.gossip.neighbours(state.step) * self.compressor.message_bits(D)
    return NaiveState(state.step + 1, params), {
        "comm/bits_sent": bits.astype(jnp.float32),
        "consensus/distance": consensus_distance(params)}

  def deployed(self, state):
    return state.params, {}


def make_loss(lam):
  def loss(x, model_state, batch, rng):
    del rng
    return objective(x, batch["a"], batch["b"], lam), (model_state, {})
  return loss


def library_algorithm(loss, lr, compressor=None, consensus_step=None):
  """The library's D-SGD (no compressor) or CHOCO-SGD on a ring, on plain SGD."""
  ring = topology.ring(N_WORKERS)
  if compressor is None:
    return jaxdist.dsgd(loss, optax.sgd, learning_rate=lr, topology=ring)
  return jaxdist.choco_sgd(loss, optax.sgd, learning_rate=lr, topology=ring,
                           compressor=compressor, consensus_step=consensus_step)


def trajectory(algorithm, workers, indices, a, b, lam):
  """The record of a run: f(x_bar) after every step, cumulative bits sent per worker, the
  final consensus distance, and the final workers' models."""

  def per_worker(indices, a, b):
    def body(state, inputs):
      t, i = inputs
      rng = jax.random.fold_in(jax.random.PRNGKey(t), collectives.index())
      state, metrics = algorithm.step(state, {"a": a[i], "b": b[i]}, rng)
      return state, (collectives.mean(state.params), collectives.mean(metrics["comm/bits_sent"]),
                     metrics["consensus/distance"])

    state = algorithm.init(jnp.zeros(D), {}, jax.random.PRNGKey(0))
    state, record = lax.scan(body, state, (jnp.arange(indices.shape[0]), indices))
    return record, state.params

  run = jax.jit(workers.map(per_worker, in_axes=(1, SHARED, SHARED),
                            out_axes=(SHARED, PER_WORKER)))
  (averaged, bits, distance), final = run(indices, a, b)
  f = jax.jit(jax.vmap(objective, in_axes=(0, None, None, None)))
  return {"values": np.asarray(f(averaged, a, b, lam)),
          "bits": np.cumsum(np.asarray(bits, np.float64)), "distance": float(distance[-1]),
          "local": float(np.mean(f(final, a, b, lam)))}


def iterations_to(result, f_star, target):
  """Iterations after which f(x_bar) - f* stays <= target to the end, or None."""
  above = np.flatnonzero(~(result["values"] - f_star <= target))  # NaN counts as above
  if not len(above):
    return 1
  return int(above[-1]) + 2 if above[-1] + 1 < len(result["values"]) else None


def tuned(results, f_star, target):
  """The (gamma, result) reaching the target first; if none does, the lowest final gap."""
  def key(item):
    t = iterations_to(item[1], f_star, target)
    final = item[1]["values"][-1]
    return (t is None, t or 0, final if np.isfinite(final) else np.inf)
  return min(results, key=key)


def split_indices(b, split, steps):
  """`[steps, workers, BATCH]` sample indices: a fixed split of the data, each worker sampling
  its shard with replacement."""
  order = (np.argsort(b, kind="stable") if split == "sorted"
           else np.random.default_rng(1).permutation(N))
  shards = order.reshape(N_WORKERS, N // N_WORKERS)
  picks = np.random.default_rng(2).integers(0, N // N_WORKERS, size=(steps, N_WORKERS, BATCH))
  return jnp.asarray(np.take_along_axis(shards[None], picks, axis=2))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--target", type=float, default=0.005)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--lr", type=float, default=1.0)
  parser.add_argument("--splits", nargs="+", choices=("random", "sorted"),
                      default=["random", "sorted"])
  args = parser.parse_args()

  a, b = w8a_shaped()
  lam = 1.0 / N
  f_star = optimum(a, b, lam)
  workers = simulated((N_WORKERS,), ("workers",))
  gossip = Gossip(topology.ring(N_WORKERS))
  loss = make_loss(lam)
  print(f"logistic regression, N = {N}, d = {D}, f* = {f_star:.6f}; ring of {N_WORKERS}, SGD "
        f"lr {args.lr}, batch {BATCH}/worker, {args.steps} steps\ntarget f(x_bar) - f* <= "
        f"{args.target} from then on; bits sent per worker, 1 MB = 8e6 bits")
  summary = {}
  for split in args.splits:
    indices = split_indices(b, split, args.steps)
    data = (workers, indices, jnp.asarray(a), jnp.asarray(b), lam)
    print(f"\n{split} split\n{'method':20} {'gamma':>6} {'kbit/it':>8} {'iters':>6} {'MB':>8} "
          f"{'MB saved':>10} {'gap x_bar':>10} {'gap x_i':>9} {'Xi':>8}")
    exact_mb = None

    def report(name, gamma, result):
      nonlocal exact_mb
      t = iterations_to(result, f_star, args.target)
      mb = result["bits"][t - 1] / 8e6 if t else None
      exact_mb = exact_mb or mb
      hit = f"{t:>6} {mb:>8.3f}" if t else f"{'not reached':>15}"
      fewer = f"{exact_mb / mb:>9.1f}x" if t and exact_mb else f"{'-':>10}"
      print(f"{name:20} {gamma:>6} {result['bits'][-1] / args.steps / 1e3:>8.2f} {hit} {fewer} "
            f"{result['values'][-1] - f_star:>10.2e} {result['local'] - f_star:>9.2e} "
            f"{result['distance']:>8.2e}", flush=True)
      return t

    exact = library_algorithm(loss, args.lr)
    summary[split, "exact"] = report("exact D-SGD (fp32)", "-", trajectory(exact, *data))
    for name, compressor, gammas in COMPRESSORS:
      runs = [(gamma, trajectory(library_algorithm(loss, args.lr, compressor, gamma), *data))
              for gamma in gammas]
      gamma, result = tuned(runs, f_star, args.target)
      summary[split, "choco", name] = report(f"CHOCO {name}", gamma, result)
      naive = NaiveCompressedDSGD(loss, args.lr, gossip, compressor)
      summary[split, "naive", name] = report(f"naive {name}", "-", trajectory(naive, *data))
      if split != "random":
        continue
      unbiased = compression.QSGD(4, unbiased=True) if name.startswith("qsgd") else compressor
      for kind in ("dcd_psgd", "ecd_psgd"):
        baseline = getattr(jaxdist, kind)(loss, optax.sgd, learning_rate=args.lr,
                                          topology=topology.ring(N_WORKERS), compressor=unbiased)
        summary[split, kind, name] = report(f"{kind} {name}", "-",
                                            trajectory(baseline, *data))
      runs = [(gamma, trajectory(jaxdist.deepsqueeze(
          loss, optax.sgd, learning_rate=args.lr, topology=topology.ring(N_WORKERS),
          compressor=compressor, consensus_step=gamma), *data)) for gamma in DEEPSQUEEZE_GAMMAS]
      gamma, result = tuned(runs, f_star, args.target)
      summary[split, "deepsqueeze", name] = report(f"deepsqueeze {name}", gamma, result)

  names = [name for name, _, _ in COMPRESSORS]
  print("\nours:")
  for split in args.splits:
    exact = summary[split, "exact"]
    kinds = ("choco", "naive") + (("dcd_psgd", "ecd_psgd", "deepsqueeze") if split == "random"
                                  else ())
    for kind in kinds:
      reached = [f"{n} {summary[split, kind, n] / exact:.2f}" for n in names
                 if summary[split, kind, n] and exact]
      print(f"  {split:6} {kind}: target held with {len(reached)}/{len(names)} compressors"
            + (f"; iterations vs exact D-SGD: {', '.join(reached)}" if reached else ""))
  print("thesis (T6; Table 4.1, CIFAR-10): CHOCO-SGD matches exact D-SGD per iteration with "
        "every compressor,\n  with 33x (top-1%) or 32x (sign) fewer bits per iteration; naive "
        "compressed gossip stalls (T4);\n  Table 4.1: DCD-PSGD 89.79-92.51 where it converges "
        "(diverges at qsgd2, random 10%/1%), ECD-PSGD diverges\n  or collapses (17-59%) but "
        "at qsgd16, DeepSqueeze 88.55-92.27, CHOCO 91.32-92.54 with every compressor")

if __name__ == "__main__":
  main()
