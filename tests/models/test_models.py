"""Models as pure functions: shapes, sizes, and BatchNorm state that only training updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdist import models
from jaxdist.config import default
from jaxdist.errors import ConfigError


def _model(name, input_shape, **fields):
  config = default().model
  config.name = name
  config.update(fields)
  return models.build(config, input_shape, 10)


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


def test_unknown_model_is_refused():
  with pytest.raises(ConfigError, match=r"model.name: unknown model 'vit'.*'resnet20'"):
    _model("vit", (40,))
