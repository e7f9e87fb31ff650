"""The large-batch recipe: scaled learning rate, warmup and decays counted in samples, Nesterov."""

import inspect
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdist
from helpers import linear_regression_loss, regression_data, run_algorithm
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import build, overrides
from jaxdist.experiment.config import default
from jaxdist.optim import optimizers, presets, schedules

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config(argument):
  return overrides.load(str(ROOT / "configs" / argument))


def _optim(**fields):
  config = default().optim
  config.update(fields)
  return config


def _schedule(config, **sizes):
  """The rate of an optim config section, as the experiment layer builds it."""
  return build.learning_rate(config, **sizes)


def _optimizer(config, lr, **kwargs):
  """The optimizer of an optim config section on the rate `lr`."""
  return build.optimizer(config, **kwargs)(lr)


def test_linear_scaling_warmup_and_step_decay_in_samples():
  # CIFAR-like: N = 50,000, K = 16 workers x 128 = 2048 per step, base 0.1 at batch 128.
  config = _optim(base_lr=0.1, base_batch=128, warmup_epochs=5.0, decay_at=(0.5, 0.75))
  steps = 300 * 50_000 // 2048
  lr = _schedule(config, global_batch=2048, train_size=50_000, total_steps=steps)
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
  lr = _schedule(config, global_batch=400, train_size=4000, total_steps=100)
  assert float(lr(0)) == pytest.approx(0.01)
  assert float(lr(50)) == pytest.approx(0.2)


def test_nesterov_forms_agree():
  """PyTorch's Nesterov iterate y_t equals the thesis's look-ahead form x_t + u v_t ([Lin22]
  §3.5)."""
  with jax.enable_x64(True):
    hessian = jnp.diag(jnp.array([1.0, 10.0, 0.1]))
    grad = lambda x: hessian @ x
    lr, u = 0.05, 0.9
    tx = _optimizer(_optim(weight_decay=0.0, momentum=u), optax.constant_schedule(lr))
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
    tx = _optimizer(_optim(weight_decay=0.1, momentum=0.0, decay_norm_and_bias=all_params),
                           optax.constant_schedule(1.0))
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(-0.1)
    expected = -0.1 if all_params else 0.0
    assert float(updates["dense"]["bias"][0]) == pytest.approx(expected)
    assert float(updates["norm"]["scale"][0]) == pytest.approx(expected)


@pytest.mark.parametrize("fields, message", [
    ({"decay_at": (0.75, 0.5)}, r"optim.decay_at: \(0.75, 0.5\) are not increasing"),
    ({"decay_at": (0.5, 1.2)}, r"optim.decay_at"),
    ({"warmup_epochs": 50.0}, r"optim.warmup_epochs: 50 epochs of warmup do not fit"),
    ({"lr_scaling": "cubic"}, r"optim.lr_scaling: unknown value 'cubic'.*'linear', 'sqrt'"),
    ({"schedule": "sine"}, r"optim.schedule: unknown value 'sine'"),
    ({"base_lr": float("inf")}, r"optim.base_lr: inf is not a number"),
    ({"warmup_start_lr": -0.1, "warmup_epochs": 1.0}, r"optim.warmup_start_lr: must be >= 0"),
])
def test_bad_schedules_are_refused_with_the_field(fields, message):
  with pytest.raises(ConfigError, match=message):
    _schedule(_optim(**fields), global_batch=256, train_size=1000, total_steps=100)


def test_the_library_names_its_arguments():
  with pytest.raises(ArgumentError, match=r"^decay_at: "):
    schedules.learning_rate(0.1, global_batch=8, train_size=100, total_steps=10,
                            schedule="step", decay_at=(0.9, 0.1))
  for make, message in ((lambda: optimizers.sgd(0.1, momentum=1.5), r"momentum: 1.5 is not a"),
                        (lambda: optimizers.adam(0.1, b2=1.5), r"b2: 1.5 is not a decay rate"),
                        (lambda: optimizers.lars(0.1, trust_clip=(2, 1)), r"trust_clip: "),
                        (lambda: optimizers.sgd(0.1, weight_decay=-1), r"weight_decay: must")):
    with pytest.raises(ArgumentError, match=message):
      make()


def test_library_defaults_are_the_plain_methods():
  """sgd: no momentum, no weight decay; x - lr * g."""
  params, grads = {"kernel": jnp.ones((2, 2))}, {"kernel": jnp.full((2, 2), 3.0)}
  tx = optimizers.sgd(0.1)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.3 * np.ones((2, 2)), rtol=1e-6)


def _run(tx, params, grads_per_step):
  state = tx.init(params)
  out = []
  for grads in grads_per_step:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out


def _problem(steps=4, seed=0):
  rng = np.random.default_rng(seed)
  params = {"kernel": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=4), jnp.float32)}
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.1, jnp.float32), params)
           for _ in range(steps)]
  return params, grads


def test_lars_agrees_with_optax_where_the_definitions_coincide():
  params, grads = _problem()
  lr = optax.linear_schedule(0.5, 2.0, 4)  # a changing rate: the momentum placement matters
  config = _optim(optimizer="lars", weight_decay=0.01, trust_denominator="norm_of_sum",
                  adapt_norm_and_bias=True, decay_norm_and_bias=True, nesterov=False, eps=0.0)
  reference = optax.lars(lr, weight_decay=0.01, momentum=0.9)
  ours = optimizers.scale_by_lars(lr, weight_decay=0.01, momentum=0.9,
                                  trust_denominator="norm_of_sum")
  chosen = _optimizer(config, lr)
  for a, b, c in zip(_run(reference, params, grads), _run(ours, params, grads),
                     _run(chosen, params, grads)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5), a, b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5), a, c)


def test_lars_thesis_form_by_hand():
  """[You20] ch. 5: ratio l*||w||/(||g|| + wd*||w||), clipped; d = clip(g + wd*w); the reference
  code's learning rate outside the momentum; biases get plain momentum SGD."""
  w = jnp.array([[3.0, 4.0]])  # ||w|| = 5
  g = jnp.array([[0.3, 0.0]])  # ||g|| = 0.3
  params, grads = {"kernel": w, "bias": jnp.array([1.0])}, {"kernel": g, "bias": jnp.array([2.0])}
  config = _optim(optimizer="lars", weight_decay=0.1, trust_coefficient=0.01, nesterov=False,
                  lars_momentum="lr_outside", trust_clip=(0.0, 0.05), grad_clip_value=0.5)
  tx = _optimizer(config, optax.constant_schedule(2.0))
  updates, state = tx.update(grads, tx.init(params), params)
  ratio = min(0.01 * 5.0 / (0.3 + 0.1 * 5.0), 0.05)  # 0.0625 -> clipped to 0.05
  d = np.clip(np.asarray(g + 0.1 * w), -0.5, 0.5)
  np.testing.assert_allclose(updates["kernel"], -2.0 * ratio * d, rtol=1e-6)
  np.testing.assert_allclose(updates["bias"], [-2.0 * 0.5], rtol=1e-6)  # clipped, ratio 1
  updates, _ = tx.update(grads, state, params)  # a = 0.9*d + d, scaled by lr*ratio
  np.testing.assert_allclose(updates["kernel"], -2.0 * ratio * 1.9 * d, rtol=1e-6)
  # The optax denominator ||g + wd*w|| gives a different step.
  other = _optimizer(_optim(optimizer="lars", weight_decay=0.1, trust_coefficient=0.01,
                                   trust_denominator="norm_of_sum", momentum=0.0),
                            optax.constant_schedule(2.0))
  other_updates, _ = other.update(grads, other.init(params), params)
  ratio_optax = 0.01 * 5.0 / float(jnp.linalg.norm(g + 0.1 * w))
  np.testing.assert_allclose(other_updates["kernel"], -2.0 * ratio_optax * (g + 0.1 * w),
                             rtol=1e-6)


@pytest.mark.parametrize("lars_momentum", ["lr_inside", "lr_outside"])
def test_lars_keeps_nesterov_with_the_thesis_denominator_and_weight_decay(lars_momentum):
  """nesterov=True is Nesterov in both placements of the rate, also where optax.lars is not used
  (||g|| + wd ||w|| with wd > 0): w -= m a + lr r d, or lr r (m a + d), a the new buffer."""
  w, g = jnp.array([[3.0, 4.0]]), jnp.array([[0.3, 0.0]])
  params, grads = {"kernel": w}, {"kernel": g}
  config = _optim(optimizer="lars", weight_decay=0.1, trust_coefficient=0.01, momentum=0.9,
                  nesterov=True, lars_momentum=lars_momentum)
  tx = _optimizer(config, optax.constant_schedule(2.0))
  ratio, d = 0.01 * 5.0 / (0.3 + 0.1 * 5.0), np.asarray(g + 0.1 * w)
  state = tx.init(params)
  for a in (d, 1.9 * d):  # the buffer after steps 1 and 2 (in units of lr * ratio)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["kernel"], -2.0 * ratio * (0.9 * a + d), rtol=1e-6)
  # The EXTRAP config (Nesterov + LARS, [Lin22] ch. 3) trains Nesterov LARS.
  extrap = _config("extrap/cifar10_resnet20.py").optim
  assert extrap.optimizer == "lars" and extrap.nesterov and extrap.weight_decay > 0
  tx = _optimizer(extrap, optax.constant_schedule(1.0))
  heavy_ball = _optimizer(_optim(**{**extrap.to_dict(), "nesterov": False}),
                          optax.constant_schedule(1.0))
  first = tx.update(grads, tx.init(params), params)[0]["kernel"]
  plain = heavy_ball.update(grads, heavy_ball.init(params), params)[0]["kernel"]
  np.testing.assert_allclose(first, 1.9 * plain, rtol=1e-6)


def test_lars_trust_ratio_epsilon_defaults_follow_the_sources():
  """[You20] ch. 5 prints no epsilon (library and config default 0, as optax.lars); the
  reference code's 1e-5 is in the ch. 5 preset and config. Adam's eps does not reach LARS."""
  assert inspect.signature(optimizers.lars).parameters["eps"].default == 0.0
  assert default().optim.trust_eps == 0.0
  w, g = jnp.array([[3.0, 4.0]]), jnp.array([[0.3, 0.0]])
  config = _optim(optimizer="lars", weight_decay=0.0, momentum=0.0, eps=0.5)  # Adam's eps
  tx = _optimizer(config, optax.constant_schedule(1.0))
  updates = tx.update({"kernel": g}, tx.init({"kernel": w}), {"kernel": w})[0]
  np.testing.assert_allclose(updates["kernel"], -0.001 * 5.0 / 0.3 * g, rtol=1e-6)
  assert _config("large_batch/cifar10_resnet20.py:optimizer=lars"
                      ).optim.trust_eps == 1e-5


def test_lars_zero_norm_leaf_gets_ratio_one():
  params, grads = {"kernel": jnp.zeros((2, 2))}, {"kernel": jnp.ones((2, 2))}
  tx = optimizers.scale_by_lars(1.0, momentum=0.0, trust_coefficient=0.001)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -np.ones((2, 2)))


def test_lamb_agrees_with_optax_and_its_variants_by_hand():
  params, grads = _problem()
  lr = optax.constant_schedule(0.01)
  base = dict(optimizer="lamb", weight_decay=0.01, adapt_norm_and_bias=True, eps=1e-6)
  reference = optax.lamb(lr, weight_decay=0.01, mask=optimizers.is_weight_matrix)
  chosen = _optimizer(_optim(**base), lr)
  custom = optax.chain(optimizers.scale_by_adam(eps=1e-6),
                       optax.add_decayed_weights(0.01, optimizers.is_weight_matrix),
                       optimizers.scale_by_trust_ratio(), optax.scale_by_learning_rate(lr))
  for a, b, c in zip(_run(reference, params, grads), _run(chosen, params, grads),
                     _run(custom, params, grads)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5), a, b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5), a, c)
  # As printed in Alg. 16: eps inside the square root, no bias correction, bias left unadapted.
  tx = _optimizer(_optim(**{**base, "eps_inside_sqrt": True, "bias_correction": False,
                                   "adapt_norm_and_bias": False}), lr)
  updates, _ = tx.update(grads[0], tx.init(params), params)
  g, w = np.asarray(grads[0]["kernel"]), np.asarray(params["kernel"])
  m, v = 0.1 * g, 0.001 * g**2
  r = m / np.sqrt(v + 1e-6) + 0.01 * w
  np.testing.assert_allclose(updates["kernel"], -0.01 * np.linalg.norm(w) / np.linalg.norm(r) * r,
                             rtol=1e-5)
  gb = np.asarray(grads[0]["bias"])
  np.testing.assert_allclose(updates["bias"], -0.01 * (0.1 * gb) / np.sqrt(0.001 * gb**2 + 1e-6),
                             rtol=1e-5)


@pytest.mark.parametrize("optimizer, norm", [("lars", "l2"), ("lamb", "l2"), ("lars", "l1"),
                                             ("lamb", "linf")])
def test_trust_ratio_norms_combine_across_shards(optimizer, norm):
  """A tensor split over 8 devices gets the trust ratio of the whole tensor."""
  params, grads = _problem(steps=1)
  params = {"kernel": jnp.tile(params["kernel"], (4, 1))}  # [24, 4]: 3 rows per device
  grads = [{"kernel": jnp.tile(grads[0]["kernel"], (4, 1))}]
  config = _optim(optimizer=optimizer, weight_decay=0.01, trust_norm=norm)
  whole = _run(_optimizer(config, optax.constant_schedule(0.1)), params, grads)[0]
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("shards",))
  tx = _optimizer(config, optax.constant_schedule(0.1), norm_axes=("shards",))

  def sharded_step(p, g):
    return tx.update(g, tx.init(p), p)[0]

  spec = jax.sharding.PartitionSpec("shards")
  split = jax.jit(jax.shard_map(sharded_step, mesh=mesh, in_specs=(spec, spec), out_specs=spec))
  np.testing.assert_allclose(split(params, grads[0])["kernel"], whole["kernel"], rtol=1e-5)


def test_polynomial_decay_and_legw_warmup():
  config = _optim(base_lr=0.1, base_batch=100, lr_scaling="sqrt", schedule="poly",
                  decay_power=1.0, warmup_epochs=0.5, warmup_scaling="legw", warmup_start_lr=0.0)
  # Batch 400 = 4x base: LEGW warms up for 4 x 0.5 = 2 epochs = 2 x 1000 / 400 = 5 steps.
  lr = _schedule(config, global_batch=400, train_size=1000, total_steps=25)
  peak = 0.1 * 2.0
  assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(peak)
  assert float(lr(4)) == pytest.approx(0.8 * peak)
  assert float(lr(15)) == pytest.approx(peak * 0.5)  # halfway through the decay
  assert float(lr(25)) == pytest.approx(0.0, abs=1e-7)


def test_presets_are_the_thesis_recipes():
  """lin22_sgd: linear scaling from 0.1 at 128, warmup over 5 epochs, /10 at 50% and 75% of the
  samples, Nesterov 0.9 with weight decay 1e-4 off biases; the You20 presets build and step."""
  sizes = dict(global_batch=1024, train_size=50_000, total_steps=1000)
  recipe = presets.lin22_sgd(**sizes)
  lr = recipe["learning_rate"]
  assert float(lr(0)) == pytest.approx(0.1)
  assert float(lr(300)) == pytest.approx(0.8)  # past the 244-step warmup: 0.1 * 1024 / 128
  assert float(lr(600)) == pytest.approx(0.08) and float(lr(800)) == pytest.approx(0.008)
  tx = recipe["optimizer"](optax.constant_schedule(1.0))
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Nesterov on the first step: g + 0.9 g with g = 1 (+ 1e-4 on the kernel only)
  np.testing.assert_allclose(updates["kernel"], -1.9 * (1 + 1e-4), rtol=1e-6)
  np.testing.assert_allclose(updates["bias"], -1.9, rtol=1e-6)
  for preset in (presets.you20_lars, presets.you20_lamb):
    recipe = preset(**sizes)
    tx = recipe["optimizer"](recipe["learning_rate"])
    updates, _ = tx.update(grads, tx.init(params), params)
    assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))


def test_lars_alg15_normalises_the_ema_momentum():
  """[You20] ch. 6 Alg. 15: m = b1 m + (1 - b1)(g + wd x), x -= lr phi(||x||) m / ||m||; with
  phi(z) = z every step has norm lr ||x|| (C1a), phi clipped to `trust_clip` caps it."""
  params, grads = _problem(steps=2)
  config = _optim(optimizer="lars", lars_momentum="ema_normalized", momentum=0.8,
                  weight_decay=0.01, adapt_norm_and_bias=True, decay_norm_and_bias=True)
  updates = _run(_optimizer(config, optax.constant_schedule(0.1)), params, grads)
  x = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in x.items()}
  for step, g in enumerate(grads):
    for k in x:
      m[k] = 0.8 * m[k] + 0.2 * (np.asarray(g[k]) + 0.01 * x[k])
      expected = -0.1 * np.linalg.norm(x[k]) / np.linalg.norm(m[k]) * m[k]
      np.testing.assert_allclose(updates[step][k], expected, rtol=2e-5)
      assert np.linalg.norm(updates[step][k]) == pytest.approx(0.1 * np.linalg.norm(x[k]),
                                                                rel=1e-5)
      x[k] = x[k] + np.asarray(updates[step][k])
  capped = _optimizer(_optim(**{**config.to_dict(), "trust_clip": (0.0, 0.5)}),
                      optax.constant_schedule(0.1))
  update = _run(capped, params, grads[:1])[0]["kernel"]
  assert np.linalg.norm(update) == pytest.approx(0.1 * 0.5, rel=1e-5)


def test_trust_ratio_in_l1_and_linf_norms():
  """ch. 6 Fig. 6.4: the trust ratio's norms L1 or L-infinity instead of L2."""
  w, g = jnp.array([[3.0, -4.0]]), jnp.array([[0.3, 0.1]])
  params, grads = {"kernel": w}, {"kernel": g}
  for norm, of in (("l1", lambda v: np.abs(v).sum()), ("linf", lambda v: np.abs(v).max())):
    lars = _optimizer(_optim(optimizer="lars", weight_decay=0.1, momentum=0.0, nesterov=False,
                             trust_norm=norm), optax.constant_schedule(1.0))
    update = lars.update(grads, lars.init(params), params)[0]["kernel"]
    ratio = 0.001 * of(w) / (of(g) + 0.1 * of(w))
    np.testing.assert_allclose(update, -ratio * (g + 0.1 * w), rtol=1e-6)
    lamb = _optimizer(_optim(optimizer="lamb", weight_decay=0.0, trust_norm=norm, b1=0.0,
                             b2=0.0, eps=0.0), optax.constant_schedule(1.0))
    update = lamb.update(grads, lamb.init(params), params)[0]["kernel"]  # r = sign(g)
    np.testing.assert_allclose(update, -of(w) / of(np.sign(g)) * np.sign(g), rtol=1e-6)


@pytest.mark.parametrize("variant", ["n_lamb", "nn_lamb"])
def test_n_lamb_and_nn_lamb_by_hand(variant):
  """Alg. 17 / 18 with constant beta_i^t: Nesterov's momentum on the first moment (and on the
  second), epsilon inside the square root as printed."""
  params, grads = _problem(steps=3)
  b1, b2, eps, wd = 0.975, 0.999, 1e-8, 0.01
  config = _optim(optimizer="lamb", lamb_variant=variant, b1=b1, b2=b2, eps=eps,
                  eps_inside_sqrt=True, weight_decay=wd, adapt_norm_and_bias=True)
  updates = _run(_optimizer(config, optax.constant_schedule(0.01)), params, grads)
  x = np.asarray(params["kernel"], np.float64)
  m = v = np.zeros_like(x)
  for t, g in enumerate((np.asarray(g["kernel"], np.float64) for g in grads), start=1):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
    m_hat = b1 * m / (1 - b1**(t + 1)) + (1 - b1) * g / (1 - b1**t)
    v_hat = b2 * v / (1 - b2**(t + 1)) + ((1 - b2) * g**2 / (1 - b2**t)
                                          if variant == "nn_lamb" else 0)
    u = m_hat / np.sqrt(v_hat + eps) + wd * x
    expected = -0.01 * np.linalg.norm(x) / np.linalg.norm(u) * u
    np.testing.assert_allclose(updates[t - 1]["kernel"], expected, rtol=1e-4)
    x = x + np.asarray(updates[t - 1]["kernel"])


def test_adamw_and_adagrad_baselines():
  params, grads = _problem(steps=3)
  lr = optax.constant_schedule(0.01)
  adamw = _optimizer(_optim(optimizer="adamw", weight_decay=0.1, eps=1e-8), lr)
  reference = optax.adamw(lr, eps=1e-8, weight_decay=0.1, mask=optimizers.is_weight_matrix)
  for a, b in zip(_run(adamw, params, grads), _run(reference, params, grads)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)
  adagrad = _optimizer(_optim(optimizer="adagrad", weight_decay=0.0, eps=1e-7,
                              initial_accumulator=0.1), lr)
  first = _run(adagrad, params, grads[:1])[0]
  g = np.asarray(grads[0]["kernel"])
  np.testing.assert_allclose(first["kernel"], -0.01 * g / np.sqrt(0.1 + g**2 + 1e-7),
                             rtol=1e-4)


def test_trust_ratios_are_logged_per_tensor():
  """[You20] Table 5.6: ||w|| / ||g|| of every tensor, from the averaged gradient."""
  batches, params = regression_data(4, steps=1)
  algorithm = jaxdist.minibatch_sgd(linear_regression_loss, learning_rate=0.05,
                                    log_trust_ratios=True)
  _, metrics = run_algorithm(algorithm, params, batches)
  grad = jax.grad(lambda p, b: linear_regression_loss(p, {}, b, None)[0])
  mean = jax.tree.map(lambda g: np.asarray(g).mean(0), jax.vmap(grad, (None, 0))(
      params, jax.tree.map(lambda b: b[0], batches)))
  for name in ("w", "b"):
    expected = np.linalg.norm(params[name]) / np.linalg.norm(mean[name])
    assert float(metrics[f"trust_ratio/{name}"][0]) == pytest.approx(expected, rel=1e-5)


def test_neelakantan_gradient_noise_has_the_decaying_variance():
  """[Lin22] Table 11.9's baseline: g + N(0, eta / (1 + t)^gamma), before the optimizer."""
  config = _optim(optimizer="sgd", momentum=0.0, weight_decay=0.0, gradient_noise_eta=0.01,
                  gradient_noise_gamma=1.0)
  params = {"kernel": jnp.zeros((200, 100))}
  updates = _run(_optimizer(config, optax.constant_schedule(1.0)), params,
                 [jax.tree.map(jnp.zeros_like, params)] * 4)
  for t, update in enumerate(updates):
    assert float(jnp.var(update["kernel"])) == pytest.approx(0.01 / (1 + t), rel=0.05)
  assert float(jnp.abs(updates[0]["kernel"] - updates[1]["kernel"]).max()) > 0
  with pytest.raises(ConfigError, match=r"optim.gradient_noise_eta: must be >= 0"):
    build.optimizer(_optim(gradient_noise_eta=-1.0))
