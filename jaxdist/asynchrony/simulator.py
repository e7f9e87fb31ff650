"""A seeded discrete-event simulator of asynchronous SGD with a parameter server ([S3 L939-1102];
Downpour SGD of Dean et al. 2012 [ext]; pitfalls 1, 2, 4 of the spec).

P workers each repeat: read the server's model, compute a gradient for a time drawn from their
compute-time model, push it. The server applies every gradient on arrival to its *current* model,

    x_{j+1} = x_j - gamma G(x_{k(j)}),   staleness tau_j = j - k(j)   [S3 L1320-1321]

(never to the stale snapshot, pitfall 2). Reads are whole-vector snapshots: a worker's read is one
consistent version (a simplification; torn per-coordinate reads are `stale_sgd.TornReads`).

The clock and the order of events are computed in JAX: the simulation advances by *waves*, the
longest run of next-finishing workers in which no worker appears twice. Every member of a wave read
its snapshot before the wave began, so their gradients are computed together in one vmapped call;
the server then applies them one by one in finishing order (a scan), and each member reads the model
as it stands just after its own update. With one worker every wave is one update at staleness 0:
serial SGD, bit for bit. The compute time of a worker's c-th computation depends only on
(seed, worker, c), so a run is bit-reproducible from its seed and the same however it is cut into
calls; the whole simulation lives in `AsyncState`, so a saved state resumes bit-exactly.

Sum or mean (pitfall 4), explicitly: `reduction="sum"` applies each arriving gradient with the
server optimizer as it is (the slides' sum over threads [S3 L1029]: P workers make up to P
times the serial step per unit of time); `"mean"` divides it by P, so P arrivals make one
mini-batch-mean step. The server optimizer is any optax transformation: `optax.sgd(gamma)`, or
`optax.adagrad(...)`, which Dean et al. found to work remarkably well with asynchrony
[S3 L1116-1185]. Downpour's periods: a worker pushes its gradients accrued over `push_every` local
steps (taken on its own replica with `local_learning_rate`) and fetches the server model every
`fetch_every` local steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxdist.asynchrony.compute_time import ComputeTime, check_compute_time, draw
from jaxdist.core.state import state_class
from jaxdist.errors import ArgumentError, check_at_least, check_choice

REDUCTIONS = ("sum", "mean")


@state_class
class AsyncState:
  """Everything a simulation needs to go on: the server's model and optimizer, the version and
  clock, every worker's in-flight read, its read version, finish time and computation count, and
  the seed's key (the times and batches are functions of it)."""
  params: Any
  opt_state: Any
  version: jax.Array  # j: updates the server has applied
  clock: jax.Array  # model time of the last update
  reads: Any  # [P, ...] the model each worker is computing on (its replica under Downpour)
  read_version: jax.Array  # [P] k: the server version of each worker's last fetch
  finish: jax.Array  # [P] when each worker's computation ends
  computations: jax.Array  # [P] computations each worker has started
  key: jax.Array


def check_data(data: Any) -> None:
  if not callable(data):
    raise ArgumentError("data", f"{data!r} is not a function",
                        "data(index, worker) -> batch, a pure function of two int32 arrays "
                        "(jaxdist.asynchrony.sampler(arrays, batch_size, seed) makes one)")


def sampler(arrays: Any, batch_size: int, seed: int = 0) -> Callable[[jax.Array, jax.Array], Any]:
  """`data(index, worker) -> batch`: `batch_size` examples of `arrays` drawn with replacement by
  the key folded from (seed, index); the same for every worker (all hold the data)."""
  check_at_least("batch_size", batch_size, 1, integer=True)
  arrays = jax.tree.map(jnp.asarray, arrays)
  size = jax.tree.leaves(arrays)[0].shape[0]
  base = jax.random.PRNGKey(seed)

  def data(index, worker):
    del worker
    rows = jax.random.randint(jax.random.fold_in(base, index), (batch_size,), 0, size)
    return jax.tree.map(lambda a: a[rows], arrays)

  return data


class AsyncParameterServer:
  """Asynchronous SGD with a parameter server on a simulated clock.

  Args:
    loss_fn: `loss_fn(params, batch) -> scalar loss`.
    optimizer: the server's optax transformation applied to every arriving gradient
      (`optax.sgd(gamma)`; `optax.adagrad(lr)` for Dean et al.'s Adagrad).
    data: `data(index, worker) -> batch`; update j's gradient (local step s of it under Downpour)
      uses index `j * push_every + s`.
    num_workers: P.
    compute_time: each worker's compute time per local step (`jaxdist.asynchrony.Exponential()`).
    reduction: `"sum"` (each gradient at the optimizer's step) or `"mean"` (divided by P).
    push_every: local steps whose gradients a worker accrues before pushing (Downpour n_push).
    fetch_every: local steps between fetches of the server model (n_fetch, a multiple of
      `push_every`).
    local_learning_rate: the step a worker takes on its replica between pushes (0: none).
  """

  def __init__(self, loss_fn: Callable, optimizer: optax.GradientTransformation,
               data: Callable, *, num_workers: int, compute_time: ComputeTime, reduction: str,
               push_every: int = 1, fetch_every: int = 1, local_learning_rate: float = 0.0):
    if not callable(loss_fn):
      raise ArgumentError("loss_fn", f"{loss_fn!r} is not a function",
                          "loss_fn(params, batch) -> scalar")
    if not isinstance(optimizer, optax.GradientTransformation):
      raise ArgumentError("optimizer", f"{optimizer!r} is not an optax GradientTransformation",
                          "optax.sgd(lr), optax.adagrad(lr), ...")
    check_data(data)
    check_at_least("num_workers", num_workers, 1, integer=True)
    check_compute_time("compute_time", compute_time)
    check_choice("reduction", reduction, REDUCTIONS)
    check_at_least("push_every", push_every, 1, integer=True)
    check_at_least("fetch_every", fetch_every, 1, integer=True)
    if fetch_every % push_every:
      raise ArgumentError("fetch_every", f"{fetch_every} is not a multiple of push_every "
                          f"({push_every})", f"multiples of {push_every}")
    check_at_least("local_learning_rate", local_learning_rate, 0)
    self.loss_fn, self.tx, self.data = loss_fn, optimizer, data
    self.num_workers, self.compute_time, self.reduction = num_workers, compute_time, reduction
    self.push_every, self.fetch_every = push_every, fetch_every
    self.local_learning_rate = local_learning_rate
    self._run = jax.jit(self._run_waves, static_argnums=1)
    self._init = jax.jit(self._initial)

  # -- the clock ---------------------------------------------------------------------------------

  def _duration(self, key, worker, cycle):
    """The time of a worker's `cycle`-th computation: `push_every` local steps."""
    steps = cycle * self.push_every + jnp.arange(self.push_every)
    return jnp.sum(jax.vmap(lambda c: draw(self.compute_time, key, worker, c))(steps))

  def init(self, params: Any, seed: int | jax.Array = 0) -> AsyncState:
    """Every worker reads x_0 at time 0 and starts its first computation."""
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
    return self._init(jax.tree.map(jnp.asarray, params), key)

  def _initial(self, params, key):
    workers = jnp.arange(self.num_workers)
    zeros = jnp.zeros(self.num_workers, jnp.int32)
    return AsyncState(
        params=params, opt_state=self.tx.init(params), version=jnp.zeros((), jnp.int32),
        clock=jnp.zeros((), jnp.float32),
        reads=jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_workers, *x.shape)), params),
        read_version=zeros,
        finish=jax.vmap(lambda w: self._duration(key, w, 0))(workers).astype(jnp.float32),
        computations=zeros + 1, key=key)

  def _form_wave(self, state: AsyncState):
    """The next-finishing workers, in order, until one would come twice; each restarts at once."""
    def pick(carry, _):
      finish, computations, taken, still_open = carry
      worker = jnp.argmin(finish)
      member = still_open & ~taken[worker]
      at = finish[worker]
      cycle = computations[worker]
      duration = self._duration(state.key, worker, cycle)
      finish = jnp.where(member, finish.at[worker].add(duration), finish)
      computations = jnp.where(member, computations.at[worker].add(1), computations)
      taken = taken.at[worker].set(taken[worker] | member)
      return (finish, computations, taken, member), (worker, member, at, cycle)

    start = (state.finish, state.computations, jnp.zeros(self.num_workers, bool), jnp.array(True))
    (finish, computations, _, _), wave = lax.scan(pick, start, None, length=self.num_workers)
    return finish, computations, wave

  # -- one wave ----------------------------------------------------------------------------------

  def _compute(self, params, worker, index):
    """One worker's push: its gradient (accrued over `push_every` local steps) and replica."""
    grad_fn = jax.value_and_grad(self.loss_fn)
    if self.push_every == 1:
      loss, grads = grad_fn(params, self.data(index, worker))
      return grads, params, loss

    def local_step(replica, s):
      loss, grads = grad_fn(replica, self.data(index * self.push_every + s, worker))
      replica = jax.tree.map(lambda p, g: p - self.local_learning_rate * g, replica, grads)
      return replica, (grads, loss)

    replica, (grads, losses) = lax.scan(local_step, params, jnp.arange(self.push_every))
    return jax.tree.map(lambda g: g.sum(0), grads), replica, losses.mean()

  def _wave(self, state: AsyncState, _):
    finish, computations, (workers, members, times, cycles) = self._form_wave(state)
    indices = state.version + jnp.arange(self.num_workers)  # members form a prefix
    reads = jax.tree.map(lambda r: r[workers], state.reads)
    grads, replicas, losses = jax.vmap(self._compute)(reads, workers, indices)  # one call
    scale = 1.0 / self.num_workers if self.reduction == "mean" else None
    fetch_cycles = self.fetch_every // self.push_every

    def arrive(carry, item):
      params, opt_state, version, reads, read_version = carry
      grad, replica, worker, member, cycle = item
      if scale is not None:
        grad = jax.tree.map(lambda g: g * scale, grad)
      updates, new_opt_state = self.tx.update(grad, opt_state, params)
      new_params = optax.apply_updates(params, updates)  # the current model, not the read one
      staleness = jnp.where(member, version - read_version[worker], -1)
      fetch = cycle % fetch_cycles == 0  # the worker's next computation starts with a fetch
      read = jax.tree.map(lambda x, r: jnp.where(fetch, x, r), new_params, replica)
      pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(member, a, b), new, old)
      params, opt_state = pick(new_params, params), pick(new_opt_state, opt_state)
      reads = pick(jax.tree.map(lambda rs, r: rs.at[worker].set(r), reads, read), reads)
      read_version = jnp.where(member & fetch, read_version.at[worker].set(version + 1),
                               read_version)
      return (params, opt_state, version + member, reads, read_version), staleness

    carry = (state.params, state.opt_state, state.version, state.reads, state.read_version)
    items = (grads, replicas, workers, members, cycles)
    (params, opt_state, version, reads, read_version), staleness = lax.scan(arrive, carry, items)
    size = members.sum()
    clock = times[size - 1]
    new = AsyncState(params, opt_state, version, clock, reads, read_version, finish, computations,
                     state.key)
    trace = {"updates": size, "staleness": staleness, "workers": jnp.where(members, workers, -1),
             "clock": clock, "loss": jnp.sum(jnp.where(members, losses, 0)) / size}
    return new, trace

  def _run_waves(self, state: AsyncState, num_waves: int):
    return lax.scan(self._wave, state, None, length=num_waves)

  def run(self, state: AsyncState, num_waves: int) -> tuple[AsyncState, dict[str, jax.Array]]:
    """`num_waves` waves in one jitted call. Returns the new state and the trace, one entry per
    wave: `updates` (its size), `staleness` `[P]` (-1 past its members), `workers`, `clock` (model
    time at its end) and `loss` (mean over its members, at their read points)."""
    check_at_least("num_waves", num_waves, 1, integer=True)
    return self._run(state, num_waves)


def async_ps(loss_fn: Callable, optimizer: optax.GradientTransformation, data: Callable, *,
             num_workers: int, compute_time: ComputeTime, reduction: str, push_every: int = 1,
             fetch_every: int = 1, local_learning_rate: float = 0.0) -> AsyncParameterServer:
  """Asynchronous SGD with a parameter server on a simulated clock; see `AsyncParameterServer`."""
  return AsyncParameterServer(loss_fn, optimizer, data, num_workers=num_workers,
                              compute_time=compute_time, reduction=reduction,
                              push_every=push_every, fetch_every=fetch_every,
                              local_learning_rate=local_learning_rate)


def staleness_summary(trace: dict[str, Any]) -> dict[str, float]:
  """Mean, max and quantiles of the staleness of every update in a trace, with the update count
  and the model time they took."""
  import numpy as np

  staleness = np.asarray(trace["staleness"]).ravel()
  staleness = staleness[staleness >= 0]
  clock = np.asarray(trace["clock"]).ravel()
  return {"updates": int(staleness.size), "staleness/mean": float(staleness.mean()),
          "staleness/max": int(staleness.max()),
          "staleness/p50": float(np.quantile(staleness, 0.5)),
          "staleness/p99": float(np.quantile(staleness, 0.99)), "time": float(clock[-1])}
