"""Variable-worker training (S0 §3.2, App. C; S1): the number of workers grows with the batch.

The worker count follows the batch, P = min(P_max, ceil(B / examples_per_worker)) with 128
examples per worker by default (S1 Table 1: 640 -> 5, 3.2k -> 25, 16k -> 125). JAX meshes are
fixed, so the P active workers are the first P of a fixed grid of K and the others get no
examples (masked); nothing here is elastic (S0 §3.4 pitfall 1). What a synchronous update would
cost with P workers is *modelled*, for the two architectures of S1 L228-260:

* `centralized_update_time`: a parameter server (S0 L2332-2338): (1) broadcast the model to P
  workers, point to point; (2) the slowest worker's gradient on its ceil(B / P) examples; (3)
  gather P gradients; (4) overhead per worker (serialisation, scheduling); (5) the update.
* `ring_allreduce_update_time`: decentralized (PyTorch DDP): compute, then a ring all-reduce,
  2 (P - 1) messages of d / P floats each with its latency; every worker updates.

Network presets of S1 L250-259: `MODERATE` (54 Gb/s, 0.05 us), `HIGH` (800 Gb/s, 0.025 us).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxdist.errors import check_at_least

EXAMPLES_PER_WORKER = 128


def active_workers(batch: jax.Array, examples_per_worker: int = EXAMPLES_PER_WORKER,
                   max_workers: int | None = None) -> jax.Array:
  """P = min(P_max, ceil(B / examples_per_worker)), at least 1 (works on ints and arrays)."""
  check_at_least("examples_per_worker", examples_per_worker, 1, integer=True)
  workers = jnp.maximum(-(-jnp.asarray(batch) // examples_per_worker), 1)
  return workers if max_workers is None else jnp.minimum(workers, max_workers)


def worker_share(batch: jax.Array, workers: jax.Array, index: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """(first position, count) of the batch's examples that worker `index` computes: the B
  examples split in blocks of ceil(B / P) over the first P workers; the others get none."""
  share = -(-batch // workers)
  start = index * share
  count = jnp.where(index < workers, jnp.clip(batch - start, 0, share), 0)
  return start, count


@dataclasses.dataclass(frozen=True)
class Network:
  """A network between workers: `bandwidth` in Gbit/s and `latency` in seconds per message."""

  bandwidth: float
  latency: float

  def __post_init__(self):
    check_at_least("bandwidth", self.bandwidth, 1e-9)
    check_at_least("latency", self.latency, 0)

  def message_time(self, num_bytes: float) -> float:
    return self.latency + 8 * num_bytes / (self.bandwidth * 1e9)


MODERATE = Network(bandwidth=54.0, latency=0.05e-6)
HIGH = Network(bandwidth=800.0, latency=0.025e-6)


@dataclasses.dataclass(frozen=True)
class Compute:
  """What a worker's and the master's compute cost, the calibration of the time model.

  Attributes:
    per_example: seconds of gradient computation per example on one worker.
    per_update: seconds of a fixed cost of every gradient (a kernel launch floor).
    overhead_per_worker: seconds of serialisation and scheduling per worker (centralized only).
    update: seconds to apply the update to the model.
  """

  per_example: float
  per_update: float = 0.0
  overhead_per_worker: float = 0.0
  update: float = 0.0


def _compute_time(batch, workers, compute: Compute):
  return compute.per_update + compute.per_example * -(-jnp.asarray(batch) // workers)


def centralized_update_time(batch, workers, model_bytes: float, network: Network,
                            compute: Compute):
  """Seconds of one synchronous update on a parameter server with `workers` workers."""
  send = network.message_time(model_bytes)
  broadcast = workers * send  # (1), point to point from the master
  gather = workers * send  # (3)
  overhead = workers * compute.overhead_per_worker  # (4)
  return broadcast + _compute_time(batch, workers, compute) + gather + overhead + compute.update


def ring_allreduce_update_time(batch, workers, model_bytes: float, network: Network,
                               compute: Compute):
  """Seconds of one synchronous update with a ring all-reduce of the gradients."""
  workers = jnp.asarray(workers)
  chunk = model_bytes / workers
  allreduce = 2 * (workers - 1) * (network.latency + 8 * chunk / (network.bandwidth * 1e9))
  return _compute_time(batch, workers, compute) + allreduce + compute.update


def simulate_schedule(rule, train_size: int, num_epochs: float, *,
                      examples_per_worker: int = EXAMPLES_PER_WORKER,
                      max_workers: int | None = None,
                      update_times: dict | None = None) -> dict[str, float]:
  """The updates, examples and modelled time of a schedule-only rule, without training.

  For rules that depend on the epoch and the update count only (GeoDamp, Constant, Linear and
  their -LR twins): B_k and P_k are run forward in one `lax.while_loop` until `num_epochs` epochs
  of examples are used (S1 Table 1's update counts from its schedules).

  Args:
    rule: the batch-size rule.
    train_size: n.
    num_epochs: epochs of gradient evaluations.
    examples_per_worker, max_workers: P_k = min(P_max, ceil(B_k / examples_per_worker)).
    update_times: {name: update_time(batch, workers) -> seconds}; their sums are returned.

  Returns:
    {"updates", "examples", "max_workers", and one total in seconds per name of update_times}.
  """
  update_times = update_times or {}
  target = num_epochs * train_size

  def cond(carry):
    return carry[1] < target

  def body(carry):
    state, examples, updates, most, times = carry
    state, batch, _ = rule.schedule(state, {"epoch": examples / train_size})
    state = rule.observe(state, jnp.float32(0), jnp.float32(0))
    workers = active_workers(batch, examples_per_worker, max_workers)
    times = {k: times[k] + fn(batch, workers) for k, fn in update_times.items()}
    return (state, examples + batch.astype(jnp.float32), updates + 1,
            jnp.maximum(most, workers), times)

  init = (rule.init(), jnp.float32(0), jnp.int32(0), jnp.int32(0),
          {k: jnp.float32(0) for k in update_times})
  _, examples, updates, most, times = jax.jit(lambda c: jax.lax.while_loop(cond, body, c))(init)
  return {"updates": int(updates), "examples": float(examples), "max_workers": int(most),
          **{k: float(v) for k, v in times.items()}}
