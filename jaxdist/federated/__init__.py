"""Federated learning ([Lin22] ch. 8, App. 17): FedAvg, FedProx, FedAvgM and server optimizers,
FedDF ensemble distillation.

A round is the runner's step and the round's cohort its workers, so a cohort trains as one
vmapped program (or under shard_map over a mesh) and resumes bit for bit:

    clients = jaxdist.federated.ClientData({"input": x, "label": y}, splits,
                                           cohort_size=jaxdist.federated.cohort_size(K, C))
    algorithm = jaxdist.federated.fedavg(task.loss, learning_rate=0.1, batch_size=32, epochs=1)
    result = jaxdist.train(algorithm, params, model_state, data=clients, num_steps=rounds)

Modules: `cohort` (registered clients, the cohort of a round, padding), `averaging` (local
training, the FedAvg round), `proximal` (FedProx's term), `server` (server optimizers, FedAvgM),
`statistics` (non-trainable state), `distillation` (FedDF), `prototypes` (heterogeneous models),
`mime` (MimeLite, [Lin22] Alg. 21).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from jaxdist.algorithms.base import LearningRate, LossFn, Optimizer
from jaxdist.federated import (
    averaging,
    cohort,
    distillation,
    mime,
    prototypes,
    proximal,
    server,
    statistics,
)
from jaxdist.federated.averaging import FederatedAveraging, LocalTraining, ServerState
from jaxdist.federated.cohort import ClientData, cohort_size, sample_cohort
from jaxdist.federated.distillation import EnsembleDistillation, uniform_noise
from jaxdist.federated.mime import MimeLite, MimeState
from jaxdist.federated.statistics import Averaged, PerClient, Reset

__all__ = [
    "Averaged", "ClientData", "EnsembleDistillation", "FederatedAveraging", "LocalTraining",
    "MimeLite", "MimeState", "PerClient", "Reset", "ServerState", "averaging", "cohort",
    "cohort_size", "distillation", "fedavg", "fedavgm", "feddf", "fedprox", "mime", "mimelite",
    "prototypes", "proximal", "sample_cohort", "server", "statistics", "uniform_noise",
]


def fedavg(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *,
           learning_rate: LearningRate = None, batch_size: int, epochs: int = 1,
           local_steps: int | None = None,
           server_optimizer: optax.GradientTransformation | None = None,
           statistics: Averaged | None = None, fusion: Any = None,
           regularizer: Callable | None = None) -> FederatedAveraging:
  """FedAvg (Alg. 17): E local epochs of plain SGD on each client of the round, the models
  averaged weighted by n_k.

  Args:
    loss_fn: `loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`,
      averaging over the examples whose `batch["mask"]` is 1 (`jaxdist.classification`).
    optimizer: the client optimizer, or a function of the rate (default `optax.sgd`).
    learning_rate: the client rate, constant by default.
    batch_size: examples per local step.
    epochs: local epochs E; `local_steps` instead gives a fixed number of local steps.
    server_optimizer: an optax transform of the pseudo-gradient (default `server.fedavg()`).
    statistics: non-trainable state: `Averaged()` (default), `PerClient(K)`, `Reset()`.
    fusion: server-side fusion (FedDF's `EnsembleDistillation`); None: none.
    regularizer: a term of the local loss (`proximal.proximal(mu)`).

  Returns:
    The algorithm, to run with `jaxdist.train(..., data=ClientData(...), num_steps=rounds)`.
  """
  client = LocalTraining(loss_fn, optimizer, learning_rate, batch_size=batch_size,
                         epochs=epochs, local_steps=local_steps, regularizer=regularizer)
  return FederatedAveraging(client, server_optimizer, statistics=statistics, fusion=fusion)


def fedprox(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, mu: float, **kwargs
            ) -> FederatedAveraging:
  """FedProx: FedAvg with (mu/2)||x - x_server||^2 in every local loss (mu = 0: FedAvg).

  Args:
    mu: the proximal weight.
    (the others as for `fedavg`)
  """
  return fedavg(loss_fn, optimizer, regularizer=proximal.proximal(mu), **kwargs)


def fedavgm(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, server_momentum: float,
            server_learning_rate: float = 1.0, **kwargs) -> FederatedAveraging:
  """FedAvgM: server momentum v <- beta v + Delta, x <- x - v (beta = 0: FedAvg).

  Args:
    server_momentum: beta.
    server_learning_rate: scales v (1 in the thesis).
    (the others as for `fedavg`)
  """
  return fedavg(loss_fn, optimizer,
                server_optimizer=server.fedavgm(server_momentum, server_learning_rate), **kwargs)


def mimelite(loss_fn: LossFn, *, momentum: float, learning_rate: LearningRate = None,
             batch_size: int, epochs: int = 1, local_steps: int | None = None,
             server_optimizer: optax.GradientTransformation | None = None,
             statistics: Averaged | None = None) -> mime.MimeLite:
  """MimeLite with SGDm (Alg. 21): local SGD steps along (1 - beta) g + beta s with the server's
  momentum s fixed, s updated on the server from the clients' full local gradients at x.

  Args:
    momentum: beta (0: FedAvg).
    learning_rate: the client rate eta.
    (the others as for `fedavg`)
  """
  client = LocalTraining(loss_fn, optax.sgd, learning_rate, batch_size=batch_size,
                         epochs=epochs, local_steps=local_steps)
  return mime.MimeLite(client, momentum, server_optimizer=server_optimizer,
                       statistics=statistics)


def feddf(loss_fn: LossFn, optimizer: Optimizer = optax.sgd, *, logits_fn: Callable,
          distill_inputs: Any, distill_steps: int = 10_000, distill_batch_size: int = 128,
          distill_learning_rate: float = 1e-3, validation: dict | None = None,
          patience: int = 1_000, validate_every: int = 100, drop_worst: float | None = None,
          distill_init: str = "average", temperature: float = 1.0,
          **kwargs) -> FederatedAveraging:
  """FedDF (Alg. 5): FedAvg, then the cohort's averaged logits distilled into the fused model.

  Args:
    logits_fn: `logits_fn(params, model_state, inputs) -> logits` (evaluation mode).
    distill_inputs: the unlabeled pool, `[M, ...]`.
    distill_steps, distill_batch_size, distill_learning_rate, validation, patience,
      validate_every, drop_worst, distill_init, temperature: see `EnsembleDistillation`.
    (the others as for `fedavg`)
  """
  fusion = EnsembleDistillation(
      logits_fn, distill_inputs, steps=distill_steps, batch_size=distill_batch_size,
      learning_rate=distill_learning_rate, validation=validation, patience=patience,
      validate_every=validate_every, drop_worst=drop_worst, init=distill_init,
      temperature=temperature)
  return fedavg(loss_fn, optimizer, fusion=fusion, **kwargs)

