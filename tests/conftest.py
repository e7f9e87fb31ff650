"""Test set-up: 8 simulated CPU devices, set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A tfds data_dir shared by the tests of one process; offline datasets are generated once."""
  return str(tmp_path_factory.mktemp("tfds"))
