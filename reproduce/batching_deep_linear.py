"""The deep-linear experiment of [Sievert] §3.1.4 (S0 L836-860, App. B.3) and Lemma 4's variance
identity (S0 L783-785, L2039-2049).

Deep linear model: min (1/n) sum_i (y_i - w1^T W2 W3 x_i)^2 with d = 100, n = 10,000 (2,000
test), x ~ N(0, I), y = x^T w* + N(0, d/100), PyTorch-style uniform(+-1/sqrt(d)) initialisation,
gamma = 2.5e-3. Compared, by model updates and examples until the test loss is within 5% of the
linear least-squares test loss:
* adaptive: the oracle rule B_k = ceil(B_0 (F(w_0) - F*) / (F(w_k) - F*)), B_0 = 2, F* the
  least-squares training loss, its full-data loss charged apart (`full/examples`);
* SGD: B = 64, gamma_k = 10 gamma / k (the thesis's decaying rate);
* GD: the full gradient every update.
The thesis: adaptive needs about as few updates as GD and about as many examples as SGD. We
assert the update counts only (examples depend on the constants, S0 §2.5 pitfall 2).

Lemma 4: at a fixed model, the minibatch gradient drawn with replacement has
E||g_B - grad F||^2 = (M^2 - ||grad F||^2) / B, M^2 = (1/n) sum_i ||grad f_i||^2, which for the
oracle's B is at most (F(w) - F*) M^2 / c.

  python reproduce/batching_deep_linear.py [--seeds 2]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist import batching

D, N, N_TEST, GAMMA, TARGET = 100, 10_000, 2_000, 2.5e-3, 1.05


def problem(seed):
  rng = np.random.default_rng(seed)
  w_star = rng.normal(size=D)
  x = rng.normal(size=(N + N_TEST, D)).astype(np.float32)
  y = (x @ w_star + rng.normal(size=N + N_TEST) * np.sqrt(D / 100)).astype(np.float32)
  bound = 1 / np.sqrt(D)
  params = {"w1": rng.uniform(-bound, bound, D), "w2": rng.uniform(-bound, bound, (D, D)),
            "w3": rng.uniform(-bound, bound, (D, D))}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  train, test = {"x": x[:N], "y": y[:N]}, {"x": x[N:], "y": y[N:]}
  solution, *_ = np.linalg.lstsq(train["x"], train["y"], rcond=None)
  optimum = float(np.mean((train["x"] @ solution - train["y"])**2))
  erm_test = float(np.mean((test["x"] @ solution - test["y"])**2))
  return train, test, params, optimum, erm_test


def predict(params, x):
  return x @ params["w3"].T @ params["w2"].T @ params["w1"]


def loss_fn(params, model_state, batch, rng):
  del rng
  loss = jnp.mean((predict(params, batch["x"]) - batch["y"])**2)
  return loss, (model_state, {"loss": loss})


def until_target(trainer, params, test_loss, goal, max_updates):
  state = trainer.init(params)
  while int(state.updates) < max_updates:
    state, _ = trainer.run(state, 1)
    if test_loss(state.params) <= goal:
      break
  return int(state.updates), int(state.examples), int(state.full_examples)


def gradient_descent(train, params, test_loss, goal, max_updates):
  grad = jax.jit(jax.grad(lambda p: loss_fn(p, {}, train, None)[0]))
  for k in range(1, max_updates + 1):
    params = jax.tree.map(lambda p, g: p - GAMMA * g, params, grad(params))
    if test_loss(params) <= goal:
      return k, k * N
  return max_updates, max_updates * N


def lemma_4(train, optimum, samples=2000):
  """Monte Carlo E||g_B - grad F||^2 against (M^2 - ||grad F||^2) / B and Lemma 4's bound, for
  the linear least-squares loss of the same data at w = 0."""
  x, y = train["x"].astype(np.float64), train["y"].astype(np.float64)
  grads = 2 * (0 - y)[:, None] * x  # grad of (w^T x_i - y_i)^2 at w = 0
  full = grads.mean(0)
  m2 = float(np.mean(np.sum(grads**2, 1)))
  gap = float(np.mean(y**2)) - optimum
  rng = np.random.default_rng(0)
  print("\nLemma 4 (linear least squares, w = 0): E||g_B - grad F||^2, drawn with replacement")
  print(f"{'B':>5} {'Monte Carlo':>12} {'(M^2-|gF|^2)/B':>15} {'bound gap M^2/c':>16}")
  for b in (2, 8, 32, 128):
    errors = [np.sum((grads[rng.integers(0, N, size=b)].mean(0) - full)**2)
              for _ in range(samples)]
    mc, exact = float(np.mean(errors)), (m2 - full @ full) / b
    c = b * gap  # the oracle's B = c / (F - F*)
    print(f"{b:>5} {mc:>12.4g} {exact:>15.4g} {gap * m2 / c:>16.4g}")
    assert abs(mc / exact - 1) < 0.1 and exact <= gap * m2 / c


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, default=2)
  args = parser.parse_args()
  print(f"deep linear d = {D}, n = {N}: updates / examples until test loss <= {TARGET} x the "
        "least-squares test loss")
  rows = []
  for seed in range(args.seeds):
    train, test, params, optimum, erm_test = problem(seed)
    test_loss = jax.jit(lambda p, test=test: loss_fn(p, {}, test, None)[0])
    goal = TARGET * erm_test
    adaptive = batching.AdaptiveBatchSGD(loss_fn, train, batching.Oracle(2, optimum=optimum),
                                         learning_rate=GAMMA, max_batch=N, micro_batch=500,
                                         seed=seed)
    sgd = batching.AdaptiveBatchSGD(loss_fn, train, batching.Constant(64),
                                    learning_rate=lambda k: 10 * GAMMA / (k + 1),
                                    max_batch=64, micro_batch=64, seed=seed)
    a_up, a_ex, a_full = until_target(adaptive, params, test_loss, goal, 2000)
    s_up, s_ex, _ = until_target(sgd, params, test_loss, goal, 20_000)
    g_up, g_ex = gradient_descent(train, params, test_loss, goal, 2000)
    rows.append((a_up, s_up, g_up))
    print(f"seed {seed}: adaptive {a_up} updates, {a_ex:,} examples (+{a_full:,} for the "
          f"oracle's full loss) | SGD {s_up} updates, {s_ex:,} examples | GD {g_up} updates, "
          f"{g_ex:,} examples")
  a, s, g = (np.array(c) for c in zip(*rows))
  print(f"\nmedian updates: adaptive {np.median(a):.0f}, SGD {np.median(s):.0f}, GD "
        f"{np.median(g):.0f} (a numpy pilot: 89-97, 538-707, 49; thesis Fig. 3.2: adaptive "
        "close to GD, far below SGD)")
  assert np.all(a < 0.3 * s) and np.all(a < 3 * g)
  lemma_4(train, optimum)


if __name__ == "__main__":
  main()
