"""From a config to the library's pieces, and the one check of a config before a run.

The library checks its own arguments and names them (`ArgumentError`); here every config field
is handed to the argument it sets, and an argument's error comes back naming the field
(`ConfigError`). `validate(config)` checks what only a config has (names of algorithms, datasets,
models; multiples of `train.log_every`) and builds every piece that needs no data, so a bad
value ends before a workdir is touched.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import optax

import jaxdist
from jaxdist.algorithms import extrapolation as extrapolation_lib
from jaxdist.algorithms.decentralized import ChocoGossip, ConsensusControl
from jaxdist.algorithms.local_sgd import schedules as local_schedules
from jaxdist.communication import compression, topology
from jaxdist.communication.gossip import EXCHANGES, Gossip
from jaxdist.core.layouts import Sharded, Simulated
from jaxdist.data import datasets, partition
from jaxdist.data.sources import from_arrays
from jaxdist.errors import ArgumentError, ConfigError
from jaxdist.experiment import config as config_lib
from jaxdist.experiment import families
from jaxdist.models import MODELS, pretrained
from jaxdist.models import build as build_model
from jaxdist.objectives import masking, tasks
from jaxdist.optim import optimizers, schedules
from jaxdist.training.runner import ON_NONFINITE, Runner

LOCAL = ("minibatch_sgd", "local_sgd", "post_local_sgd", "hierarchical_local_sgd", "ef_sign_sgd")
DECENTRALIZED = ("dsgd", "qg_dsgdm", "d2", "d2_plus", "gradient_tracking", "choco_sgd",
                 "dcd_psgd", "ecd_psgd", "deepsqueeze", "sgp", "shared_momentum",
                 "gradient_gossip", "dmsgd", "slowmo")
ALGORITHMS = LOCAL + DECENTRALIZED
# optim fields only some optimizers read: set to another value under any other, a mistake
OPTIMIZER_ONLY_FIELDS = {
    "momentum": ("sgd", "lars"), "nesterov": ("sgd", "lars"),
    "b1": ("adam", "adamw", "lamb"), "b2": ("adam", "adamw", "lamb"),
    "eps": ("adam", "adamw", "adagrad", "lamb"), "initial_accumulator": ("adagrad",),
    "trust_coefficient": ("lars",), "trust_eps": ("lars",), "trust_denominator": ("lars",),
    "lars_momentum": ("lars",), "grad_clip_value": ("lars",), "trust_clip": ("lars", "lamb"),
    "trust_norm": ("lars", "lamb"), "adapt_norm_and_bias": ("lars", "lamb"),
    "eps_inside_sqrt": ("lamb",), "bias_correction": ("lamb",), "lamb_variant": ("lamb",)}
CONSENSUS_CONTROLLED = ("dsgd", "qg_dsgdm", "gradient_gossip", "slowmo")
COMPRESSIONS = ("none", "sign", "ef_sign", "sign_majority")
SIGN_STEP_RATE_LIMIT = 0.02  # above it, sign steps break models without normalisation layers
EXTRAPOLATIONS = ("none", "extrap", "gradient_noise", "gaussian", "uniform", "smoothout",
                  "extrap_adam")
COMPRESSORS = ("identity", "top_k", "random_k", "sign", "qsgd")
OPTIMIZERS = ("sgd", "adam", "lars", "lamb", "adamw", "adagrad")
MASKINGS = ("none", *masking.PRUNING, "learned")
BACKENDS = ("simulated", "shard_map")
EVAL_MODELS = ("average", "workers")

# Library arguments -> the config fields that set them, per section.
ALGO_FIELDS = {
    "local_steps": "algo.local_steps", "block_steps": "algo.block_steps",
    "global_momentum": "algo.global_momentum", "switch_step": "algo.switch_samples",
    "scale": "algo.extrapolation_scale", "extrapolation": "algo.extrapolation",
    "qg_mu": "algo.qg_mu", "qg_period": "algo.qg_period",
    "consensus_step": "algo.consensus_step", "order": "algo.choco_order",
    "public_init": "algo.public_init", "form": "algo.choco_form",
    "index_bits": "algo.index_bits", "b1": "optim.b1", "b2": "optim.b2", "eps": "optim.eps",
    "consensus_target": "algo.consensus_target", "consensus_rule": "algo.consensus_rule",
    "ema_decay": "algo.consensus_ema", "momentum_exchange": "algo.momentum_exchange",
    "slow_period": "algo.slow_period", "slow_momentum": "algo.slow_momentum",
    "slow_lr": "algo.slow_lr",
    "max_gossip_rounds": "algo.max_gossip_rounds", "control_phases": "algo.control_phases",
    "exact_phases": "algo.exact_phases", "compressor": "algo.compressor",
    "fraction": "algo.compress_fraction", "bits": "algo.compress_bits",
    "topology": "topology.name", "exchange": "topology.exchange", "n": "workers.num_workers",
    "warmup_steps": "algo.local_steps_warmup_epochs", "warmup_ramp": "algo.local_steps_warmup",
    "ramp": "algo.local_steps_warmup", "average_start": "algo.average_start",
    "average_offset": "algo.average_offset", "start": "algo.average_start",
    "offset": "algo.average_offset",
    "post_local_gradient_allreduce": "algo.post_local_gradient_allreduce",
    "optimizer": "optim.momentum", "learning_rate": "optim.base_lr",
}
OPTIM_FIELDS = {name: f"optim.{name}" for name in (
    "momentum", "weight_decay", "b1", "b2", "eps", "trust_coefficient", "trust_denominator",
    "trust_clip", "grad_clip_value", "lars_momentum", "grad_clip_norm", "base_lr", "base_batch",
    "trust_norm", "initial_accumulator", "gradient_noise_eta", "gradient_noise_gamma",
    "lr_scaling", "warmup_epochs", "warmup_scaling", "warmup_start_lr", "schedule", "decay_at",
    "decay_factor", "decay_power")}
DATA_FIELDS = {"dataset": "data.name", "data_dir": "data.data_dir", "relabel": "data.relabel",
               "augment": "data.augment",
               "partition": "data.partition", "dirichlet_alpha": "data.dirichlet_alpha",
               "dirichlet_scheme": "data.dirichlet_scheme", "batch_size": "data.batch_size",
               "num_workers": "workers.num_workers"}
MODEL_FIELDS = {"model": "model.name", "hidden": "model.hidden", "features": "model.features",
                "dense": "model.dense", "width": "model.width", "pretrained": "model.pretrained"}
MASKING_FIELDS = {"method": "masking.name", "sparsity": "masking.sparsity",
                  "recompute_every": "masking.recompute_every",
                  "initial_sparsity": "masking.initial_sparsity",
                  "skip_layers": "masking.skip_layers", "ramp_steps": "masking.ramp_end",
                  "granularity": "masking.granularity", "thresholds": "masking.thresholds",
                  "freeze_at": "masking.freeze_at"}
RUN_FIELDS = {"num_workers": "workers.num_workers", "num_devices": "workers.num_devices",
              "devices": "workers.num_devices",
              "layout": "workers.backend", "steps_per_chunk": "train.log_every",
              "num_steps": "train.num_steps", "keep": "checkpoint.keep",
              "checkpoint_every": "checkpoint.every_steps", "eval_every": "eval.every_steps",
              "eval_batch_size": "eval.batch_size"}


@contextlib.contextmanager
def fields(mapping: dict[str, str]) -> Iterator[None]:
  """Re-raises an `ArgumentError` of a mapped argument as a `ConfigError` of its field."""
  try:
    yield
  except ArgumentError as e:
    if e.argument not in mapping:
      raise
    raise ConfigError(mapping[e.argument], e.problem, e.allowed) from None


def _get(config, field: str):
  for part in field.split("."):
    config = config[part]
  return config


def _choice(config, field: str, allowed) -> None:
  value = _get(config, field)
  if value not in allowed:
    raise ConfigError(field, f"unknown value {value!r}", allowed)


def _at_least(config, field: str, low) -> None:
  value = _get(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
    raise ConfigError(field, f"must be >= {low}, got {value}", f">= {low}")


# -- validation --------------------------------------------------------------------------------


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot be used."""
  other = families.module(config)
  if other is not None:
    other.validate(config)
    return
  for field, allowed in (("algo.name", ALGORITHMS), ("algo.compression", COMPRESSIONS),
                         ("algo.extrapolation", EXTRAPOLATIONS),
                         ("algo.compressor", COMPRESSORS), ("topology.name", topology.TOPOLOGIES),
                         ("topology.exchange", EXCHANGES), ("workers.backend", BACKENDS),
                         ("data.name", datasets.DATASETS), ("data.partition", partition.PARTITIONS),
                         ("data.dirichlet_scheme", partition.DIRICHLET_SCHEMES),
                         ("data.augment", datasets.AUGMENTATIONS),
                         ("data.relabel", datasets.RELABELS), ("model.name", MODELS),
                         ("masking.name", MASKINGS), ("optim.optimizer", OPTIMIZERS),
                         ("eval.model", EVAL_MODELS), ("train.on_nonfinite", ON_NONFINITE),
                         ("algo.local_steps_warmup", local_schedules.WARMUP_RAMPS)):
    _choice(config, field, allowed)
  for field in ("workers.num_workers", "data.batch_size", "train.log_every", "eval.batch_size",
                "checkpoint.keep"):
    _at_least(config, field, 1)
  for field in ("workers.per_node", "workers.num_devices", "algo.switch_samples",
                "algo.local_steps_warmup_epochs"):
    _at_least(config, field, 0)
  _check_workers(config)
  _check_algorithm_fields(config)
  if config.train.num_steps < 0 or config.train.num_epochs < 0 or not (
      config.train.num_steps > 0 or config.train.num_epochs > 0):
    raise ConfigError("train.num_steps", "one of train.num_steps and train.num_epochs must be "
                      f"> 0, got {config.train.num_steps} and {config.train.num_epochs}",
                      "num_steps > 0, or num_steps = 0 and num_epochs > 0")
  for field in ("eval.every_steps", "checkpoint.every_steps"):
    every = _get(config, field)
    if every < 0 or every % config.train.log_every:
      raise ConfigError(field, f"{every} is not a multiple of train.log_every "
                        f"({config.train.log_every})",
                        f"0 or multiples of {config.train.log_every}")
  if not 0 < config.data.dirichlet_alpha < math.inf:
    raise ConfigError("data.dirichlet_alpha", f"must be a finite number > 0, got "
                      f"{config.data.dirichlet_alpha}", "finite numbers > 0 (large: near iid)")
  if config.masking.freeze_at > 1:
    raise ConfigError("masking.freeze_at", f"{config.masking.freeze_at} is past the end of the "
                      "run", "a fraction in [0, 1], or < 0 for a mask that is never frozen")
  if config.masking.ramp_end > 1:
    raise ConfigError("masking.ramp_end", f"{config.masking.ramp_end} is past the end of the run",
                      "a fraction in [0, 1], or < 0 for the second learning-rate decay")
  # The run's pieces that need no data, built with stand-ins for the run's sizes, then the
  # pieces of the fields this run does not use: a bad value there is a mistake all the same.
  learning_rate(config.optim, global_batch=1, train_size=1, total_steps=10**9)
  algorithm(config, _stand_in_loss, optax.constant_schedule(0.1),
            phase_steps=_stand_in_phases(config), switch_step=0,
            local_steps_warmup=1 if config.algo.local_steps_warmup_epochs else 0)
  _warn_about_sign_steps(config)
  with fields(MODEL_FIELDS):
    build_model(config.model.name, (2,), 2, hidden=tuple(config.model.hidden),
                features=tuple(config.model.features), dense=config.model.dense,
                width=config.model.width)
  _check_unused_fields(config)
  _check_optimizer_fields(config.optim)


def _check_optimizer_fields(optim) -> None:
  """An optimizer's field set under another optimizer (whose values are valid: checked before)."""
  defaults = config_lib.default().optim
  for key, readers in OPTIMIZER_ONLY_FIELDS.items():
    if optim.optimizer not in readers and _differs(optim[key], defaults[key]):
      raise ConfigError(f"optim.{key}", f"{optim[key]!r} is read by {', '.join(readers)}, not "
                        f"by optim.optimizer={optim.optimizer!r}", f"{defaults[key]!r}")


def _check_workers(config) -> None:
  per_node = config.workers.per_node
  if per_node and config.workers.num_workers % per_node:
    raise ConfigError("workers.per_node", f"{per_node} does not divide workers.num_workers="
                      f"{config.workers.num_workers}",
                      f"divisors of {config.workers.num_workers}, or 0 for no nodes")
  on_nodes = config.algo.name == "hierarchical_local_sgd" or (
      config.algo.name == "post_local_sgd" and config.algo.post_local_gradient_allreduce)
  if on_nodes != (per_node > 0):
    raise ConfigError("workers.per_node", "hierarchical_local_sgd and post_local_sgd with "
                      "algo.post_local_gradient_allreduce run on nodes of workers and the other "
                      "algorithms on a flat set of workers", "> 0 with those, 0 otherwise")


def _check_algorithm_fields(config) -> None:
  """Combinations of fields the config offers no algorithm for."""
  algo = config.algo
  if algo.block_steps != 1 and algo.name != "hierarchical_local_sgd":
    raise ConfigError("algo.block_steps", f"{algo.block_steps} block steps need "
                      "hierarchical_local_sgd", "1")
  if algo.switch_samples > 0 and algo.switch_epochs >= 0:
    raise ConfigError("algo.switch_samples", "set either algo.switch_samples or "
                      "algo.switch_epochs, not both", "switch_samples = 0 or switch_epochs < 0")
  if algo.compression != "none":
    if algo.name not in ("local_sgd", "post_local_sgd"):
      raise ConfigError("algo.compression", f"sign compression is offered for local_sgd and "
                        f"post_local_sgd, not {algo.name}", ("none",))
    if algo.global_momentum:
      raise ConfigError("algo.global_momentum", "global momentum does not combine with sign "
                        "compression", "0.0 with algo.compression != 'none'")
  if config.optim.log_trust_ratios and algo.name != "minibatch_sgd":
    raise ConfigError("optim.log_trust_ratios", f"logged by minibatch_sgd, not {algo.name}",
                      "False")
  if algo.post_local_gradient_allreduce and algo.name != "post_local_sgd":
    raise ConfigError("algo.post_local_gradient_allreduce", f"offered for post_local_sgd, not "
                      f"{algo.name}", "False")
  schedule_fields = (("algo.local_steps_warmup_epochs", algo.local_steps_warmup_epochs),
                     ("algo.average_start", algo.average_start),
                     ("algo.average_offset", algo.average_offset))
  for field, value in schedule_fields:
    if value and (algo.name != "local_sgd" or algo.compression != "none"):
      raise ConfigError(field, f"the averaging schedule of plain local_sgd; this run is "
                        f"{algo.name} with algo.compression={algo.compression!r}", "0")
  if algo.global_momentum and algo.name not in ("local_sgd", "post_local_sgd"):
    raise ConfigError("algo.global_momentum", f"global momentum is offered for local_sgd and "
                      f"post_local_sgd, not {algo.name}", "0.0")
  if algo.name in DECENTRALIZED and algo.extrapolation != "none":
    raise ConfigError("algo.extrapolation", f"{algo.name} takes gradients at its own model",
                      ("none",))
  if algo.compress_unbiased and algo.compressor not in ("random_k", "qsgd"):
    raise ConfigError("algo.compress_unbiased", f"{algo.compressor} has no unbiased form",
                      "False unless algo.compressor is 'random_k' or 'qsgd'")
  if algo.extrapolation == "extrap_adam" and config.optim.optimizer not in ("adam", "lamb"):
    raise ConfigError("algo.extrapolation", "extrap_adam takes the Adam moments of the "
                      f"optimizer, and optim.optimizer={config.optim.optimizer!r} has none",
                      "optim.optimizer='adam' or 'lamb' with extrap_adam")
  controlled = [(field, value) for field, value in (
      ("algo.consensus_target", algo.consensus_target),
      ("algo.phase_targets", tuple(algo.phase_targets)),
      ("algo.exact_phases", tuple(algo.exact_phases))) if value]
  if controlled and algo.name not in CONSENSUS_CONTROLLED:
    field, value = controlled[0]
    raise ConfigError(field, f"{value!r}: consensus control is offered for "
                      f"{', '.join(CONSENSUS_CONTROLLED)}, not {algo.name}",
                      "0.0" if field == "algo.consensus_target" else "()")
  optim = config.optim
  if algo.name == "qg_dsgdm" and optim.optimizer == "adam" and _gradient_noise_on(optim):
    raise ConfigError("optim.gradient_noise_eta", "QG-DAdam (qg_dsgdm with optim.optimizer="
                      "'adam') takes no gradient noise",
                      "0.0, with gradient_noise_gamma at its default")
  if algo.compress_unbiased and algo.name == "choco_sgd":
    raise ConfigError("algo.compress_unbiased", "CHOCO needs a contractive (biased, scaled "
                      "down) compressor", "False")


def _gradient_noise_on(optim) -> bool:
  """Gradient noise asked for: a rate, or a decay other than the default."""
  default_gamma = config_lib.default().optim.gradient_noise_gamma
  return bool(optim.gradient_noise_eta) or optim.gradient_noise_gamma != default_gamma


def _differs(value, default_value) -> bool:
  if isinstance(value, (tuple, list)) or isinstance(default_value, (tuple, list)):
    return tuple(value) != tuple(default_value)
  return value != default_value


class ConfigWarning(UserWarning):
  """A config that runs, but outside the range where its method is known to work."""


# models whose normalisation layers make their weights scale-invariant
NORMALISED_MODELS = ("resnet8", "resnet20", "resnet20_gn", "resnet20_evonorm", "wrn16_4")


def _warn_about_sign_steps(config) -> None:
  """Sign steps move every weight by the learning rate each step: [Lin22]'s 0.1 (ResNet-20 with
  BatchNorm, whose weights are scale-invariant) stops an MLP from learning (the quickstart's
  EF-signSGD: 13.5% test accuracy at 0.1, 49% at 0.05, 88.3% at 0.01, 91.4% at 0.003)."""
  optim = config.optim
  if config.algo.compression == "none" or config.model.name in NORMALISED_MODELS:
    return
  scale = config.workers.num_workers * config.data.batch_size / optim.base_batch
  peak = optim.base_lr * {"linear": scale, "sqrt": math.sqrt(scale)}.get(optim.lr_scaling, 1.0)
  if peak > SIGN_STEP_RATE_LIMIT:
    warnings.warn(ConfigWarning(
        f"optim.base_lr: sign steps (algo.compression={config.algo.compression!r}) move every "
        f"weight by the learning rate; a peak rate of {peak:g} > {SIGN_STEP_RATE_LIMIT} stops "
        f"{config.model.name!r} from learning (working range about 1e-3 to 1e-2; the "
        "thesis's 0.1 is for ResNet-20 with BatchNorm)"), stacklevel=3)


def _check_unused_fields(config) -> None:
  """Builds, with every field, the pieces of the algorithms and options this run leaves unused.
  Which piece each field reaches is the same as in `algorithm`; stand-ins fill the rest."""
  for kind in OPTIMIZERS:
    optim = config.optim.copy_and_resolve_references()
    with optim.unlocked():
      optim.optimizer = kind
    optimizer(optim)
  algo, schedule = config.algo, optax.constant_schedule(0.1)
  with fields(_algo_fields(algo)):
    compressor(algo)
    compression.TopK(algo.compress_fraction, index_bits=algo.index_bits or None)
    compression.QSGD(algo.compress_bits)
    extrapolation_lib.PastGradient(algo.extrapolation_scale)
    jaxdist.hierarchical_local_sgd(_stand_in_loss, local_steps=algo.local_steps,
                                   block_steps=algo.block_steps, learning_rate=schedule)
    jaxdist.local_sgd(_stand_in_loss, global_momentum=algo.global_momentum,
                      learning_rate=schedule)
    graph = topology.ring(config.workers.num_workers)
    jaxdist.qg_dsgdm(_stand_in_loss, learning_rate=schedule, topology=graph, qg_mu=algo.qg_mu,
                     qg_period=algo.qg_period)  # topology.exchange: checked by algorithm()
    ChocoGossip(Gossip(graph), compression.Sign(), algo.consensus_step, algo.public_init)
    jaxdist.choco_sgd(_stand_in_loss, learning_rate=schedule, topology=graph,
                      compressor=compression.Sign(), consensus_step=0.1, order=algo.choco_order,
                      form=algo.choco_form)
    jaxdist.shared_momentum(_stand_in_loss, learning_rate=schedule, topology=graph,
                            momentum_exchange=algo.momentum_exchange)
    jaxdist.slowmo(_stand_in_loss, learning_rate=schedule, topology=graph,
                   slow_period=algo.slow_period, slow_momentum=algo.slow_momentum,
                   slow_lr=algo.slow_lr)
    ConsensusControl(_targets(algo), phase_steps=_stand_in_phases(config),
                     control_phases=tuple(algo.control_phases),
                     exact_phases=tuple(algo.exact_phases), max_rounds=algo.max_gossip_rounds,
                     rule=algo.consensus_rule, ema_decay=algo.consensus_ema)
  masks = config.masking
  with fields(MASKING_FIELDS):
    masking.Pruning("dpf", masks.sparsity, masks.recompute_every, 1, 2,
                    granularity=masks.granularity, thresholds=masks.thresholds)
    masking.LearnedMask(masks.initial_sparsity, masks.skip_layers)


# all-reduce every step: split over devices, each step pays a rendezvous of them, which only
# four or more workers per device amortise (benchmarks/simulation_overhead.py, mini-batch SGD on
# 8 devices: K = 8 1.97x / 1.19x one model at B = 32 / 128, on one device 1.08x / 1.06x; K = 32
# 1.56x / 1.07x split, 1.59x / 1.41x on one device)
ALLREDUCE_EVERY_STEP = ("minibatch_sgd",)
WORKERS_PER_DEVICE_TO_SPLIT = 4


def simulated_layout(config) -> Simulated:
  """workers.num_devices CPU devices, or 0: every CPU device that divides the grid (launch makes
  four per core), except one for an algorithm that all-reduces every step with fewer than 4
  workers per device."""
  devices = config.workers.num_devices
  if (devices == 0 and config.algo.name in ALLREDUCE_EVERY_STEP and config.workers.num_workers
      < WORKERS_PER_DEVICE_TO_SPLIT * jax.local_device_count()):
    devices = 1
  return Simulated(devices=devices)


def _algo_fields(algo) -> dict[str, str]:
  """ALGO_FIELDS, with the consensus target named as the field that set it."""
  if tuple(algo.phase_targets):
    return {**ALGO_FIELDS, "consensus_target": "algo.phase_targets"}
  return ALGO_FIELDS


def _targets(algo):
  """algo.phase_targets (one per phase) if given, else algo.consensus_target."""
  return tuple(algo.phase_targets) or algo.consensus_target


def _stand_in_loss(params, model_state, batch, rng):
  raise NotImplementedError  # never called: validation only builds


def _stand_in_phases(config) -> tuple[int, ...]:
  if config.optim.schedule != "step":
    return ()
  return tuple(range(1, len(config.optim.decay_at) + 1))


# -- pieces ------------------------------------------------------------------------------------


def optimizer(optim: ml_collections.ConfigDict, norm_axes=()) -> Any:
  """The per-worker optimizer of `optim`, as a function of the learning rate."""
  _choice_section(optim, "optimizer", OPTIMIZERS, "optim")
  common = dict(weight_decay=optim.weight_decay, decay_norm_and_bias=optim.decay_norm_and_bias,
                grad_clip_norm=optim.grad_clip_norm)
  if optim.optimizer == "sgd":
    make = functools.partial(optimizers.sgd, momentum=optim.momentum, nesterov=optim.nesterov,
                             **common)
  elif optim.optimizer == "adam":
    make = functools.partial(optimizers.adam, b1=optim.b1, b2=optim.b2, eps=optim.eps, **common)
  elif optim.optimizer == "adamw":
    make = functools.partial(optimizers.adamw, b1=optim.b1, b2=optim.b2, eps=optim.eps, **common)
  elif optim.optimizer == "adagrad":
    make = functools.partial(optimizers.adagrad, initial_accumulator=optim.initial_accumulator,
                             eps=optim.eps, **common)
  elif optim.optimizer == "lars":
    make = functools.partial(
        optimizers.lars, momentum=optim.momentum, nesterov=optim.nesterov,
        trust_coefficient=optim.trust_coefficient, eps=optim.trust_eps,
        trust_denominator=optim.trust_denominator, trust_clip=tuple(optim.trust_clip),
        grad_clip_value=optim.grad_clip_value, lars_momentum=optim.lars_momentum,
        adapt_norm_and_bias=optim.adapt_norm_and_bias, norm_axes=norm_axes,
        trust_norm=optim.trust_norm, **common)
  else:
    make = functools.partial(
        optimizers.lamb, b1=optim.b1, b2=optim.b2, eps=optim.eps,
        eps_inside_sqrt=optim.eps_inside_sqrt, bias_correction=optim.bias_correction,
        trust_clip=tuple(optim.trust_clip), adapt_norm_and_bias=optim.adapt_norm_and_bias,
        norm_axes=norm_axes, trust_norm=optim.trust_norm, variant=optim.lamb_variant, **common)

  names = {**OPTIM_FIELDS, "variant": "optim.lamb_variant"}
  if optim.optimizer == "lars":
    names["eps"] = "optim.trust_eps"

  if _gradient_noise_on(optim):
    with fields(names):
      make = optimizers.with_gradient_noise(make, eta=optim.gradient_noise_eta,
                                            gamma=optim.gradient_noise_gamma)

  def build(learning_rate):
    with fields(names):
      return make(learning_rate)

  build(optax.constant_schedule(0.1))  # its errors now, naming the fields
  return build


def _choice_section(section, key, allowed, name) -> None:
  if section[key] not in allowed:
    raise ConfigError(f"{name}.{key}", f"unknown value {section[key]!r}", allowed)


def _schedule_arguments(optim) -> dict[str, Any]:
  return dict(base_lr=optim.base_lr, base_batch=optim.base_batch, lr_scaling=optim.lr_scaling,
              warmup_epochs=optim.warmup_epochs, warmup_scaling=optim.warmup_scaling,
              warmup_start_lr=optim.warmup_start_lr, schedule=optim.schedule,
              decay_at=tuple(optim.decay_at), decay_factor=optim.decay_factor,
              decay_power=optim.decay_power)


def learning_rate(optim, *, global_batch: int, train_size: int, total_steps: int
                  ) -> optax.Schedule:
  with fields(OPTIM_FIELDS):
    return schedules.learning_rate(global_batch=global_batch, train_size=train_size,
                                   total_steps=total_steps, **_schedule_arguments(optim))


def phase_steps(config, *, global_batch: int, total_steps: int) -> tuple[int, ...]:
  """First steps of the learning-rate phases after the first (decays of a step schedule)."""
  if config.optim.schedule != "step":
    return ()
  return schedules.decay_steps(config.optim.decay_at, global_batch=global_batch,
                               total_steps=total_steps)


def switch_step(config, *, global_batch: int, train_size: int, total_steps: int) -> int:
  """Post-local SGD's switch: algo.switch_samples, algo.switch_epochs, or the first decay."""
  algo = config.algo
  if algo.switch_samples > 0:
    samples = algo.switch_samples
  elif algo.switch_epochs >= 0:
    samples = algo.switch_epochs * train_size
  else:
    if config.optim.schedule != "step":
      raise ConfigError("optim.schedule", f"{config.optim.schedule!r} has no first decay to "
                        "switch at; set algo.switch_epochs or algo.switch_samples", ("step",))
    samples = round(config.optim.decay_at[0] * total_steps * global_batch)
  return math.ceil(samples / global_batch)


def extrapolation(config) -> extrapolation_lib.Extrapolation | None:
  kind, scale, optim = config.algo.extrapolation, config.algo.extrapolation_scale, config.optim
  with fields(ALGO_FIELDS):
    if kind == "none":
      return None
    if kind == "extrap":
      return extrapolation_lib.PastGradient(scale)
    if kind == "gradient_noise":
      return extrapolation_lib.GradientNoise(scale)
    if kind == "extrap_adam":
      return extrapolation_lib.AdamDirection(scale, b1=optim.b1, b2=optim.b2, eps=optim.eps)
    return extrapolation_lib.FilterNoise(scale, gaussian=kind == "gaussian",
                                         shared=kind == "smoothout")


def compressor(algo) -> compression.Compressor:
  name, unbiased = algo.compressor, algo.compress_unbiased
  with fields(ALGO_FIELDS):
    if name == "identity":
      return compression.Identity()
    if name == "top_k":
      return compression.TopK(algo.compress_fraction, index_bits=algo.index_bits or None)
    if name == "random_k":
      return compression.RandomK(algo.compress_fraction, unbiased=unbiased)
    if name == "sign":
      return compression.Sign()
    return compression.QSGD(algo.compress_bits, unbiased=unbiased)


def algorithm(config, loss_fn, schedule: optax.Schedule, *, phase_steps: tuple[int, ...],
              switch_step: int, local_steps_warmup: int = 0) -> Any:
  """The algorithm of `config.algo` on `loss_fn`, its optimizer on `schedule`; `switch_step`
  and `local_steps_warmup` in steps."""
  algo, name = config.algo, config.algo.name
  _choice(config, "algo.name", ALGORITHMS)
  tx = optimizer(config.optim)
  extrap = extrapolation(config)
  common = dict(learning_rate=schedule)
  with fields(_algo_fields(config.algo)):
    if name == "minibatch_sgd":
      return jaxdist.minibatch_sgd(loss_fn, tx, extrapolation=extrap,
                                   log_trust_ratios=config.optim.log_trust_ratios, **common)
    if name in ("local_sgd", "post_local_sgd"):
      switch = switch_step if name == "post_local_sgd" else 0
      if algo.compression != "none":
        return jaxdist.sign_sgd(loss_fn, tx, local_steps=algo.local_steps,
                                   error_feedback=algo.compression == "ef_sign",
                                   majority_vote=algo.compression == "sign_majority",
                                   switch_step=switch, extrapolation=extrap, **common)
      if name == "post_local_sgd":
        return jaxdist.post_local_sgd(
            loss_fn, tx, switch_step=switch, local_steps=algo.local_steps,
            global_momentum=algo.global_momentum, extrapolation=extrap,
            post_local_gradient_allreduce=algo.post_local_gradient_allreduce, **common)
      return jaxdist.local_sgd(loss_fn, tx, local_steps=algo.local_steps,
                                  global_momentum=algo.global_momentum, extrapolation=extrap,
                                  average_start=algo.average_start,
                                  average_offset=algo.average_offset,
                                  warmup_steps=local_steps_warmup,
                                  warmup_ramp=algo.local_steps_warmup, **common)
    if name == "hierarchical_local_sgd":
      return jaxdist.hierarchical_local_sgd(loss_fn, tx, local_steps=algo.local_steps,
                                               block_steps=algo.block_steps,
                                               extrapolation=extrap, switch_step=switch_step,
                                               **common)
    if name == "ef_sign_sgd":
      return jaxdist.ef_sign_sgd(loss_fn, tx, **common)
    graph = topology.make(config.topology.name, config.workers.num_workers)
    decentralized = dict(topology=graph, exchange=config.topology.exchange,
                         measure_consensus=algo.measure_consensus, **common)
    control = ConsensusControl(_targets(algo), phase_steps=phase_steps,
                               control_phases=tuple(algo.control_phases),
                               exact_phases=tuple(algo.exact_phases),
                               max_rounds=algo.max_gossip_rounds, rule=algo.consensus_rule,
                               ema_decay=algo.consensus_ema)
    if not (control.target or algo.exact_phases):
      control = None  # one gossip round a step
    if name == "choco_sgd":
      return jaxdist.choco_sgd(loss_fn, tx, compressor=compressor(algo),
                               consensus_step=algo.consensus_step, order=algo.choco_order,
                               public_init=algo.public_init, form=algo.choco_form,
                               **decentralized)
    if name in ("dcd_psgd", "ecd_psgd"):
      return getattr(jaxdist, name)(loss_fn, tx, compressor=compressor(algo), **decentralized)
    if name == "deepsqueeze":
      return jaxdist.deepsqueeze(loss_fn, tx, compressor=compressor(algo),
                                 consensus_step=algo.consensus_step, **decentralized)
    if name in ("d2", "d2_plus"):
      return getattr(jaxdist, name)(loss_fn, tx, **decentralized)
    if name == "gradient_tracking":
      return jaxdist.gradient_tracking(loss_fn, tx, **decentralized)
    if name == "sgp":
      return jaxdist.sgp(loss_fn, tx, **decentralized)
    if name == "gradient_gossip":
      return jaxdist.gradient_gossip(loss_fn, tx, consensus_control=control, **decentralized)
    if name == "shared_momentum":
      return jaxdist.shared_momentum(loss_fn, tx, momentum_exchange=algo.momentum_exchange,
                                     **decentralized)
    if name == "dmsgd":
      return jaxdist.dmsgd(loss_fn, tx, qg_mu=algo.qg_mu, **decentralized)
    if name == "slowmo":
      return jaxdist.slowmo(loss_fn, tx, slow_period=algo.slow_period,
                            slow_momentum=algo.slow_momentum, slow_lr=algo.slow_lr,
                            consensus_control=control, **decentralized)
    if name == "dsgd":
      return jaxdist.dsgd(loss_fn, tx, consensus_control=control, seed=config.seed,
                             **decentralized)
    if config.optim.optimizer == "adam":  # QG-DAdam, Alg. 19's Adam
      optim = config.optim
      return jaxdist.qg_dadam(loss_fn, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                              weight_decay=optim.weight_decay,
                              decay_norm_and_bias=optim.decay_norm_and_bias,
                              grad_clip_norm=optim.grad_clip_norm, qg_period=algo.qg_period,
                              consensus_control=control, seed=config.seed, **decentralized)
    return jaxdist.qg_dsgdm(loss_fn, tx, qg_mu=algo.qg_mu, qg_period=algo.qg_period,
                               adam_betas=(config.optim.b1, config.optim.b2),
                               consensus_control=control, seed=config.seed, **decentralized)


def _masking(config, *, num_classes: int, ramp_steps: int, total_steps: int):
  c = config.masking
  with fields(MASKING_FIELDS):
    if c.name == "learned":
      if not config.model.pretrained:
        raise ConfigError("model.pretrained", "learned masks need pretrained weights to mask",
                          "a model.npz written by an earlier run (its workdir/model.npz)")
      return masking.LearnedMask(c.initial_sparsity, c.skip_layers)
    return masking.Pruning(c.name, c.sparsity, c.recompute_every, ramp_steps, num_classes,
                           c.prune_classifier, granularity=c.granularity,
                           thresholds=c.thresholds,
                           freeze_at=round(c.freeze_at * total_steps) if c.freeze_at >= 0
                           else None)


def masking_ramp_steps(config, phases: tuple[int, ...], total_steps: int) -> int:
  """Step at which pruning reaches its target: masking.ramp_end of the run, or by default the
  second learning-rate decay ([Lin22] L4848)."""
  ramp_end = config.masking.ramp_end
  if ramp_end >= 0:
    return round(ramp_end * total_steps)
  if len(phases) < 2 and config.masking.name in masking.PRUNING:
    raise ConfigError("masking.ramp_end", "the learning rate has no second decay to reach the "
                      "target sparsity at", "a fraction of the run in [0, 1]")
  return phases[1] if len(phases) >= 2 else total_steps


# -- a whole experiment ------------------------------------------------------------------------


class Experiment:
  """Everything a config describes, built: dataset, model, task, schedule, algorithm, runner."""

  def __init__(self, config: ml_collections.ConfigDict, validated: bool = False):
    if not validated:
      validate(config)
    self.config = config
    with fields(DATA_FIELDS):
      self.dataset = datasets.relabel(datasets.load(config.data.name, config.data.data_dir),
                                      config.data.relabel)
      preprocess = datasets.preprocessor(self.dataset, config.data.augment)
      sampler = partition.Sampler(
          self.dataset.train["label"], config.workers.num_workers, config.data.batch_size,
          config.data.partition, seed=config.seed, dirichlet_alpha=config.data.dirichlet_alpha,
          dirichlet_scheme=config.data.dirichlet_scheme)
    self.train_size = len(self.dataset.train["label"])
    self.global_batch = config.workers.num_workers * config.data.batch_size
    self.total_steps = config_lib.total_steps(config, self.train_size)
    sizes = dict(global_batch=self.global_batch, total_steps=self.total_steps)
    self.learning_rate = learning_rate(config.optim, train_size=self.train_size, **sizes)
    phases = phase_steps(config, **sizes)
    with fields(MODEL_FIELDS):
      model = build_model(config.model.name, self.dataset.input_shape, self.dataset.num_classes,
                          hidden=tuple(config.model.hidden),
                          features=tuple(config.model.features), dense=config.model.dense,
                          width=config.model.width)
      if config.model.pretrained:
        model = pretrained(model, config.model.pretrained)
    task = tasks.classification(model, preprocess)
    self.deployed_weights = lambda params, model_state: (params, model_state)
    if config.masking.name != "none":
      mask = _masking(config, num_classes=self.dataset.num_classes, total_steps=self.total_steps,
                      ramp_steps=masking_ramp_steps(config, phases, self.total_steps))
      with fields(MASKING_FIELDS):
        model, task, self.deployed_weights = mask.wrap(model, task)
    self.model, self.task = model, task
    algo = config.algo
    switched = algo.name == "post_local_sgd" or (algo.name == "hierarchical_local_sgd" and (
        algo.switch_samples > 0 or algo.switch_epochs >= 0))
    switch = switch_step(config, train_size=self.train_size, **sizes) if switched else 0
    h_warmup = math.ceil(algo.local_steps_warmup_epochs * self.train_size / self.global_batch)
    self.algorithm = algorithm(config, task.loss, self.learning_rate, phase_steps=phases,
                               switch_step=switch, local_steps_warmup=h_warmup)
    shape, _ = config_lib.worker_grid(config)
    with fields(RUN_FIELDS):
      layout = (simulated_layout(config) if config.workers.backend == "simulated" else
                Sharded(config.workers.num_devices))
      self.runner = Runner(self.algorithm, from_arrays(self.dataset.train, sampler), grid=shape,
                           layout=layout, seed=config.seed, steps_per_chunk=config.train.log_every,
                           examples_per_step=self.global_batch,
                           on_nonfinite=config.train.on_nonfinite)

  def initial_model(self) -> tuple[Any, Any]:
    """Every worker's initial model, drawn from the seed."""
    with fields(MASKING_FIELDS):
      return self.model.init(jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 1))

  def record_extras(self, step: int) -> dict[str, float]:
    return {"samples": step * self.global_batch,
            "epoch": step * self.global_batch / self.train_size,
            "lr": float(self.learning_rate(step - 1))}

  def evaluation(self) -> dict[str, Any]:
    """The evaluation arguments of `Runner.fit` for this config."""
    return dict(eval_fn=self.task.evaluate, eval_data=self.dataset.test,
                eval_every=self.config.eval.every_steps,
                eval_batch_size=self.config.eval.batch_size,
                eval_per_worker=self.config.eval.model == "workers")


__all__ = ["ALGORITHMS", "ConfigWarning", "Experiment", "algorithm", "fields", "optimizer",
           "validate"]
