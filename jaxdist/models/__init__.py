"""Flax models, handed to algorithms only as pure `init`/`apply` functions over pytrees.

`from_flax(module, example)` wraps any flax module; `build(name, ...)` makes the built-in ones.
Inputs are `[batch, *input_shape]`: images `[H, W, C]`, signals such as MNIST-1D `[L]` (the
convolutional models read a rank-1 example as one channel). Convolutions use He initialisation and
the ResNet classifier N(0, 0.01^2), as in the thesis's setups ([Lin22] App. 11.1).
"""


from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdist.errors import ArgumentError, check_at_least, check_choice

PyTree = Any
_he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Model(NamedTuple):
  """Pure functions of a model: `init(rng) -> (params, model_state)` and
  `apply(params, model_state, x, train) -> (logits, model_state)`.

  `model_state` holds non-trained variables (BatchNorm running statistics), `{}` if none.
  """

  init: Callable[[jax.Array], tuple[PyTree, PyTree]]
  apply: Callable[[PyTree, PyTree, jax.Array, bool], tuple[jax.Array, PyTree]]


class LogisticRegression(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
  hidden: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, kernel_init=nn.initializers.he_normal())(x))
    return nn.Dense(self.num_classes)(x)


def _with_channels(x):
  return x[..., None] if x.ndim == 2 else x


class CNN(nn.Module):
  """Strided convolutions (any spatial rank), then one hidden dense layer."""

  features: Sequence[int]
  dense: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _with_channels(x)
    window = (3,) * (x.ndim - 2)
    for width in self.features:
      x = nn.relu(nn.Conv(width, window, strides=2, kernel_init=_he_normal)(x))
    x = nn.relu(nn.Dense(self.dense)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


class EvoNormS0(nn.Module):
  """EvoNorm-S0 (Liu et al. 2020; [Lin22] ch. 9): x sigmoid(v x) / std_group(x) gamma + beta, the
  std over the spatial positions and the channels of each of `groups` groups; no batch
  statistics. `nonlinear=False` drops the sigmoid gate (where BatchNorm has no ReLU after)."""

  groups: int = 2
  nonlinear: bool = True
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    groups = min(self.groups, channels)
    shape = (1,) * (x.ndim - 1) + (channels,)
    gamma = self.param("scale", nn.initializers.ones, (channels,)).reshape(shape)
    beta = self.param("bias", nn.initializers.zeros, (channels,)).reshape(shape)
    grouped = x.reshape(*x.shape[:-1], groups, channels // groups)
    axes = (*range(1, x.ndim - 1), x.ndim)  # spatial positions and the channels of a group
    std = jnp.sqrt(jnp.var(grouped, axis=axes, keepdims=True) + self.epsilon)
    if self.nonlinear:
      v = self.param("v", nn.initializers.ones, (channels,)).reshape(shape)
      grouped = (x * nn.sigmoid(v * x)).reshape(grouped.shape)
    return (grouped / std).reshape(x.shape) * gamma + beta


NORMS = ("batch", "group", "evonorm")


def _normalize(kind: str, train: bool, activate: bool):
  """Norm (and ReLU if `activate`): BatchNorm, GroupNorm with 2 groups ([Lin22] ch. 9), or
  EvoNorm-S0 (its gate is the activation)."""
  if kind == "evonorm":
    return EvoNormS0(groups=2, nonlinear=activate)
  if kind == "group":
    norm = nn.GroupNorm(num_groups=2, epsilon=1e-5)
  else:
    norm = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
  return (lambda x: nn.relu(norm(x))) if activate else norm


class BasicBlock(nn.Module):
  features: int
  strides: int
  norm: str = "batch"

  @nn.compact
  def __call__(self, x, train: bool):
    window = (3,) * (x.ndim - 2)
    y = nn.Conv(self.features, window, self.strides, use_bias=False, kernel_init=_he_normal)(x)
    y = _normalize(self.norm, train, True)(y)
    y = nn.Conv(self.features, window, use_bias=False, kernel_init=_he_normal)(y)
    y = _normalize(self.norm, train, False)(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(self.features, (1,) * (x.ndim - 2), self.strides, use_bias=False,
                  kernel_init=_he_normal)(x)
      x = _normalize(self.norm, train, False)(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR ResNet (He et al. 2016): depth 6n+2, three stages of 16/32/64 filters; BatchNorm,
  GroupNorm (2 groups) or EvoNorm-S0 (`norm`, [Lin22] ch. 9, Table 9.1)."""

  blocks_per_stage: int
  num_classes: int
  width: int = 16
  norm: str = "batch"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _with_channels(x)
    x = nn.Conv(self.width, (3,) * (x.ndim - 2), use_bias=False, kernel_init=_he_normal)(x)
    x = _normalize(self.norm, train, True)(x)
    for stage in range(3):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.norm)(x, train)
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01))(x)


class WideBlock(nn.Module):
  """Pre-activation block of a Wide-ResNet: BN-ReLU-conv, BN-ReLU-conv, plus the shortcut."""

  features: int
  strides: int

  @nn.compact
  def __call__(self, x, train: bool):
    window = (3,) * (x.ndim - 2)
    y = _normalize("batch", train, True)(x)
    shortcut = x
    if x.shape[-1] != self.features or self.strides != 1:
      shortcut = nn.Conv(self.features, (1,) * (x.ndim - 2), self.strides, use_bias=False,
                         kernel_init=_he_normal)(y)
    y = nn.Conv(self.features, window, self.strides, use_bias=False, kernel_init=_he_normal)(y)
    y = _normalize("batch", train, True)(y)
    y = nn.Conv(self.features, window, use_bias=False, kernel_init=_he_normal)(y)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-depth-k (Zagoruyko & Komodakis 2016): (depth - 4) / 6 pre-activation blocks in each of
  three stages of 16k/32k/64k filters, BatchNorm; WRN-16-4 is S1's CIFAR-10 model."""

  depth: int
  widen: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _with_channels(x)
    x = nn.Conv(16, (3,) * (x.ndim - 2), use_bias=False, kernel_init=_he_normal)(x)
    for stage in range(3):
      for block in range((self.depth - 4) // 6):
        strides = 2 if stage > 0 and block == 0 else 1
        x = WideBlock(16 * self.widen * 2**stage, strides)(x, train)
    x = _normalize("batch", train, True)(x)
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    return nn.Dense(self.num_classes)(x)


VGG11 = (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool")


class VGG(nn.Module):
  """VGG-11 without normalisation, its widths scaled by `width_factor` (1/2 in [Lin22] ch. 9,
  Table 9.1); one linear classifier, as the CIFAR variants."""

  num_classes: int
  width_factor: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _with_channels(x)
    window = (3,) * (x.ndim - 2)
    for layer in VGG11:
      if layer == "pool":
        x = nn.max_pool(x, (2,) * (x.ndim - 2), strides=(2,) * (x.ndim - 2), padding="SAME")
      else:
        x = nn.relu(nn.Conv(max(1, round(layer * self.width_factor)), window,
                            kernel_init=_he_normal)(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


MODELS = ("logistic_regression", "mlp", "cnn", "resnet8", "resnet20", "resnet20_gn",
          "resnet20_evonorm", "vgg11", "wrn16_4")


def _module(name: str, num_classes: int, hidden: Sequence[int], features: Sequence[int],
            dense: int, width: int) -> nn.Module:
  check_choice("model", name, MODELS)
  for argument, widths in (("hidden", hidden), ("features", features)):
    for value in widths:
      check_at_least(argument, value, 1, integer=True)
  check_at_least("dense", dense, 1, integer=True)
  check_at_least("width", width, 1, integer=True)
  if name == "logistic_regression":
    return LogisticRegression(num_classes)
  if name == "mlp":
    return MLP(tuple(hidden), num_classes)
  if name == "cnn":
    return CNN(tuple(features), dense, num_classes)
  if name == "vgg11":
    return VGG(num_classes)
  if name == "wrn16_4":
    return WideResNet(16, 4, num_classes)
  norm = {"resnet8": "batch", "resnet20": "batch", "resnet20_gn": "group",
          "resnet20_evonorm": "evonorm"}[name]
  return ResNet(1 if name == "resnet8" else 3, num_classes, width, norm)


def from_flax(module: nn.Module, example: Any) -> Model:
  """The pure functions of a flax module called as `module(x, train=...)`.

  Args:
    module: a flax linen module whose `__call__(x, train)` returns logits; its non-"params"
      collections (BatchNorm's "batch_stats") become the model state, updated in training.
    example: one batch of inputs (or a ShapeDtypeStruct), for the shapes at initialisation.

  Returns:
    `Model(init, apply)`: `init(rng) -> (params, model_state)` (jitted), and
    `apply(params, model_state, x, train) -> (logits, model_state)`.
  """
  if not isinstance(module, nn.Module):
    raise ArgumentError("module", f"{module!r} is not a flax module", "a flax.linen.Module")

  def init(rng):
    # Non-partitionable threefry compiles ~5x faster on CPU (one random draw per parameter
    # shape); it changes nothing else here, since the initial model is never sharded.
    with jax.threefry_partitionable(False):
      variables = module.init(rng, jnp.zeros(example.shape, example.dtype), train=False)
    params = variables.pop("params")
    return params, dict(variables)

  def apply(params, model_state, x, train):
    variables = {"params": params, **model_state}
    if train and model_state:
      logits, updates = module.apply(variables, x, train=True, mutable=list(model_state))
      return logits, dict(updates)
    return module.apply(variables, x, train=train), model_state

  return Model(jax.jit(init), apply)  # one compilation instead of one per initialiser


def build(name: str, input_shape: Sequence[int], num_classes: int, *,
          hidden: Sequence[int] = (256, 256), features: Sequence[int] = (32, 64),
          dense: int = 128, width: int = 16) -> Model:
  """A built-in model by name.

  Args:
    name: one of MODELS.
    input_shape: shape of one example.
    num_classes: outputs.
    hidden: the MLP's hidden widths.
    features: the CNN's strided convolutions.
    dense: the CNN's hidden dense layer.
    width: filters of the first ResNet-20 stage.
  """
  module = _module(name, num_classes, hidden, features, dense, width)
  return from_flax(module, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))


def flat_names(tree: PyTree) -> dict[str, Any]:
  """Leaves by 'Dense_0/kernel'-style name."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save(path: str, params: PyTree, model_state: PyTree) -> None:
  """Writes a model as an .npz of named arrays (what `pretrained` reads)."""
  arrays = {f"params/{k}": np.asarray(v) for k, v in flat_names(params).items()}
  arrays.update({f"model_state/{k}": np.asarray(v) for k, v in flat_names(model_state).items()})
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def pretrained(model: Model, path: str) -> Model:
  """`model` initialised from the .npz at `path` wherever a leaf's name and shape match; the
  others (a classifier for another number of classes) keep their random initialisation."""
  try:
    with np.load(path) as saved:
      saved = dict(saved)
  except (OSError, ValueError) as e:
    raise ArgumentError("pretrained", f"cannot read {path!r} ({e})",
                        "the model.npz that a finished run writes into its workdir") from None

  def load(prefix, tree):
    names = flat_names(tree)
    leaves = [saved[f"{prefix}/{n}"] if f"{prefix}/{n}" in saved and
              saved[f"{prefix}/{n}"].shape == x.shape else x for n, x in names.items()]
    return jax.tree.unflatten(jax.tree.structure(tree), [jnp.asarray(x) for x in leaves])

  if not any(k.startswith("params/") for k in saved):
    raise ArgumentError("pretrained", f"{path!r} holds no parameters",
                        "the model.npz that a finished run writes into its workdir")

  def init(rng):
    params, model_state = model.init(rng)
    return load("params", params), load("model_state", model_state)

  return Model(init, model.apply)
