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
  model = _model("resnet8", (8, 8, 1), width=4)
  params, model_state = model.init(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  _, trained = model.apply(params, model_state, x, True)
  _, evaluated = model.apply(params, model_state, x, False)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), model_state, trained)
  assert all(jax.tree.leaves(changed))
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), model_state, evaluated))


@pytest.mark.parametrize("name", ["resnet20_gn", "resnet20_evonorm"])
def test_batch_free_resnets_have_no_model_state_and_do_not_mix_examples(name):
  """GroupNorm (2 groups) and EvoNorm-S0 ([Lin22] Table 9.1): no batch statistics, so an
  example's logits do not depend on the rest of its batch."""
  assert isinstance(models._module(name, 10, (), (), 1, 16), models.ResNet)
  norm = {"resnet20_gn": "group", "resnet20_evonorm": "evonorm"}[name]
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 4))  # a one-block-a-stage stand-in
  model = models.from_flax(models.ResNet(1, 10, width=4, norm=norm), x)
  params, model_state = model.init(jax.random.PRNGKey(0))
  assert model_state == {} and len([p for p in jax.tree.leaves(params) if p.ndim == 3]) == 9
  apply = jax.jit(lambda p, x: model.apply(p, {}, x, True)[0])
  np.testing.assert_allclose(apply(params, x)[:1], apply(params, x[:1]), rtol=1e-5, atol=1e-6)


def test_evonorm_s0_by_hand():
  """x sigmoid(v x) / std over (positions, channels of the group), 2 groups, times gamma."""
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 4))
  norm = models.EvoNormS0(groups=2)
  params = norm.init(jax.random.PRNGKey(0), x)
  out = np.asarray(norm.apply(params, x))
  x = np.asarray(x)
  groups = x.reshape(2, 5, 2, 2)
  std = np.sqrt(groups.var(axis=(1, 3), keepdims=True) + 1e-5)
  expected = ((x / (1 + np.exp(-x))).reshape(groups.shape) / std).reshape(x.shape)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_wide_resnet_16_4_has_its_published_size():
  model = _model("wrn16_4", (32, 32, 3))
  params, model_state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  convs = [p.shape for p in jax.tree.leaves(params) if len(p.shape) == 4]
  # 1 + 3 stages x 2 blocks x 2 convolutions + 3 projections; 2.7M parameters (Zagoruyko 2016)
  assert len(convs) == 16 and sorted({c[-1] for c in convs}) == [16, 64, 128, 256]
  assert 2.7e6 < sum(np.prod(p.shape) for p in jax.tree.leaves(params)) < 2.8e6
  assert set(model_state) == {"batch_stats"}


def test_vgg11_at_half_width_has_no_normalisation():
  model = _model("vgg11", (32, 32, 3))
  params, model_state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  convs = [p.shape for p in jax.tree.leaves(params) if len(p.shape) == 4]
  assert len(convs) == 8 and [c[-1] for c in convs] == [32, 64, 128, 128, 256, 256, 256, 256]
  assert model_state == {} and not any("Norm" in k for k in params)
  small = _model("vgg11", (40,))
  logits = jax.eval_shape(lambda: small.apply(*small.init(jax.random.PRNGKey(0)),
                                              jnp.ones((2, 40)), True)[0])
  assert logits.shape == (2, 10)


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
