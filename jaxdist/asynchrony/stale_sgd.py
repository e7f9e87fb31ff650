"""SGD with imposed staleness, and Hogwild! on sparse objectives ([S3 L1277-1332]; the Hogwild!
box of Niu et al. 2011 [ext]; spec §10b and check 4).

Step j samples a term e, reads x_e as it was some updates ago and writes only the coordinates of e
into the *current* model:

    x_v <- x_v - gamma [G_e(x_{k(j)})]_v   for v in e,   tau_j = j - k(j)

The delay is imposed (not from a clock; `simulator` makes it arise from one): `Fixed(tau)`,
`Bounded(tau_max)` (uniform on 0..tau_max) or `Drawn(probabilities)` (any distribution on
0..len-1, e.g. one the clock simulator measured). How a read sees the past is a separate, labelled
model (pitfall 3):

- `WholeVector()`: one delay for the whole read, a consistent snapshot (a simplification);
- `TornReads()`: every coordinate read at its own delay, drawn independently: the inconsistent
  reads of lock-free threads [S3 L1102], the faithful model of Hogwild!.

The last tau_max + 1 versions are kept in a ring buffer inside the state (`StaleState`), with the
step and the seed's key: a run is bit-reproducible from its seed and resumes bit-exactly. With
`Fixed(0)` the read is the current model and the run is serial SGD, bit for bit. Steps run as one
`lax.scan`; each touches |e| coordinates plus one write of the model into the buffer.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.asynchrony.sparse import example_gradient
from jaxdist.core.state import state_class
from jaxdist.errors import ArgumentError, check_at_least


class Staleness:
  """A distribution of delays on 0..max_delay."""
  max_delay: int

  def sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Fixed(Staleness):
  """Every read is exactly `tau` updates old (as far as the run goes back)."""
  tau: int = 0

  def __post_init__(self):
    check_at_least("tau", self.tau, 0, integer=True)

  @property
  def max_delay(self):
    return self.tau

  def sample(self, key, shape):
    del key
    return jnp.full(shape, self.tau, jnp.int32)


@dataclasses.dataclass(frozen=True)
class Bounded(Staleness):
  """Delays uniform on 0..`tau_max`: the bounded-delay assumption of the theory."""
  tau_max: int = 1

  def __post_init__(self):
    check_at_least("tau_max", self.tau_max, 0, integer=True)

  @property
  def max_delay(self):
    return self.tau_max

  def sample(self, key, shape):
    return jax.random.randint(key, shape, 0, self.tau_max + 1)


@dataclasses.dataclass(frozen=True)
class Drawn(Staleness):
  """Delays drawn from `probabilities` over 0..len-1 (normalised)."""
  probabilities: tuple[float, ...] = (1.0,)

  def __post_init__(self):
    p = np.asarray(self.probabilities, float)
    if p.ndim != 1 or p.size == 0 or (p < 0).any() or not p.sum() > 0:
      raise ArgumentError("probabilities", f"{self.probabilities!r} is not a distribution",
                          "non-negative weights over delays 0, 1, ..., not all zero")

  @property
  def max_delay(self):
    return len(self.probabilities) - 1

  def sample(self, key, shape):
    logits = jnp.log(jnp.asarray(self.probabilities, jnp.float32))
    return jax.random.categorical(key, logits, shape=shape).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class WholeVector:
  """A read is one consistent version of the whole model (a simplification of real reads)."""
  label: str = "whole-vector snapshot"


@dataclasses.dataclass(frozen=True)
class TornReads:
  """Every coordinate of a read comes from its own version (torn, inconsistent reads)."""
  label: str = "per-coordinate (torn) reads"


@state_class
class StaleState:
  x: jax.Array  # the current model x_j
  history: jax.Array  # [tau_max + 1, d]: version v in row v mod (tau_max + 1)
  step: jax.Array  # j
  key: jax.Array


class StaleSGD:
  """SGD whose gradients are read at imposed delays; `hogwild` builds it for sparse objectives.

  Args:
    objective: a `SparseSVM`, `SparseLogistic`, `Quadratic` (anything with `dim`,
      `num_examples`, `support(e)`, `example_loss(x_e, e)`).
    learning_rate: gamma, the step per gradient.
    staleness: `Fixed(tau)`, `Bounded(tau_max)` or `Drawn(probabilities)`.
    reads: `WholeVector()` or `TornReads()`.
  """

  def __init__(self, objective: Any, learning_rate: float, staleness: Staleness,
               reads: WholeVector | TornReads = WholeVector()):
    if not all(hasattr(objective, a) for a in ("dim", "support", "example_loss")):
      raise ArgumentError("objective", f"{type(objective).__name__} is not an objective",
                          "SparseSVM, SparseLogistic, Quadratic")
    check_at_least("learning_rate", learning_rate, 0)
    if not isinstance(staleness, Staleness):
      raise ArgumentError("staleness", f"{staleness!r} is not a staleness model",
                          "Fixed(tau), Bounded(tau_max), Drawn(probabilities)")
    if not isinstance(reads, WholeVector | TornReads):
      raise ArgumentError("reads", f"{reads!r} is not a read model", "WholeVector(), TornReads()")
    self.objective, self.learning_rate = objective, learning_rate
    self.staleness, self.reads = staleness, reads
    self._run = jax.jit(self._scan, static_argnums=2)

  def init(self, x0: Any, seed: int = 0) -> StaleState:
    x0 = jnp.asarray(x0, jnp.float32)
    if x0.shape != (self.objective.dim,):
      raise ArgumentError("x0", f"shape {x0.shape}, the objective has dim {self.objective.dim}",
                          f"({self.objective.dim},)")
    rows = self.staleness.max_delay + 1
    return StaleState(x0, jnp.broadcast_to(x0, (rows, x0.size)), jnp.zeros((), jnp.int32),
                      jax.random.PRNGKey(seed))

  def _step(self, objective, state: StaleState, _):
    j, rows = state.step, self.staleness.max_delay + 1
    key = jax.random.fold_in(state.key, j)
    e = jax.random.randint(jax.random.fold_in(key, 0), (), 0, objective.num_examples)
    idx, _ = objective.support(e)
    shape = idx.shape if isinstance(self.reads, TornReads) else ()
    delay = jnp.minimum(self.staleness.sample(jax.random.fold_in(key, 1), shape), j)
    x_e = state.history[(j - delay) % rows, idx]  # each coordinate from its version
    grad = example_gradient(objective, x_e, e)
    x = state.x.at[idx].add(-self.learning_rate * grad)  # only the coordinates of e
    history = state.history.at[(j + 1) % rows].set(x)
    return StaleState(x, history, j + 1, state.key), {"delay": jnp.mean(delay.astype(float))}

  def _scan(self, objective, state, num_steps):
    return lax.scan(functools.partial(self._step, objective), state, None, length=num_steps)

  def run(self, state: StaleState, num_steps: int) -> tuple[StaleState, dict[str, jax.Array]]:
    """`num_steps` updates in one jitted call; the trace holds every step's (mean) delay."""
    check_at_least("num_steps", num_steps, 1, integer=True)
    return self._run(self.objective, state, num_steps)


def hogwild(objective: Any, learning_rate: float, staleness: Staleness,
            reads: WholeVector | TornReads = TornReads()) -> StaleSGD:
  """Hogwild! [S3 L1277-1285]: sparse coordinate-wise writes of the touched support only, reads
  that may be stale and torn (per coordinate, by default)."""
  return StaleSGD(objective, learning_rate, staleness, reads)
