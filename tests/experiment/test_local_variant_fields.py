"""The config fields of the local SGD variants reach the library, and the sign-step rate check."""

import pathlib
import warnings

import numpy as np
import optax
import pytest

from helpers import tiny_config
from jaxdist.algorithms.local_sgd import Hierarchical, LocalStepsWarmup, Periodic
from jaxdist.errors import ConfigError
from jaxdist.experiment import build, overrides
from jaxdist.experiment.config import default

QUICKSTART = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "quickstart.py")


def test_sign_steps_at_a_rate_that_breaks_an_mlp_are_warned_about():
  """Issue: EF-signSGD under the quickstart (lr 0.1) never learns. A learning-rate matter: sign
  steps move every weight by the rate (0.1: 13.5% test accuracy, 0.003: 91.4%)."""
  config = overrides.load(QUICKSTART)
  config.algo.compression = "ef_sign"
  with pytest.warns(build.ConfigWarning, match=r"optim.base_lr: sign steps .* peak rate of 0.1 "
                    r"> 0.02 .*working range about 1e-3 to 1e-2"):
    build.validate(config)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    build.validate(overrides.load(QUICKSTART + ":ef_sign"))  # its own rate, no warning
    config.model.name = "resnet20"  # BatchNorm: the thesis's 0.1
    build.validate(config)


def _algorithm(warmup_steps=0, **algo):
  config = default()
  config.algo.update(algo)
  return build.algorithm(config, lambda *a: None, optax.constant_schedule(0.1),
                         phase_steps=(50, 75), switch_step=6, local_steps_warmup=warmup_steps)


def test_the_variant_fields_build_the_variants():
  assert _algorithm(local_steps=8, local_steps_warmup_epochs=1.0, local_steps_warmup="linear",
                    warmup_steps=12).schedule == LocalStepsWarmup(8, 12, "linear")
  assert _algorithm(local_steps=3, average_start=5, average_offset=1).schedule == Periodic.torch(
      3, 5)
  post = _algorithm(name="post_local_sgd", post_local_gradient_allreduce=True)
  assert post.subgroup_gradients and post.minibatch_steps == 6
  hierarchical = _algorithm(name="hierarchical_local_sgd", local_steps=2, block_steps=2)
  assert hierarchical.schedule == Hierarchical(2, 2, 6) and hierarchical.minibatch_steps == 6
  assert _algorithm(compression="sign_majority").averaging.majority_vote
  ef = _algorithm(name="ef_sign_sgd")
  assert ef.schedule == Periodic(1) and ef.averaging.error_feedback


@pytest.mark.parametrize("fields, message", [
    ({"algo": {"name": "post_local_sgd", "local_steps_warmup_epochs": 1.0}},
     r"algo.local_steps_warmup_epochs: the averaging schedule of plain local_sgd"),
    ({"algo": {"average_offset": 1, "compression": "sign"}}, r"algo.average_offset: "),
    ({"algo": {"local_steps_warmup_epochs": 1.0, "local_steps_warmup": "cubic"}},
     r"algo.local_steps_warmup: unknown value 'cubic'"),
    ({"algo": {"average_offset": -1}}, r"algo.average_offset: must be >= 0"),
    ({"algo": {"name": "post_local_sgd", "post_local_gradient_allreduce": True}},
     r"workers.per_node: .* run on nodes of workers"),
    ({"algo": {"post_local_gradient_allreduce": True}},
     r"algo.post_local_gradient_allreduce: offered for post_local_sgd"),
    ({"algo": {"name": "ef_sign_sgd", "compression": "sign"}},
     r"algo.compression: .* not ef_sign_sgd"),
])
def test_bad_variant_fields_are_refused_by_name(fields, message):
  config = default()
  for section, values in fields.items():
    config[section].update(values)
  with pytest.raises(ConfigError, match=message):
    build.validate(config)


def test_an_experiment_builds_the_variants_on_its_sizes(data_dir):
  """Nodes of workers for post-local SGD's gradient all-reduce; the H warm-up counted in
  epochs."""
  config = tiny_config(data_dir, algo={"name": "post_local_sgd", "switch_samples": 4 * 32,
                                       "post_local_gradient_allreduce": True, "local_steps": 3},
                       workers={"per_node": 2})
  post = build.Experiment(config)
  assert post.algorithm.subgroup_gradients and post.algorithm.minibatch_steps == 4
  assert post.runner.grid == (2, 2)
  warmed = build.Experiment(tiny_config(data_dir, algo={"local_steps": 4,
                                                        "local_steps_warmup_epochs": 0.1}))
  assert warmed.algorithm.schedule == LocalStepsWarmup(4, int(np.ceil(
      0.1 * warmed.train_size / 32)))
