"""Heterogeneous models: FedDF over architecture prototypes ([Lin22] Alg. 18).

Clients are grouped by prototype (an architecture, a width, a precision). A round trains every
group's cohort from its prototype's model, each group vmapped separately (its own shapes), and
averages each group into its prototype (n_k-weighted FedAvg); the teacher is the mean of the
logits of every received model, of all groups, on the unlabeled pool; every prototype is then
distilled from its own group's average towards that one teacher, and each client gets its
prototype's fused model back.

    groups = [Group(local_training_a, logits_a, clients_a), Group(..., clients_b)]
    rounds = prototypes.HeterogeneousRounds(groups, distillation)
    state = rounds.init(models)                        # models: one (params, state) per prototype
    state, history = rounds.run(state, num_rounds, checkpoint_dir="ckpt", checkpoint_every=1)

The state (`HeterogeneousState`) holds every prototype's server model and model state, the round
and the rounds' random key; the cohorts come from (the clients' seed, round), so a run stopped
after r rounds resumes from its checkpoint bit for bit. With the distillation's `drop_worst`, a
client model whose validation accuracy is at most that (under its own prototype's logits) is left
out of its group's average and of the teacher (Alg. 5's drop-worst, per group: if a whole group
would go, it is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdist.core import collectives, workers
from jaxdist.core.state import state_class
from jaxdist.errors import ArgumentError, check_at_least
from jaxdist.federated.averaging import LocalTraining
from jaxdist.federated.cohort import ClientData
from jaxdist.federated.distillation import EnsembleDistillation
from jaxdist.federated.statistics import weighted_mean
from jaxdist.training import progress as progress_lib
from jaxdist.training.checkpoint import Checkpoints

# The functional form keeps real annotations (not strings), which the API reference reads.
Group = NamedTuple("Group", [  # noqa: UP014
    ("local", LocalTraining),
    ("logits_fn", Callable[[Any, Any, jax.Array], jax.Array]),
    ("clients", ClientData),
])
Group.__doc__ = """The clients of one prototype: their local training, the prototype's
`logits_fn(params, model_state, inputs)`, and their data (`ClientData`)."""


@state_class
class HeterogeneousState:
  """Everything the rounds need to continue: `models`, one `(params, model_state)` per
  prototype; `round`, the rounds done; `key`, the base of every round's local and distillation
  keys."""

  models: tuple
  round: jax.Array
  key: jax.Array


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
    """Group g's cohort, vmapped: its FedAvg model over the kept clients, the sum of the kept
    models' pool logits and their number."""
    pool = jnp.asarray(self.distillation.inputs)
    judge = self.distillation.with_logits(group.logits_fn)

    def one_client(data, rng):
      client, client_state, metrics = group.local.train(params, model_state, data, rng)
      weight, dropped = judge.keep(client, client_state, data["count"])
      average = weighted_mean((client, client_state), weight)
      kept = (weight > 0).astype(jnp.float32)
      n = collectives.num_workers()
      logits = collectives.mean(kept * group.logits_fn(client, client_state, pool)) * n
      return average, (logits, collectives.mean(kept) * n), {**metrics, **dropped}

    cohort = workers.simulated((group.clients.num_workers,), ("workers",))
    keys = jax.random.split(jax.random.fold_in(key, g), group.clients.num_workers)
    return cohort.map(one_client, in_axes=(0, 0), out_axes=(None, None, 0))(batch, keys)

  def _round_on_device(self, models, batches, key):
    averages, logit_sums, counts, local = [], [], [], {}
    for g, (group, (params, model_state), batch) in enumerate(zip(self.groups, models,
                                                                  batches)):
      average, (logits, count), metrics = self._group_round(g, group, params, model_state,
                                                            batch, key)
      averages.append(average)
      logit_sums.append(logits)
      counts.append(count)
      local.update({f"group{g}/" + (k if k.startswith("server/") else f"local/{k}"): jnp.mean(v)
                    for k, v in metrics.items()})
    teacher = sum(logit_sums) / sum(counts)  # every kept model, of every architecture
    fused, out = [], dict(local)
    for g, (group, (params, model_state)) in enumerate(zip(self.groups, averages)):
      distiller = self.distillation.with_logits(group.logits_fn)
      model, metrics = distiller.distill(params, model_state, teacher,
                                         jax.random.fold_in(key, 1000 + g))
      fused.append((model, model_state))
      out.update({f"group{g}/{k}": v for k, v in metrics.items()})
    return tuple(fused), out

  def _batches(self, round_index: int) -> list:
    return [jax.tree.map(lambda x: x[0], g.clients.batches(round_index, 1,
                                                           range(g.clients.num_workers)))
            for g in self.groups]

  def __call__(self, models: Sequence[tuple[Any, Any]], round_index: int
               ) -> tuple[tuple[tuple[Any, Any], ...], dict]:
    """One round from the prototypes' (params, model_state); their fused models and metrics."""
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), round_index)
    return self._round(tuple(models), self._batches(round_index), key)

  def init(self, models: Sequence[tuple[Any, Any]]) -> HeterogeneousState:
    """The state before round 0, from one `(params, model_state)` per prototype."""
    if len(models) != len(self.groups):
      raise ArgumentError("models", f"{len(models)} models for {len(self.groups)} groups",
                          "one (params, model_state) per group")
    return HeterogeneousState(tuple(tuple(m) for m in models), jnp.int32(0),
                              jax.random.PRNGKey(self.seed))

  def step(self, state: HeterogeneousState) -> tuple[HeterogeneousState, dict]:
    """One round: the next state and the round's metrics."""
    round_index = int(state.round)
    key = jax.random.fold_in(state.key, state.round)
    models, metrics = self._round(state.models, self._batches(round_index), key)
    return HeterogeneousState(models, state.round + 1, state.key), metrics

  def run(self, state: HeterogeneousState, num_rounds: int, *, checkpoint_dir: str | None = None,
          checkpoint_every: int = 1, keep: int = 2, progress: bool | str = False
          ) -> tuple[HeterogeneousState, list[dict]]:
    """Rounds until `num_rounds` are done, resuming from the newest checkpoint in
    `checkpoint_dir` (if any) and saving every `checkpoint_every` rounds and at the end.

    Returns:
      The final state and one record per round of this run (`{"round", **metrics}`), after
      those restored from the checkpoint.
    """
    check_at_least("num_rounds", num_rounds, 1, integer=True)
    check_at_least("checkpoint_every", checkpoint_every, 1, integer=True)
    checkpoints = Checkpoints(checkpoint_dir, keep, say=lambda m: progress_lib.say(
        progress, m)) if checkpoint_dir else None
    try:
      history = []
      if checkpoints is not None and checkpoints.latest_step() is not None:
        done, state, meta = checkpoints.restore(jax.tree.map(jnp.zeros_like, state))
        history = list(meta.get("history", []))
        progress_lib.say(progress, f"resumed from the checkpoint at round {done}")
      with progress_lib.Progress(progress, int(state.round), num_rounds) as bar:
        while int(state.round) < num_rounds:
          state, metrics = self.step(state)
          done = int(state.round)
          history.append({"round": done, **{k: float(v) for k, v in
                                            jax.device_get(metrics).items()}})
          bar.update(done, history[-1], 0.0)
          if checkpoints is not None and (done % checkpoint_every == 0 or done == num_rounds):
            checkpoints.save(done, state, {"history": list(history)})
      return state, history
    finally:
      if checkpoints is not None:
        checkpoints.close()
