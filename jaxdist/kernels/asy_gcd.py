"""Greedy coordinate descent for the box-constrained kernel-SVM dual, and Asy-GCD ([You20] ch. 4,
Alg. 12 and 14).

    min_alpha  1/2 alpha' Q alpha - e' alpha,   0 <= alpha <= C,   Q_ij = y_i y_j K(x_i, x_j)

(eq. 4.9: no bias, so no equality constraint: do not compare its accuracies with ch. 2's SMO.)
The state is alpha and the maintained gradient g = Q alpha - 1 (alpha = 0, g = -1 at the start).
A coordinate step (Alg. 14) takes, within a block S of coordinates,

    i     = argmax_{i in S} |alpha_i - clip(alpha_i - g_i, 0, C)|    (4.11, projected gradient)
    delta = clip(alpha_i - g_i / Q_ii, 0, C) - alpha_i               (4.10, exact 1-D minimiser)
    g    += delta Q[:, i];  alpha_i += delta                          (an atomic add in the thesis)

* `solve_box`: one worker, one block: the sequential greedy solver, to a projected-gradient tol.
* `AsyGCD`: Asy-GCD simulated. P workers each own a block (k-means blocks by default, L2010);
  they update in turn, and each reads g through a copy that lags the true one by `delay` = T
  updates (the bounded-delay "inconsistent read" model, eq. 4.3; Thm. 4.1 needs
  T(T+1) <= sqrt(n) L_max / (4 e L_res)). `lost_updates` = q drops each increment of g with
  probability q while alpha still moves: the non-atomic write the thesis warns about (L2006),
  after which g no longer equals Q alpha - 1 and the method stops at a wrong point.
  Its state is explicit, so a run resumes bit-exactly (`run` in chunks).
* `synchronous_block_greedy`: all workers choose from the same g at once and apply their steps
  together (on the worker axis, the chosen samples gathered). Such steps can diverge with many
  workers (L1812); `guard=True` scales the joint step by the exact line search
  t = clip(-g_S' delta / delta' Q_SS delta, 0, 1), which keeps it a descent step in the box.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.core import collectives
from jaxdist.errors import check_at_least, check_fraction
from jaxdist.kernels import common
from jaxdist.kernels import partition as partition_lib
from jaxdist.kernels.kernels import Kernel, column, matvec


def projected_gradient(alpha, g, C):
  """|alpha - clip(alpha - g, 0, C)| (4.2): zero exactly at the box's KKT points."""
  return jnp.abs(alpha - jnp.clip(alpha - g, 0, C))


def exact_step(alpha_i, g_i, q_ii, C):
  """(4.10): the step to the minimiser along coordinate i, clipped to the box."""
  return jnp.clip(alpha_i - g_i / q_ii, 0, C) - alpha_i


def q_column(kernel: Kernel, x, y, i):
  return y[i] * y * column(kernel, x, x[i])


def objective(kernel: Kernel, x, y, alpha, block: int = 256):
  """The dual objective 1/2 alpha' Q alpha - sum(alpha), computed afresh (not from g)."""
  q_alpha = y * matvec(kernel, x, x, alpha * y, block)
  return 0.5 * jnp.dot(alpha, q_alpha) - jnp.sum(alpha)


def solve_box(kernel: Kernel, x, y, *, C: float = 1.0, tol: float = 1e-3,
              max_iter: int = 100_000):
  """Sequential greedy CD on the whole problem until max projected gradient <= tol.
  Returns (alpha, g, iterations)."""
  diag = kernel.diagonal(x)

  def cond(carry):
    alpha, g, it = carry
    return (jnp.max(projected_gradient(alpha, g, C)) > tol) & (it < max_iter)

  def body(carry):
    alpha, g, it = carry
    i = jnp.argmax(projected_gradient(alpha, g, C))
    delta = exact_step(alpha[i], g[i], diag[i], C)
    return alpha.at[i].add(delta), g + delta * q_column(kernel, x, y, i), it + 1

  alpha0 = jnp.zeros_like(y)
  return lax.while_loop(cond, body, (alpha0, -jnp.ones_like(y), jnp.int32(0)))


class AsyState(NamedTuple):
  """Everything a simulated Asy-GCD run needs to resume."""

  update: jax.Array  # updates done so far
  alpha: jax.Array
  g: jax.Array  # the maintained gradient (Q alpha - 1 unless updates were lost)
  history: jax.Array  # [T + 1, m] ring of past g: the stale copies the workers read
  rng: jax.Array


class AsyGCD:
  """Asy-GCD simulated with bounded staleness (see the module docstring).

  Args:
    kernel, x, y: the problem (labels in {-1, +1}).
    blocks: `blocks[i]` is the worker that owns coordinate i (P = blocks.max() + 1).
    C: the box.
    delay: T, how many updates behind the true g each read is (0: consistent reads).
    lost_updates: probability that an update's increment of g is lost (0: atomic adds).
  """

  def __init__(self, kernel: Kernel, x, y, blocks, *, C: float = 1.0, delay: int = 0,
               lost_updates: float = 0.0):
    check_at_least("C", C, 1e-12)
    check_at_least("delay", delay, 0, integer=True)
    check_fraction("lost_updates", lost_updates, closed=True)
    self.kernel, self.C, self.delay, self.lost = kernel, float(C), int(delay), float(lost_updates)
    self.x, self.y = jnp.asarray(x), jnp.asarray(y, jnp.asarray(x).dtype)
    self.blocks = jnp.asarray(blocks, jnp.int32)
    self.num_workers = int(np.max(np.asarray(blocks))) + 1
    self.diag = kernel.diagonal(self.x)

  def init(self, seed: int = 0) -> AsyState:
    g = -jnp.ones_like(self.y)
    return AsyState(jnp.int32(0), jnp.zeros_like(self.y), g,
                    jnp.broadcast_to(g, (self.delay + 1,) + g.shape), jax.random.PRNGKey(seed))

  def _update(self, state: AsyState, _):
    slot = (state.update + 1) % (self.delay + 1)
    stale = state.history[slot]  # g as it was `delay` updates ago
    worker = state.update % self.num_workers  # the workers' updates interleave in turn
    mine = self.blocks == worker
    score = jnp.where(mine, projected_gradient(state.alpha, stale, self.C), -1.0)
    i = jnp.argmax(score)
    delta = exact_step(state.alpha[i], stale[i], self.diag[i], self.C)
    rng, key = jax.random.split(state.rng)
    kept = jax.random.uniform(key) >= self.lost
    g = state.g + jnp.where(kept, delta, 0.0) * q_column(self.kernel, self.x, self.y, i)
    history = state.history.at[slot].set(g)
    return AsyState(state.update + 1, state.alpha.at[i].add(delta), g, history, rng), None

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def run(self, state: AsyState, num_updates: int) -> tuple[AsyState, dict]:
    """`num_updates` more updates; returns the state and the exact objective at the end."""
    state, _ = lax.scan(self._update, state, None, length=num_updates)
    true_g = self.y * matvec(self.kernel, self.x, self.x, state.alpha * self.y) - 1
    metrics = {"objective": objective(self.kernel, self.x, self.y, state.alpha),
               "gradient_error": jnp.max(jnp.abs(true_g - state.g)),
               "projected_gradient": jnp.max(projected_gradient(state.alpha, true_g, self.C))}
    return state, metrics


def kmeans_blocks(x, num_workers: int, seed: int = 0) -> np.ndarray:
  """Coordinate blocks from k-means (L2010): block i = the cluster of sample i."""
  return partition_lib.make("kmeans", np.asarray(x), num_workers, seed).assignment


@functools.cache
def _sync_fn(kernel: Kernel, C: float, rounds: int, guard: bool):
  def worker(x, y, mask, diag):
    def round_(carry, _):
      alpha, g = carry
      score = jnp.where(mask, projected_gradient(alpha, g, C), -1.0)
      i = jnp.argmax(score)
      delta = jnp.where(mask[i], exact_step(alpha[i], g[i], diag[i], C), 0.0)
      rows, labels, deltas, grads = collectives.gather((x[i], y[i], delta, g[i]))
      if guard:  # exact line search along the joint step
        q_ss = labels[:, None] * labels[None, :] * kernel(rows, rows)
        curvature = deltas @ q_ss @ deltas
        t = jnp.where(curvature > 0, jnp.clip(-(grads @ deltas) / curvature, 0, 1), 1.0)
      else:
        t = jnp.asarray(1.0, g.dtype)
      g = g + t * y * (kernel(x, rows) @ (labels * deltas))
      alpha = alpha.at[i].add(t * delta)
      value = collectives.gather(0.5 * jnp.sum(jnp.where(mask, alpha * (g - 1), 0))).sum()
      return (alpha, g), value
    (alpha, g), values = lax.scan(round_, (jnp.zeros_like(y), -jnp.ones_like(y)), None,
                                  length=rounds)
    return alpha, g, values
  return worker


def synchronous_block_greedy(kernel: Kernel, x, y, blocks, *, C: float = 1.0,
                             rounds: int = 100, guard: bool = True,
                             layout: Any = common.SIMULATED):
  """All blocks step at once from the same g, `rounds` times, on the worker axis. Returns
  (alpha per original row, objective per round: 1/2 alpha'(g - 1), which equals the objective
  since g = Q alpha - 1 is maintained exactly)."""
  x, y, blocks = np.asarray(x), np.asarray(y, np.asarray(x).dtype), np.asarray(blocks)
  p = int(blocks.max()) + 1
  part = partition_lib.Partition("blocks", blocks, np.zeros((p, x.shape[1]), x.dtype))
  diag = np.asarray(kernel.diagonal(jnp.asarray(x)))
  xp, yp, dp, mask, index = partition_lib.pack(part, x, y, diag)
  alpha, _, values = common.on_workers(common.worker_grid(layout, p),
                                       _sync_fn(kernel, float(C), int(rounds), bool(guard)),
                                       (xp, yp, mask, dp))
  out = np.zeros(len(y), np.asarray(alpha).dtype)
  out[index[mask]] = np.asarray(alpha)[mask]
  return out, np.asarray(values[0])
