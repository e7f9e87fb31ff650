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


def dpf(a, b, sparsity: float, decay_on_dense: bool) -> tuple[float, int]:
  """(f of DPF's pruned model, mask flips in the last 400 steps). The ridge term is either in the
  loss, so its gradient is taken at the pruned model like the data term's, or weight decay on the
  dense x, as SGD's weight decay acts on the dense weights in the thesis's runs."""
  def loss(params, state, batch, rng, ridge=not decay_on_dense):
    w = params["w"]
    value = 0.5 * jnp.mean((batch["input"] @ w - batch["label"])**2)
    value = value + 0.5 * LAM * jnp.sum(w**2) if ridge else value
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
    if decay_on_dense:
      grads = jax.tree.map(lambda g, x: g + LAM * x, grads, params)
    return (jax.tree.map(lambda x, g: x - rate * g, params, grads), state), metrics

  (params, state), metrics = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(STEPS)))(
      (params, state))
  flips = np.asarray(metrics["masking/flips"])[::16][-400 // 16:].sum()
  return objective(a, b, deployed(params, state)[0]["w"]), int(flips)


def objective(a, b, w) -> float:
  w = np.asarray(w, np.float64)
  return float(0.5 * np.mean((a @ w - b)**2) + 0.5 * LAM * np.sum(w**2))


def compare(correlated: bool, compressible: bool, sparsity: float):
  a, b = problem(correlated, compressible, sparsity)
  in_loss, flips_in_loss = dpf(a, b, sparsity, decay_on_dense=False)
  on_dense, flips_on_dense = dpf(a, b, sparsity, decay_on_dense=True)
  optimum = np.linalg.solve(a.T @ a / N + LAM * np.eye(D), a.T @ b / N)
  one_shot = optimum * (np.abs(optimum) > np.sort(np.abs(optimum).ravel())[round(sparsity * D) - 1])
  return in_loss, flips_in_loss, on_dense, flips_on_dense, objective(a, b, one_shot)


def main():
  print("f of the pruned model (flips of the mask in the last 400 steps); DPF with the ridge term "
        "in the loss,\nor as weight decay on the dense x; one-shot: the optimum pruned once.\n")
  print(f"{'features':>10} {'optimum':>12} {'sparsity':>8} | {'DPF, ridge in loss':>19} | "
        f"{'DPF, decay on x':>16} | {'one-shot':>8}")
  for correlated in (False, True):
    for compressible in (False, True):
      for sparsity in (0.8, 0.9):
        in_loss, f1, on_dense, f2, one_shot = compare(correlated, compressible, sparsity)
        print(f"{'correlated' if correlated else 'isotropic':>10} "
              f"{'compressible' if compressible else 'dense':>12} {sparsity:>8.0%} | "
              f"{in_loss:>10.3f} ({f1:>5}) | {on_dense:>7.3f} ({f2:>5}) | {one_shot:>8.3f}",
              flush=True)


if __name__ == "__main__":
  main()
