"""Config to library: fields handed to arguments, argument errors named as fields, derived steps."""

import functools
import warnings

import chex
import jax
import numpy as np
import optax
import pytest

import jaxdist
from helpers import tiny_config
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import build
from jaxdist.experiment.config import default


def test_post_local_switch_defaults_to_the_first_decay():
  config = default()
  config.algo.name = "post_local_sgd"
  config.optim.decay_at = (0.3, 0.8)
  sizes = dict(global_batch=64, train_size=1000, total_steps=200)
  assert build.switch_step(config, **sizes) == 60
  config.algo.switch_epochs = 2.0
  assert build.switch_step(config, **sizes) == 32  # ceil(2 * 1000 / 64)
  config.algo.switch_epochs, config.optim.schedule = -1.0, "cosine"
  with pytest.raises(ConfigError, match=r"optim.schedule: 'cosine' has no first decay"):
    build.switch_step(config, **sizes)


def test_phases_are_the_step_decays():
  config = default()
  assert build.phase_steps(config, global_batch=32, total_steps=100) == (50, 75)
  config.optim.schedule = "constant"
  assert build.phase_steps(config, global_batch=32, total_steps=100) == ()


def test_argument_errors_come_back_naming_the_field():
  with pytest.raises(ConfigError, match=r"^algo.local_steps: must be >= 1, got 0"):
    with build.fields({"local_steps": "algo.local_steps"}):
      jaxdist.local_sgd(lambda *a: None, learning_rate=0.1, local_steps=0)
  with pytest.raises(ArgumentError, match=r"^local_steps: "):  # not mapped: the argument
    with build.fields({}):
      jaxdist.local_sgd(lambda *a: None, learning_rate=0.1, local_steps=0)


@pytest.mark.parametrize("name, kind", [
    ("minibatch_sgd", "MinibatchSGD"), ("local_sgd", "LocalSGD"),
    ("post_local_sgd", "LocalSGD"), ("dsgd", "DSGD"), ("qg_dsgdm", "QGDSGDm"),
    ("d2_plus", "D2"), ("gradient_tracking", "GradientTracking"), ("choco_sgd", "ChocoSGD"),
    ("dcd_psgd", "DCDPSGD"), ("ecd_psgd", "ECDPSGD"), ("deepsqueeze", "DeepSqueeze"),
    ("sgp", "SGP"), ("shared_momentum", "ExchangedMomentum"),
    ("gradient_gossip", "GradientGossip"), ("dmsgd", "DMSGD"), ("slowmo", "SlowMo")])
def test_every_algorithm_name_builds_the_library_object(name, kind):
  config = default()
  config.algo.name = name
  algorithm = build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1),
                              phase_steps=(50, 75), switch_step=10)
  assert type(algorithm).__name__ == kind


def test_the_decentralized_variants_are_config_fields():
  config = default()
  config.algo.update(name="choco_sgd", choco_order="step_first", public_init="x0",
                     choco_form="error_feedback", compressor="top_k", index_bits=32)
  choco = build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1),
                          phase_steps=(), switch_step=0)
  assert (choco.order, choco.choco.public_init, type(choco.choco).__name__) == (
      "step_first", "x0", "ErrorFeedbackGossip")
  assert choco.choco.compressor.message_bits(1000) == 64 * 10
  config.algo.update(name="qg_dsgdm", consensus_rule="residual", consensus_target=1e-3,
                     phase_targets=())
  config.optim.optimizer = "adam"
  qg = build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1),
                       phase_steps=(5,), switch_step=0)
  assert qg.communication.rule == "residual"
  assert any(type(node).__name__ == "QGAdamState" for node in qg.tx.init({"w": np.zeros(2)}))
  config.algo.choco_order = "later"
  with pytest.raises(ConfigError, match=r"^algo.choco_order: unknown value 'later'"):
    build.validate(config)
  config.algo.choco_order = "gossip_first"
  config.algo.phase_targets = (1e-3, -1.0)  # the error names the field that set the target
  with pytest.raises(ConfigError, match=r"^algo.phase_targets: must be >= 0"):
    build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1), phase_steps=(5,),
                    switch_step=0)


def test_a_config_run_is_the_library_run_with_the_same_pieces(data_dir):
  """The experiment layer only maps fields: its runner, driven by hand, gives its numbers."""
  config = tiny_config(data_dir, train={"num_steps": 8}, eval={"every_steps": 0},
                       checkpoint={"every_steps": 0})
  experiment = build.Experiment(config)
  params, model_state = experiment.initial_model()
  by_config = experiment.runner.fit(params, model_state, num_steps=8, progress=False)
  optimizer = functools.partial(jaxdist.optim.sgd, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
  algorithm = jaxdist.local_sgd(experiment.task.loss, optimizer,
                                learning_rate=experiment.learning_rate, local_steps=4)
  by_hand = jaxdist.train(algorithm, params, model_state, data=experiment.runner.data,
                          num_steps=8, num_workers=4, steps_per_chunk=4, progress=False)
  assert by_config.final["train/loss"] == by_hand.final["train/loss"]


def test_simulated_workers_are_split_over_the_cpu_devices_unless_every_step_all_reduces(data_dir):
  config = default()
  assert build.simulated_layout(config).devices == 0  # local SGD: every dividing device
  config.algo.name = "minibatch_sgd"
  assert build.simulated_layout(config).devices == 1  # an all-reduce every step, 1 per device
  config.workers.num_workers = 32
  assert build.simulated_layout(config).devices == 0  # 4 workers per device amortise it
  config.workers.num_devices = 2
  assert build.simulated_layout(config).devices == 2  # asked for
  config = tiny_config(data_dir)
  config.workers.num_devices = 64
  with pytest.raises(ConfigError, match=r"^workers.num_devices: "):
    build.Experiment(config)


def test_a_bad_warmup_ramp_is_named_even_without_a_warmup():
  config = default()
  config.algo.local_steps_warmup = "bogus"
  with pytest.raises(ConfigError, match=r"^algo.local_steps_warmup: unknown value 'bogus'"):
    build.validate(config)


def test_sign_steps_warn_only_for_models_without_normalisation():
  config = default()
  config.algo.compression, config.optim.base_lr = "ef_sign", 0.1
  with warnings.catch_warnings():
    warnings.simplefilter("error", build.ConfigWarning)
    for name in build.NORMALISED_MODELS:
      config.model.name = name
      build._warn_about_sign_steps(config)
  config.model.name = "mlp"
  with pytest.warns(build.ConfigWarning, match="optim.base_lr: sign steps"):
    build._warn_about_sign_steps(config)


def test_consensus_control_reaches_slowmo_and_gradient_gossip_and_is_refused_elsewhere():
  config = default()
  config.algo.update(name="slowmo", consensus_target=0.1, consensus_rule="adaptive")
  for name in ("slowmo", "gradient_gossip"):
    config.algo.name = name
    built = build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1),
                            phase_steps=(), switch_step=0)
    assert (built.communication.rule, built.communication.target) == ("adaptive", 0.1)
  config.algo.name = "choco_sgd"
  with pytest.raises(ConfigError, match=r"^algo.consensus_target: 0.1: consensus control is "
                     r"offered for dsgd, qg_dsgdm, gradient_gossip, slowmo, not choco_sgd"):
    build.validate(config)
  config.algo.update(consensus_target=0.0, exact_phases=(1,))
  with pytest.raises(ConfigError, match=r"^algo.exact_phases: \(1,\)"):
    build.validate(config)


def test_qg_dadam_takes_the_configs_decay_mask_and_clipping():
  """Weight decay of the weight matrices only unless optim.decay_norm_and_bias, the gradient's
  norm clipped first (optim.grad_clip_norm); gradient noise is refused."""
  config = default()
  config.algo.name = "qg_dsgdm"
  config.optim.update(optimizer="adam", weight_decay=0.1, eps=1.0)
  params = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}

  def update(grads, **optim):
    config.optim.update(**optim)
    tx = build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1), phase_steps=(),
                         switch_step=0).tx
    return tx.update(grads, tx.init(params), params)[0]

  zero = jax.tree.map(np.zeros_like, params)
  decayed = update(zero)
  assert np.all(decayed["w"] < 0) and np.all(decayed["b"] == 0)
  assert np.all(update(zero, decay_norm_and_bias=True)["b"] < 0)
  grads = {"w": np.full((2, 2), 3.0, np.float32), "b": np.full(2, 4.0, np.float32)}
  norm = float(np.sqrt(4 * 9.0 + 2 * 16.0))
  clipped = update(grads, weight_decay=0.0, decay_norm_and_bias=False, grad_clip_norm=0.5)
  by_hand = update(jax.tree.map(lambda g: g * 0.5 / norm, grads), grad_clip_norm=0.0)
  chex.assert_trees_all_close(clipped, by_hand, rtol=1e-6)
  assert not np.allclose(clipped["w"], update(grads)["w"])
  config.optim.gradient_noise_eta = 0.01
  with pytest.raises(ConfigError, match=r"^optim.gradient_noise_eta: QG-DAdam"):
    build.validate(config)


@pytest.mark.parametrize("optimizer, field, value", [
    ("adam", "momentum", 0.5), ("sgd", "b1", 0.95), ("lamb", "trust_coefficient", 0.02),
    ("sgd", "lamb_variant", "n_lamb"), ("adamw", "trust_clip", (0.0, 10.0))])
def test_an_optimizer_field_the_optimizer_does_not_read_is_refused(optimizer, field, value):
  config = default()
  config.optim.update(optimizer=optimizer, **{field: value})
  with pytest.raises(ConfigError, match=rf"^optim.{field}: .* is read by .*, not by "
                     rf"optim.optimizer='{optimizer}'"):
    build.validate(config)
  config.optim[field] = default().optim[field]  # the default is no mistake
  build.validate(config)
