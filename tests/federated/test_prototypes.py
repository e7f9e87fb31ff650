"""Heterogeneous models (Alg. 18): prototypes of two widths distilled from every model's logits."""

from __future__ import annotations

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


def test_prototypes_are_distilled_towards_one_teacher_of_every_architecture():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 160).astype(np.int32)
  x = (rng.normal(size=(3, 4))[y] * 2 + rng.normal(size=(160, 4))).astype(np.float32)
  arrays = {"input": x, "label": y}
  by_class = [np.flatnonzero(y == c) for c in range(3)]
  groups, models = [], []
  for width, split in ((8, [by_class[0], by_class[1]]), (32, [by_class[1], by_class[2]])):
    model = jaxdist.models.from_flax(Net(width), jax.ShapeDtypeStruct((1, 4), jnp.float32))
    task = jaxdist.classification(model)
    local = federated.LocalTraining(task.loss, learning_rate=0.3, batch_size=16, epochs=1)
    logits = lambda p, s, v, model=model: model.apply(p, s, v, False)[0]
    groups.append(prototypes.Group(local, logits, federated.ClientData(arrays, split,
                                                                       cohort_size=2)))
    models.append(model.init(jax.random.PRNGKey(width)))
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
