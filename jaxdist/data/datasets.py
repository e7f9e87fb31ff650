"""Datasets through tensorflow-datasets' TF-free random-access path (`tfds.data_source`).

Offline datasets are generated locally by their tfds builders on first use (array_record files in
`data_dir`): MNIST-1D from the `mnist1d` package's templates (the reference 5,000 samples, or 50,000
for runs with many workers; the larger one takes about a minute to generate) and scikit-learn's
8x8 digits. The tfds
catalogue datasets `mnist` and `cifar10` are read when a user has prepared them in `data_dir`.
A split is decoded once into numpy arrays; batches are gathered from them by index.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxdist.errors import ArgumentError, check_choice

__all__ = ["AUGMENTATIONS", "DATASETS", "OFFLINE", "PREPARED", "RELABELS", "Dataset", "load",
           "preprocessor", "relabel"]  # the tfds builders register themselves by class name

OFFLINE = ("mnist1d", "mnist1d_large", "digits")
PREPARED = ("mnist", "fashion_mnist", "cifar10")
DATASETS = OFFLINE + PREPARED
AUGMENTATIONS = ("none", "crop_flip")


@dataclasses.dataclass
class Mnist1dConfig(tfds.core.BuilderConfig):
  """The size of an MNIST-1D variant."""

  num_samples: int = 5000


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D (Greydanus 2020): signals of length 40 generated from digit templates, 80% train."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      Mnist1dConfig(name="default", num_samples=5000, description="the reference set"),
      Mnist1dConfig(name="large", num_samples=50_000, description="ten times as many samples"),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "signal": tfds.features.Tensor(shape=(40,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10)}),
        supervised_keys=("signal", "label"))

  def _split_generators(self, dl_manager):
    from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
    args = get_dataset_args()  # the reference generator: seed 42, 80% train
    args.num_samples = self.builder_config.num_samples
    data = make_dataset(args)
    return {"train": self._generate_examples(data["x"], data["y"]),
            "test": self._generate_examples(data["x_test"], data["y_test"])}

  def _generate_examples(self, xs, ys):
    for i, (x, y) in enumerate(zip(xs, ys)):
      yield i, {"signal": x.astype(np.float32), "label": int(y)}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 1797 handwritten 8x8 digits (grey levels 0..16), stratified 80/20 split."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    return {"train": self._generate_examples(x_train, y_train),
            "test": self._generate_examples(x_test, y_test)}

  def _generate_examples(self, xs, ys):
    for i, (x, y) in enumerate(zip(xs, ys)):
      yield i, {"image": x, "label": int(y)}


# data.name -> (builder, tfds name)
_BUILDERS = {"mnist1d": (Mnist1d, "mnist1d/default"), "mnist1d_large": (Mnist1d, "mnist1d/large"),
             "digits": (Digits, "digits")}


class Dataset(NamedTuple):
  """Train and test splits as `{"input", "label"}` numpy arrays, plus what preprocessing needs."""

  name: str
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  num_classes: int
  mean: np.ndarray  # from the training split: [1, 1, 1, C] for images, a scalar for signals
  std: np.ndarray

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.train["input"].shape[1:]

  @property
  def is_image(self) -> bool:
    return self.train["input"].ndim == 4


def load(name: str, data_dir: str = "") -> Dataset:
  """Loads both splits of `name`; offline datasets are generated into `data_dir` if missing."""
  if name not in DATASETS:
    raise ArgumentError("dataset", f"unknown dataset {name!r}", DATASETS)
  data_dir = data_dir or None  # tfds's default (~/tensorflow_datasets or $TFDS_DATA_DIR)
  if name in _BUILDERS:
    builder_class, tfds_name = _BUILDERS[name]
    builder = builder_class(config=tfds_name.partition("/")[2] or None, data_dir=data_dir,
                            file_format="array_record")
    if not builder.is_prepared():
      tfds.disable_progress_bar()
      try:
        builder.download_and_prepare()
      except FileExistsError:  # another process of the run prepared it at the same time
        if not builder.is_prepared():
          raise
      except OSError as e:
        where = data_dir or "the default tfds data_dir"
        raise ArgumentError("data_dir", f"cannot generate {name} in {where} ({e.strerror or e})",
                            "a directory you can write to, or one where the dataset is "
                            "prepared") from None
  else:
    tfds_name, builder = name, tfds.builder(name, data_dir=data_dir)
  try:
    splits = {s: tfds.data_source(tfds_name, split=s, data_dir=data_dir, download=False)
              for s in ("train", "test")}
  except Exception:  # tfds raises several types here; say what is wrong and how to mend it
    raise ArgumentError("dataset", _not_ready(builder, data_dir), OFFLINE) from None
  input_key, label_key = builder.info.supervised_keys
  arrays = {split: _to_arrays(src, input_key, label_key) for split, src in splits.items()}
  train_inputs = arrays["train"]["input"].astype(np.float64)
  per_channel = dict(axis=(0, 1, 2), keepdims=True) if train_inputs.ndim == 4 else {}
  mean = train_inputs.mean(**per_channel).astype(np.float32)
  std = train_inputs.std(**per_channel).astype(np.float32)
  num_classes = builder.info.features[label_key].num_classes
  return Dataset(name, arrays["train"], arrays["test"], num_classes, mean, std)


RELABELS = ("none", "parity")


def relabel(dataset: Dataset, how: str) -> Dataset:
  """Another task on the same inputs: `parity` asks for label mod 2 (two classes)."""
  check_choice("relabel", how, RELABELS)
  if how == "none":
    return dataset
  split = lambda s: {**s, "label": s["label"] % 2}
  return dataset._replace(train=split(dataset.train), test=split(dataset.test), num_classes=2)


def _not_ready(builder, data_dir: str | None) -> str:
  name, where = builder.name, data_dir or "the default tfds data_dir"
  if builder.is_prepared():
    return (f"dataset {name!r} in {where} is prepared as {builder.info.file_format.value}, which "
            f"has no random access; convert it once with: tfds convert_format --dataset_dir="
            f"{builder.data_dir} --out_file_format=array_record")
  return (f"dataset {name!r} is not prepared in {where}; prepare it once, on a machine with "
          f"internet access, with: tfds build {name} --data_dir=DATA_DIR "
          f"--file_format=array_record, then set data.data_dir=DATA_DIR, or use an offline "
          f"dataset, which needs no preparation")


def _to_arrays(source, input_key: str, label_key: str) -> dict[str, np.ndarray]:
  records = [source[i] for i in range(len(source))]
  return {"input": np.stack([np.asarray(r[input_key]) for r in records]),
          "label": np.asarray([r[label_key] for r in records], np.int32)}


def preprocessor(dataset: Dataset,
                 augment: str) -> Callable[[jax.Array, jax.Array, bool], jax.Array]:
  """`preprocess(x, rng, train)`: standardise with training-set statistics; optionally augment
  training images with a random 4-pixel-padded crop and horizontal flip."""
  check_choice("augment", augment, AUGMENTATIONS)
  if augment == "crop_flip" and not dataset.is_image:
    raise ArgumentError("augment", f"crop_flip needs images; {dataset.name} has signals",
                      ("none",))
  mean, std = jnp.asarray(dataset.mean), jnp.asarray(dataset.std)

  def preprocess(x, rng, train):
    x = (x.astype(jnp.float32) - mean) / std
    if augment == "crop_flip" and train:
      x = jax.vmap(_crop_flip)(x, jax.random.split(rng, x.shape[0]))
    return x

  return preprocess


def _crop_flip(image: jax.Array, rng: jax.Array) -> jax.Array:
  crop_rng, flip_rng = jax.random.split(rng)
  padded = jnp.pad(image, ((4, 4), (4, 4), (0, 0)))
  top, left = jax.random.randint(crop_rng, (2,), 0, 9)
  image = jax.lax.dynamic_slice(padded, (top, left, 0), image.shape)
  return jnp.where(jax.random.bernoulli(flip_rng), image[:, ::-1], image)
