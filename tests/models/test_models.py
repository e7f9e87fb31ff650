"""Models as pure functions: shapes, sizes, and BatchNorm state that only training updates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist import models
from jaxdist.errors import ArgumentError


def _model(name, input_shape, **fields):
  return models.build(name, input_shape, 10, **fields)


@pytest.mark.parametrize("name", ["logistic_regression", "mlp", "cnn"])
@pytest.mark.parametrize("input_shape", [(40,), (8, 8, 1)])
def test_models_map_inputs_to_logits(name, input_shape):
  model = _model(name, input_shape)
  params, model_state = model.init(jax.random.PRNGKey(0))
  logits, _ = model.apply(params, model_state, jnp.ones((3, *input_shape)), True)
  assert logits.shape == (3, 10) and model_state == {}


def test_resnet20_has_the_cifar_architecture_and_batchnorm_state():
  model = _model("resnet20", (32, 32, 3))
  params, model_state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  sizes = [np.prod(p.shape) for p in jax.tree.leaves(params)]
  # 19 3x3 convolutions + 2 projections + classifier; ~0.27M parameters (He et al. 2016).
  convs = [p for p in jax.tree.leaves(params) if p.ndim == 4]
  assert len(convs) == 21 and 0.26e6 < sum(sizes) < 0.28e6
  assert set(model_state) == {"batch_stats"}


def test_batchnorm_statistics_change_in_training_only():
  model = _model("resnet20", (8, 8, 1), width=4)
  params, model_state = model.init(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  _, trained = model.apply(params, model_state, x, True)
  _, evaluated = model.apply(params, model_state, x, False)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), model_state, trained)
  assert all(jax.tree.leaves(changed))
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), model_state, evaluated))


def test_bad_models_are_refused():
  with pytest.raises(ArgumentError, match=r"model: unknown value 'vit'.*'resnet20'"):
    _model("vit", (40,))
  with pytest.raises(ArgumentError, match=r"hidden: must be >= 1, got 0"):
    _model("mlp", (40,), hidden=(0,))
  with pytest.raises(ArgumentError, match=r"module: .* is not a flax module"):
    models.from_flax(lambda x: x, np.zeros((1, 3)))


def test_a_users_flax_module_becomes_pure_functions():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))
      return nn.Dense(3)(x)

  model = models.from_flax(Net(), np.zeros((2, 5), np.float32))
  params, model_state = model.init(jax.random.PRNGKey(0))
  assert set(model_state) == {"batch_stats"}
  logits, updated = model.apply(params, model_state, jnp.ones((6, 5)), True)
  assert logits.shape == (6, 3)
  assert not np.allclose(jax.tree.leaves(updated)[0], jax.tree.leaves(model_state)[0])
