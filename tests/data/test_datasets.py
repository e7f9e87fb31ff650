"""Datasets through tfds without TensorFlow: offline builders, prepared datasets, preprocessing."""

import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdist.data import datasets
from jaxdist.errors import ArgumentError


@pytest.mark.parametrize("name, key, shape, train, test", [
    ("mnist1d", "signal", (40,), 4000, 1000), ("digits", "image", (8, 8, 1), 1437, 360)])
def test_offline_datasets_are_generated_and_read_through_tfds(data_dir, name, key, shape, train,
                                                              test):
  data = datasets.load(name, data_dir)
  assert data.input_shape == shape and data.num_classes == 10
  assert len(data.train["label"]) == train and len(data.test["label"]) == test
  assert set(np.unique(data.train["label"])) == set(range(10))
  source = tfds.data_source(name, split="train", data_dir=data_dir)
  np.testing.assert_array_equal(source[7][key], data.train["input"][7])
  assert "tensorflow" not in sys.modules


def test_catalogue_datasets_read_prepared_data(data_dir):
  with tfds.testing.mock_data(num_examples=12):
    cifar = datasets.load("cifar10", data_dir)
  assert cifar.train["input"].shape == (12, 32, 32, 3) and cifar.train["input"].dtype == np.uint8
  assert cifar.num_classes == 10 and cifar.is_image and cifar.mean.shape == (1, 1, 1, 3)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(ArgumentError, match=r"dataset: dataset 'mnist' is not prepared in .*"
                     r"tfds build mnist --data_dir=DATA_DIR --file_format=array_record"):
    datasets.load("mnist", str(tmp_path))
  with pytest.raises(ArgumentError, match=r"dataset: unknown dataset 'imagenet'.*'mnist1d'"):
    datasets.load("imagenet", str(tmp_path))


def test_preprocessing_standardises_and_augments_images(data_dir):
  digits = datasets.load("digits", data_dir)
  x = digits.train["input"][:64]
  plain = datasets.preprocessor(digits, "none")(x, jax.random.PRNGKey(0), True)
  standardised = (x - digits.mean) / digits.std
  np.testing.assert_allclose(plain, standardised, rtol=1e-5)
  augment = datasets.preprocessor(digits, "crop_flip")
  a = augment(x, jax.random.PRNGKey(1), True)
  assert a.shape == x.shape and not np.allclose(a, plain)
  np.testing.assert_array_equal(a, augment(x, jax.random.PRNGKey(1), True))
  np.testing.assert_allclose(augment(x, jax.random.PRNGKey(1), False), plain)
  with pytest.raises(ArgumentError, match=r"augment: crop_flip needs images"):
    datasets.preprocessor(datasets.load("mnist1d", data_dir), "crop_flip")
