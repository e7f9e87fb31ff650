"""Training algorithms, each written for one worker and run on K workers by `jaxdist.workers`.

An algorithm is an object with

* `state_axes`: a prefix of its state marking every field PER_WORKER (stacked over the workers) or
  SHARED (one copy, identical on every worker), as vmap's in_axes;
* `init(params, model_state, rng) -> state`, called on every worker with the same initial model
  and the same (shared) key;
* `step(state, batch, rng) -> (state, metrics)`: one iteration on this worker's batch with this
  worker's key; metrics is a flat dict of scalars, averaged over the workers by the runner, except
  that `comm/*` counts (bits sent, rounds) are summed over the steps;
* `deployed(state) -> (params, model_state)`: the model this worker evaluates.

States are NamedTuples with a SHARED `step` field (iterations done), from which the runner derives
the data position and the random streams. Algorithms talk to other workers only through the
`Comm` they are built with.
"""

import math
from typing import Any, Protocol

import jax
import ml_collections
import optax

from jaxdist import recipes, topology
from jaxdist.algorithms import decentralized, extrap, local_sgd
from jaxdist.compression import Compressor
from jaxdist.errors import ConfigError
from jaxdist.gossip import Gossip
from jaxdist.workers import Comm

Metrics = dict[str, jax.Array]
DECENTRALIZED = ("dsgd", "qg_dsgdm", "d2", "d2_plus", "gradient_tracking", "choco_sgd")
ALGORITHMS = ("minibatch_sgd", "local_sgd", "post_local_sgd", "hierarchical_local_sgd",
              *DECENTRALIZED)
NODE_DIM = "workers"  # the grid dimension of the workers within a node


class Algorithm(Protocol):
  state_axes: Any

  def init(self, params: Any, model_state: Any, rng: jax.Array) -> Any: ...

  def step(self, state: Any, batch: Any, rng: jax.Array) -> tuple[Any, Metrics]: ...

  def deployed(self, state: Any) -> tuple[Any, Any]: ...


class Run:
  """What an algorithm may need to know about the run it is part of."""

  def __init__(self, config: ml_collections.ConfigDict, learning_rate: optax.Schedule,
               global_batch: int, train_size: int, total_steps: int):
    self.config, self.learning_rate = config, learning_rate
    self.global_batch, self.train_size, self.total_steps = global_batch, train_size, total_steps

  def switch_step(self) -> int:
    """Post-local SGD's switch: algo.switch_samples, algo.switch_epochs, or the first decay."""
    algo = self.config.algo
    if algo.switch_samples > 0:
      samples = algo.switch_samples
    elif algo.switch_epochs >= 0:
      samples = algo.switch_epochs * self.train_size
    else:
      samples = recipes.first_decay_samples(self.config.optim,
                                            self.total_steps * self.global_batch)
    return math.ceil(samples / self.global_batch)

  def masking_ramp_steps(self) -> int:
    """Step at which pruning reaches its target: masking.ramp_end of the run, or by default
    the second learning-rate decay ([Lin22] L4848)."""
    ramp_end = self.config.masking.ramp_end
    if ramp_end >= 0:
      return round(ramp_end * self.total_steps)
    phases = self.phase_steps()
    if len(phases) < 2 and self.config.masking.name in ("dpf", "incremental", "one_shot"):
      raise ConfigError("masking.ramp_end", "the learning rate has no second decay to reach the "
                        "target sparsity at", "a fraction of the run in [0, 1]")
    return phases[1] if len(phases) >= 2 else self.total_steps

  def phase_steps(self) -> tuple[int, ...]:
    """First steps of the learning-rate phases after the first (at the decays of a step
    schedule; none for the other schedules)."""
    optim = self.config.optim
    if optim.schedule != "step":
      return ()
    total = self.total_steps * self.global_batch
    return tuple(math.ceil(round(f * total) / self.global_batch) for f in optim.decay_at)


def build(run: Run, loss_fn, tx: optax.GradientTransformation, comm: Comm) -> Algorithm:
  """The algorithm named by `run.config.algo.name`."""
  config = run.config.algo
  if config.name not in ALGORITHMS:
    raise ConfigError("algo.name", f"unknown algorithm {config.name!r}", ALGORITHMS)
  if config.local_steps < 1:
    raise ConfigError("algo.local_steps", f"must be >= 1, got {config.local_steps}",
                      "integers >= 1")
  if config.block_steps < 1:
    raise ConfigError("algo.block_steps", f"must be >= 1, got {config.block_steps}",
                      "integers >= 1")
  hierarchical = config.name == "hierarchical_local_sgd"
  if hierarchical != (len(comm.dims) == 2):
    raise ConfigError("workers.per_node", "hierarchical_local_sgd runs on nodes of workers and "
                      "the other algorithms on a flat set of workers",
                      "> 0 with hierarchical_local_sgd, 0 otherwise")
  if config.block_steps > 1 and not hierarchical:
    raise ConfigError("algo.block_steps", f"{config.block_steps} block steps need "
                      "hierarchical_local_sgd", "1")
  if config.name in DECENTRALIZED:
    return _decentralized(run, loss_fn, tx, comm)
  extrapolation = None
  if config.extrapolation != "none":
    optim = run.config.optim
    extrapolation = extrap.Extrapolation(config.extrapolation, config.extrapolation_scale,
                                         run.learning_rate, comm,
                                         (optim.b1, optim.b2, optim.eps))
  if config.name == "minibatch_sgd":
    return local_sgd.MinibatchSGD(loss_fn, tx, comm, extrapolation)
  return local_sgd.LocalSGD(
      loss_fn, tx, comm, run.learning_rate, local_steps=config.local_steps,
      block_steps=config.block_steps, node_dim=NODE_DIM if hierarchical else None,
      switch_step=run.switch_step() if config.name == "post_local_sgd" else 0,
      global_momentum=config.global_momentum, compression=config.compression,
      extrapolation=extrapolation)


def _decentralized(run: Run, loss_fn, tx: optax.GradientTransformation,
                   comm: Comm) -> decentralized.DecentralizedSGD:
  config = run.config.algo
  if config.extrapolation != "none":
    raise ConfigError("algo.extrapolation", f"{config.name} takes gradients at its own model",
                      ("none",))
  graph = topology.make(run.config.topology.name, comm.num_workers)
  gossip = Gossip(graph, comm, run.config.topology.exchange, run.config.seed)
  common = dict(measure_consensus=config.measure_consensus)
  args = (loss_fn, tx, comm, gossip, run.learning_rate)
  if config.name == "choco_sgd":
    compressor = Compressor(config.compressor, config.compress_fraction, config.compress_bits,
                            config.compress_unbiased)
    return decentralized.ChocoSGD(*args, compressor=compressor,
                                  consensus_step=config.consensus_step, **common)
  if config.name in ("d2", "d2_plus"):
    return decentralized.D2(*args, rescale_all=config.name == "d2_plus", **common)
  if config.name == "gradient_tracking":
    return decentralized.GradientTracking(*args, **common)
  optim = run.config.optim
  return decentralized.DecentralizedSGD(
      *args, momentum="quasi_global" if config.name == "qg_dsgdm" else "local",
      qg_mu=config.qg_mu, qg_period=config.qg_period, phase_steps=run.phase_steps(),
      consensus_target=config.consensus_target, control_phases=config.control_phases,
      exact_phases=config.exact_phases, max_gossip_rounds=config.max_gossip_rounds,
      adam_betas=(optim.b1, optim.b2), **common)
