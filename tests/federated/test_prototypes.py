"""Heterogeneous models (Alg. 18): prototypes of two widths distilled from every model's logits."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxdist
from jaxdist import federated
from jaxdist.federated import prototypes


class Net(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3)(nn.relu(nn.Dense(self.width)(x)))


def _setup(clients_per_group=2, cohort_size=2, learning_rate=0.3):
  """Two prototypes (widths 8 and 32) on three Gaussian classes; each group's clients split its
  two classes; the unlabeled pool is uniform noise."""
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 160).astype(np.int32)
  x = (rng.normal(size=(3, 4))[y] * 2 + rng.normal(size=(160, 4))).astype(np.float32)
  arrays = {"input": x, "label": y}
  by_class = [np.flatnonzero(y == c) for c in range(3)]
  groups, models = [], []
  for width, classes in ((8, (0, 1)), (32, (1, 2))):
    model = jaxdist.models.from_flax(Net(width), jax.ShapeDtypeStruct((1, 4), jnp.float32))
    task = jaxdist.classification(model)
    local = federated.LocalTraining(task.loss, learning_rate=learning_rate, batch_size=16,
                                    epochs=1)
    logits = lambda p, s, v, model=model: model.apply(p, s, v, False)[0]
    split = [part for c in classes for part in np.array_split(by_class[c],
                                                              clients_per_group // 2)]
    groups.append(prototypes.Group(local, logits, federated.ClientData(
        arrays, split, cohort_size=cohort_size)))
    models.append(model.init(jax.random.PRNGKey(width)))
  return groups, models, arrays


def test_prototypes_are_distilled_towards_one_teacher_of_every_architecture():
  groups, models, _ = _setup()
  pool = federated.uniform_noise((4,), 128, -4, 4)

  def after_one_round(steps):
    distillation = federated.EnsembleDistillation(groups[0].logits_fn, pool, steps=steps,
                                                  batch_size=64, learning_rate=1e-2)
    return prototypes.HeterogeneousRounds(groups, distillation)(models, 0)

  def disagreement(fused):
    a, b = (jax.nn.softmax(g.logits_fn(p, s, pool)) for g, (p, s) in zip(groups, fused))
    return float(jnp.mean(jnp.abs(a - b)))

  averaged, metrics = after_one_round(0)
  distilled, metrics = after_one_round(100)
  for (p, _), (q, _) in zip(averaged, models):  # each prototype keeps its architecture
    assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape, q)
  assert float(metrics["group1/server/distill_steps"]) == 100
  assert 0 <= float(metrics["group0/local/accuracy"]) <= 1
  assert disagreement(distilled) < 0.5 * disagreement(averaged)


def test_heterogeneous_rounds_resume_from_a_checkpoint_bit_for_bit(tmp_path, capsys):
  groups, models, _ = _setup(clients_per_group=4, cohort_size=2)
  distillation = federated.EnsembleDistillation(
      groups[0].logits_fn, federated.uniform_noise((4,), 64, -4, 4), steps=5, batch_size=32)
  rounds = prototypes.HeterogeneousRounds(groups, distillation, seed=3)
  unbroken, history = rounds.run(rounds.init(models), 4)
  directory = str(tmp_path / "ckpt")
  stopped, _ = rounds.run(rounds.init(models), 2, checkpoint_dir=directory, checkpoint_every=2)
  assert int(stopped.round) == 2
  capsys.readouterr()
  resumed, resumed_history = rounds.run(rounds.init(models), 4, checkpoint_dir=directory,
                                        checkpoint_every=2, progress="lines")
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "resumed from the checkpoint at round 2" and len(lines) == 3  # rounds 3, 4
  assert int(resumed.round) == 4 and len(resumed_history) == 4
  chex.assert_trees_all_equal(resumed, unbroken)
  assert resumed_history == history
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, unbroken.models[1],
                                       stopped.models[1]))  # the rounds after 2 did something


def test_drop_worst_leaves_a_random_guessing_client_out_of_its_prototype():
  groups, models, arrays = _setup()
  # group 0: client 0 sees every class and learns; client 1 sees class 0 alone and predicts it
  # everywhere (about 1/3 accuracy, below drop_worst = 0.45)
  everything, class0 = np.arange(160), np.flatnonzero(arrays["label"] == 0)
  groups[0] = groups[0]._replace(clients=federated.ClientData(arrays, [everything, class0],
                                                              cohort_size=2))
  validation = {"input": arrays["input"][:80], "label": arrays["label"][:80]}
  pool = federated.uniform_noise((4,), 64, -4, 4)

  def fused(drop_worst):
    distillation = federated.EnsembleDistillation(groups[0].logits_fn, pool, steps=0,
                                                  validation=validation, drop_worst=drop_worst)
    return prototypes.HeterogeneousRounds(groups, distillation, seed=5)(models, 0)

  (dropped, _), metrics = fused(0.45)
  assert float(metrics["group0/server/kept_clients"]) == 1
  assert float(metrics["group1/server/kept_clients"]) == 2
  # the fused prototype is client 0's model alone (the same local training, the same keys),
  # not an average with client 1's
  batches = jax.tree.map(lambda x: x[0], groups[0].clients.batches(0, 1, range(2)))
  keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(5), 0), 0),
                          2)
  train = jax.jit(jax.vmap(groups[0].local.train, in_axes=(None, None, 0, 0)))
  clients, _, _ = train(*models[0], batches, keys)
  client0, client1 = (jax.tree.map(lambda x, k=k: x[k], clients) for k in (0, 1))
  chex.assert_trees_all_close(dropped[0], client0, atol=1e-6)
  assert not jax.tree.all(jax.tree.map(lambda a, b: jnp.allclose(a, b, atol=1e-2),
                                       client0, client1))
