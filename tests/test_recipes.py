"""The large-batch recipe: scaled learning rate, warmup and decays counted in samples, Nesterov."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdist import recipes
from jaxdist.config import default
from jaxdist.errors import ConfigError


def _optim(**fields):
  config = default().optim
  config.update(fields)
  return config


def test_linear_scaling_warmup_and_step_decay_in_samples():
  # CIFAR-like: N = 50,000, K = 16 workers x 128 = 2048 per step, base 0.1 at batch 128.
  config = _optim(base_lr=0.1, base_batch=128, warmup_epochs=5.0, decay_at=(0.5, 0.75))
  steps = 300 * 50_000 // 2048
  lr = recipes.learning_rate(config, global_batch=2048, train_size=50_000, total_steps=steps)
  k = 2048 / 128
  assert float(lr(0)) == pytest.approx(0.1)
  # [Lin22] App. 11.1.3: per-iteration increment (k*eta - eta) / (5N / (k*n)), n = 128.
  increment = (k * 0.1 - 0.1) / (5 * 50_000 / (k * 128))
  assert float(lr(10) - lr(9)) == pytest.approx(increment, rel=1e-5)
  warmup_steps = 5 * 50_000 / 2048
  assert float(lr(int(warmup_steps) + 1)) == pytest.approx(k * 0.1)
  # The rate drops once 50% (75%) of all samples have been seen.
  first_after = lambda fraction: int(np.ceil(fraction * steps * 2048 / 2048))
  assert float(lr(first_after(0.5) - 1)) == pytest.approx(1.6)
  assert float(lr(first_after(0.5))) == pytest.approx(0.16)
  assert float(lr(first_after(0.75) - 1)) == pytest.approx(0.16)
  assert float(lr(first_after(0.75))) == pytest.approx(0.016)


def test_square_root_scaling_and_explicit_warmup_start():
  config = _optim(base_lr=0.1, base_batch=100, lr_scaling="sqrt", warmup_epochs=1.0,
                  warmup_start_lr=0.01, schedule="constant")
  lr = recipes.learning_rate(config, global_batch=400, train_size=4000, total_steps=100)
  assert float(lr(0)) == pytest.approx(0.01)
  assert float(lr(50)) == pytest.approx(0.2)


def test_nesterov_forms_agree():
  """PyTorch's Nesterov iterate y_t equals the thesis's look-ahead form x_t + u v_t ([Lin22] §3.5)."""
  with jax.enable_x64(True):
    hessian = jnp.diag(jnp.array([1.0, 10.0, 0.1]))
    grad = lambda x: hessian @ x
    lr, u = 0.05, 0.9
    tx = recipes.optimizer(_optim(weight_decay=0.0, momentum=u), optax.constant_schedule(lr))
    y = jnp.array([1.0, -2.0, 3.0])
    state = tx.init(y)
    x, v = y, jnp.zeros(3)
    for _ in range(50):
      updates, state = tx.update(grad(y), state, y)
      y = optax.apply_updates(y, updates)
      v = u * v - lr * grad(x + u * v)  # look-ahead form (L857)
      x = x + v
    np.testing.assert_allclose(y, x + u * v, rtol=1e-12, atol=1e-14)


def test_weight_decay_skips_biases_and_normalisation_parameters():
  params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
            "norm": {"scale": jnp.ones(3), "bias": jnp.ones(3)}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  for all_params in (False, True):
    tx = recipes.optimizer(_optim(weight_decay=0.1, momentum=0.0, decay_norm_and_bias=all_params),
                           optax.constant_schedule(1.0))
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(-0.1)
    expected = -0.1 if all_params else 0.0
    assert float(updates["dense"]["bias"][0]) == pytest.approx(expected)
    assert float(updates["norm"]["scale"][0]) == pytest.approx(expected)


@pytest.mark.parametrize("fields, message", [
    ({"decay_at": (0.75, 0.5)}, r"optim.decay_at: \(0.75, 0.5\) are not increasing"),
    ({"decay_at": (0.5, 1.2)}, r"optim.decay_at"),
    ({"warmup_epochs": 50.0}, r"optim.warmup_epochs: 50.0 epochs of warmup do not fit"),
    ({"lr_scaling": "cubic"}, r"optim.lr_scaling: unknown rule 'cubic'.*'linear', 'sqrt'"),
    ({"schedule": "poly"}, r"optim.schedule: unknown schedule 'poly'"),
])
def test_bad_schedules_are_refused(fields, message):
  with pytest.raises(ConfigError, match=message):
    recipes.learning_rate(_optim(**fields), global_batch=256, train_size=1000, total_steps=100)
