"""Heterogeneous models: FedDF over architecture prototypes ([Lin22] Alg. 18).

Clients are grouped by prototype (an architecture, a width, a precision). A round trains every
group's cohort from its prototype's model, each group vmapped separately (its own shapes), and
averages each group into its prototype (n_k-weighted FedAvg); the teacher is the mean of the
logits of every received model, of all groups, on the unlabeled pool; every prototype is then
distilled from its own group's average towards that one teacher, and each client gets its
prototype's fused model back.

    groups = [Group(local_training_a, logits_a, clients_a), Group(..., clients_b)]
    round_fn = prototypes.HeterogeneousRounds(groups, distillation)
    models, metrics = round_fn(models, round_index)   # models: one per prototype

The round is a pure jitted function of the prototypes' models and the round index (the cohorts
come from (seed, round)), so a loop over rounds resumes from the models and the round alone.
"""


from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdist.core import collectives, workers
from jaxdist.errors import ArgumentError
from jaxdist.federated.averaging import LocalTraining
from jaxdist.federated.cohort import ClientData
from jaxdist.federated.distillation import EnsembleDistillation
from jaxdist.federated.statistics import weighted_mean


class Group(NamedTuple):
  """The clients of one prototype: their local training, the prototype's
  `logits_fn(params, model_state, inputs)`, and their data (`ClientData`)."""

  local: LocalTraining
  logits_fn: Callable[[Any, Any, jax.Array], jax.Array]
  clients: ClientData


class HeterogeneousRounds:
  """Rounds of Alg. 18 over several prototypes.

  Args:
    groups: one `Group` per prototype.
    distillation: the server's distillation (its `inputs`, steps, optimizer, validation); its
      own `logits_fn` is not used, each prototype has its own.
    seed: the seed of the clients' local keys and of the distillation batches.
  """

  def __init__(self, groups: Sequence[Group], distillation: EnsembleDistillation, *,
               seed: int = 0):
    if not groups or not all(isinstance(g, Group) for g in groups):
      raise ArgumentError("groups", "not a list of Group(local, logits_fn, clients)",
                          "one jaxdist.federated.prototypes.Group per prototype")
    self.groups, self.distillation, self.seed = tuple(groups), distillation, seed
    self._round = jax.jit(self._round_on_device)

  def _group_round(self, g: int, group: Group, params, model_state, batch, key):
    """Group g's cohort, vmapped: its FedAvg model and the sum of its models' pool logits."""
    pool = jnp.asarray(self.distillation.inputs)

    def one_client(data, rng):
      client, client_state, metrics = group.local.train(params, model_state, data, rng)
      average = weighted_mean((client, client_state), data["count"])
      logits = collectives.mean(group.logits_fn(client, client_state, pool))
      return average, logits * collectives.num_workers(), metrics

    cohort = workers.simulated((group.clients.num_workers,), ("workers",))
    keys = jax.random.split(jax.random.fold_in(key, g), group.clients.num_workers)
    return cohort.map(one_client, in_axes=(0, 0), out_axes=(None, None, 0))(batch, keys)

  def _round_on_device(self, models, batches, key):
    averages, logit_sums, local = [], [], {}
    for g, (group, (params, model_state), batch) in enumerate(zip(self.groups, models,
                                                                  batches)):
      average, logits, metrics = self._group_round(g, group, params, model_state, batch, key)
      averages.append(average)
      logit_sums.append(logits)
      local.update({f"group{g}/local/{k}": jnp.mean(v) for k, v in metrics.items()})
    received = sum(group.clients.num_workers for group in self.groups)
    teacher = sum(logit_sums) / received  # every received model, of every architecture
    fused, out = [], dict(local)
    for g, (group, (params, model_state)) in enumerate(zip(self.groups, averages)):
      distiller = self.distillation.with_logits(group.logits_fn)
      model, metrics = distiller.distill(params, model_state, teacher,
                                         jax.random.fold_in(key, 1000 + g))
      fused.append((model, model_state))
      out.update({f"group{g}/{k}": v for k, v in metrics.items()})
    return tuple(fused), out

  def __call__(self, models: Sequence[tuple[Any, Any]], round_index: int
               ) -> tuple[tuple[tuple[Any, Any], ...], dict]:
    """One round from the prototypes' (params, model_state); their fused models and metrics."""
    batches = [jax.tree.map(lambda x: x[0], g.clients.batches(round_index, 1,
                                                              range(g.clients.num_workers)))
               for g in self.groups]
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), round_index)
    return self._round(tuple(models), batches, key)
