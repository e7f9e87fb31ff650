"""DPF against one-shot pruning on a strongly convex problem ([Lin22] Thm 6.5.1, check T14).

Least squares f(x) = ||A x - b||^2 / 2n + lam ||x||^2 / 2, d = 40, n = 400, features isotropic or
correlated, the optimum dense (Gaussian) or compressible (20% large entries). DPF as
`jaxdist.objectives.Pruning("dpf", ...)` builds it: the gradient at m * x applied to the dense
x, one magnitude mask recomputed every 16 steps on a cubic ramp to the target at step 400,
gamma_t = min(1/L, 4 / (mu (t + 2))), 1500 full-batch steps. Printed: f of DPF's pruned model,
f of the optimum pruned once by magnitude (no fine-tuning), and the mask entries that still flip
in the last 400 steps. The thesis's prediction: DPF's pruned model is better than one-shot
pruning of the solution, and its mask settles (flips -> 0).

  python reproduce/dpf_convex.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdist import models
from jaxdist.objectives import masking, tasks

D, N, STEPS, LAM = 40, 400, 1500, 0.1


def problem(correlated: bool, compressible: bool, sparsity: float, seed: int = 0):
  rng = np.random.default_rng(seed)
  mixing = np.eye(D) + (0.3 * rng.normal(size=(D, D)) if correlated else 0)
  a = rng.normal(size=(N, D)) @ mixing
  a = (a / np.sqrt(np.mean(a**2))).astype(np.float32)
  x = rng.normal(size=D) * (0.3 if compressible else 1.0)
  if compressible:
    big = rng.choice(D, round((1 - sparsity) * D), replace=False)
    x[big] = 3 * rng.normal(size=big.size)
  return a, (a @ x).astype(np.float32)[:, None]


def compare(correlated: bool, compressible: bool, sparsity: float) -> tuple[float, float, int]:
  a, b = problem(correlated, compressible, sparsity)

  def loss(params, state, batch, rng):
    w = params["w"]
    value = 0.5 * jnp.mean((batch["input"] @ w - batch["label"])**2) + 0.5 * LAM * jnp.sum(w**2)
    return value, (state, {"loss": value})

  pruning = masking.Pruning("dpf", sparsity, 16, 400, 1, prune_classifier=True)
  model, task, deployed = pruning.wrap(models.Model(lambda rng: ({"w": jnp.zeros((D, 1))}, {}),
                                                    None), tasks.Task(loss, None))
  params, state = model.init(None)
  mu, smooth = np.linalg.eigvalsh(a.T @ a / N + LAM * np.eye(D))[[0, -1]]

  def step(carry, t):
    params, state = carry
    batch = {"input": a, "label": b, "step": t}
    grads, (state, metrics) = jax.grad(task.loss, has_aux=True)(params, state, batch, None)
    rate = jnp.minimum(1 / smooth, 4 / (mu * (t + 2)))
    return (jax.tree.map(lambda x, g: x - rate * g, params, grads), state), metrics

  (params, state), metrics = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(STEPS)))(
      (params, state))
  flips = np.asarray(metrics["masking/flips"])[::16][-400 // 16:].sum()
  f = lambda w: float(loss({"w": jnp.asarray(w)}, {}, {"input": a, "label": b}, None)[0])
  optimum = np.linalg.solve(a.T @ a / N + LAM * np.eye(D), a.T @ b / N)
  one_shot = optimum * (np.abs(optimum) > np.sort(np.abs(optimum).ravel())[round(sparsity * D) - 1])
  return f(deployed(params, state)[0]["w"]), f(one_shot), int(flips)


def main():
  print(f"{'features':>10} {'optimum':>12} {'sparsity':>8} | {'DPF pruned f':>12} "
        f"{'one-shot f':>10} {'flips, last 400 steps':>22}")
  for correlated in (False, True):
    for compressible in (False, True):
      for sparsity in (0.8, 0.9):
        dpf, one_shot, flips = compare(correlated, compressible, sparsity)
        print(f"{'correlated' if correlated else 'isotropic':>10} "
              f"{'compressible' if compressible else 'dense':>12} {sparsity:>8.0%} | "
              f"{dpf:>12.3f} {one_shot:>10.3f} {flips:>22}", flush=True)


if __name__ == "__main__":
  main()
