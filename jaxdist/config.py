"""The configuration: every section with its defaults, and one check of all values before a run.

Config files (`configs/*.py`) start from `default()` and change what their experiment needs;
`python -m launch --config FILE --config.section.field=value` overrides single fields.
"""

import math

import ml_collections
from ml_collections import config_dict

from jaxdist import algorithms, compression, datasets, gossip, masking, models, partition
from jaxdist import recipes, topology, workers
from jaxdist.algorithms import extrap, local_sgd
from jaxdist.errors import ConfigError

EVAL_MODELS = ("average", "workers")


def default() -> ml_collections.ConfigDict:
  """All fields, with the thesis's recipe as defaults where it has one ([Lin22] App. 11.1)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.algo = dict(
      # minibatch_sgd | local_sgd | post_local_sgd | hierarchical_local_sgd; decentralized:
      # dsgd | qg_dsgdm | d2 | d2_plus | gradient_tracking | choco_sgd
      name="local_sgd",
      local_steps=4,  # H: local steps between averagings
      block_steps=1,  # H_b (hierarchical): node averagings between two global ones
      switch_epochs=-1.0,  # post_local_sgd: switch after these epochs; < 0: at the first decay
      switch_samples=0,  # post_local_sgd: switch after these samples, if > 0
      global_momentum=0.0,  # momentum on the averaged model differences (block momentum)
      compression="none",  # none | sign (signSGD) | ef_sign (EF-signSGD) of the averaging
      # none | extrap | gradient_noise | gaussian | uniform | smoothout | extrap_adam
      extrapolation="none",
      extrapolation_scale=1.0,  # eta_hat = scale * lr / K
      qg_mu=0.9,  # qg_dsgdm: mu of the quasi-global buffer
      qg_period=1,  # qg_dsgdm: tau, steps between buffer updates (Alg. 20)
      compressor="sign",  # choco_sgd: identity | top_k | random_k | sign | qsgd
      compress_fraction=0.01,  # choco_sgd: a for top_k and random_k
      compress_bits=4,  # choco_sgd: b for qsgd
      compress_unbiased=False,  # unbiased random_k / qsgd (not for CHOCO)
      consensus_step=0.45,  # choco_sgd: gamma (tune per compressor, [Lin22] Table 13.1)
      measure_consensus=True,  # decentralized: consensus distance every step (an all-reduce)
      consensus_target=0.0,  # dsgd, qg_dsgdm: gossip until Xi <= target; 0 = no control
      control_phases=(),  # learning-rate phases (0, 1, ...) under control; empty = all
      exact_phases=(),  # phases that all-reduce instead of gossiping ("dec-phase-x" runs)
      max_gossip_rounds=100,  # cap on gossip rounds per step under control
  )
  c.topology = dict(
      # ring | torus | complete | exponential | one_peer_exponential | bipartite_exponential |
      # random_matching | social
      name="ring",
      exchange="auto",  # auto | shift (ppermute per neighbour) | dense (all-gather) | mean
  )
  c.workers = dict(
      num_workers=8,  # K
      per_node=0,  # hierarchical_local_sgd: workers per node (K / per_node nodes)
      backend="simulated",  # simulated: vmap on one device | shard_map: over a device mesh
      num_devices=0,  # shard_map: devices in the mesh, 0 = all visible
  )
  c.data = dict(
      name="mnist1d",  # mnist1d | digits (offline) | mnist | cifar10 (prepared in data_dir)
      data_dir="",  # tfds data_dir; empty = tfds's default
      batch_size=32,  # per worker
      partition="iid",  # iid (re-shuffled every epoch) | iid_fixed | dirichlet
      dirichlet_alpha=1.0,
      dirichlet_scheme="per_class",  # per_class (authors' code) | per_client (thesis prose)
      augment="none",  # none | crop_flip (images)
      relabel="none",  # none | parity: label mod 2, another task on the same inputs
  )
  c.model = dict(
      name="mlp",  # logistic_regression | mlp | cnn | resnet20
      hidden=(256, 256),  # mlp
      features=(32, 64),  # cnn: strided convolutions
      dense=128,  # cnn: hidden dense layer
      width=16,  # resnet20: filters of the first stage
      pretrained="",  # a model.npz of an earlier run: initial weights where names/shapes match
  )
  c.masking = dict(
      name="none",  # none | dpf | incremental | one_shot (pruning) | learned (binary masks)
      sparsity=0.9,  # pruning: the target fraction of pruned weights
      recompute_every=16,  # pruning: steps between mask recomputations
      ramp_end=-1.0,  # pruning: fraction of the run where the target is reached; < 0: 2nd decay
      prune_classifier=False,  # pruning: also prune the last layer
      initial_sparsity=0.05,  # learned: fraction of scores starting below the threshold
      skip_layers=(),  # learned: top-level modules left unmasked (frozen as pretrained)
  )
  c.optim = dict(
      optimizer="sgd",  # sgd | adam | lars | lamb
      base_lr=0.1,  # learning rate at base_batch
      base_batch=128,
      lr_scaling="linear",  # linear | sqrt | none: scaling with the global batch K*B
      warmup_epochs=0.0,
      warmup_scaling="none",  # none | legw: warmup epochs grow with the batch (constant steps)
      warmup_start_lr=config_dict.placeholder(float),  # None: start from base_lr
      schedule="step",  # step | constant | cosine | poly
      decay_at=(0.5, 0.75),  # step: fractions of all samples
      decay_factor=0.1,  # step
      decay_power=2.0,  # poly: lr * (1 - progress)^power after the warmup
      momentum=0.9,  # sgd, lars
      nesterov=True,  # sgd, lars
      weight_decay=1e-4,
      decay_norm_and_bias=False,  # weight decay also on leaves of rank < 2
      b1=0.9,  # adam, lamb
      b2=0.999,
      eps=1e-6,  # adam, lamb; lars: added to the trust-ratio denominator
      eps_inside_sqrt=False,  # lamb: m / sqrt(v + eps) as printed in [You20] Alg. 16
      bias_correction=True,  # lamb
      trust_coefficient=0.001,  # lars
      trust_denominator="sum_of_norms",  # lars: ||g|| + wd||w|| | norm_of_sum: ||g + wd w||
      trust_clip=(0.0, math.inf),  # lars: bounds of the trust ratio; lamb: bounds of phi(||x||)
      lars_momentum="lr_inside",  # lr_inside: a = m a + lr d | lr_outside: w -= lr * a
      adapt_norm_and_bias=False,  # lars, lamb: trust ratio also on leaves of rank < 2
      grad_clip_value=0.0,  # lars: clip each gradient entry to +-value; 0 = off
      grad_clip_norm=0.0,  # clip the global gradient norm (per worker); 0 = off
  )
  c.train = dict(
      num_epochs=30.0,  # passes over the training set by all workers together
      num_steps=0,  # if > 0, used instead of num_epochs
      log_every=50,  # steps per jitted call and per progress line
  )
  c.eval = dict(
      every_steps=0,  # multiple of train.log_every; 0 = at the end only
      model="average",  # average: the averaged model | workers: mean over the workers' models
      batch_size=500,
  )
  c.checkpoint = dict(
      every_steps=0,  # multiple of train.log_every; 0 = at the end (and on SIGTERM) only
      keep=2,
  )
  return c


def cpu_scale(config: ml_collections.ConfigDict, *, dataset: str = "mnist1d", batch_size: int,
              epochs: float, base_lr: float) -> ml_collections.ConfigDict:
  """Shrinks a thesis setup to minutes on a CPU: the MLP on MNIST-1D, same workers and method."""
  config.data.update(name=dataset, batch_size=batch_size, augment="none")
  config.model.name = "mlp"
  config.optim.update(base_lr=base_lr, base_batch=batch_size * config.workers.num_workers,
                      warmup_epochs=min(config.optim.warmup_epochs, epochs / 10))
  config.train.update(num_epochs=epochs, log_every=50)
  config.eval.every_steps = 200
  return config


def parse_arg(arg: str, **defaults) -> ml_collections.ConfigDict:
  """Variants of a config file: `--config file.py:algo=post_local_sgd,H=16,cpu` sets the named
  values (typed like their defaults; a bare name sets a boolean)."""
  values = ml_collections.ConfigDict(defaults)
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, has_value, text = item.partition("=")
    if key not in defaults:
      raise ConfigError(f"--config ...:{key}", "no such variant option",
                        ", ".join(sorted(defaults)))
    kind = type(defaults[key])
    if kind is bool:
      value = not has_value or text.lower() in ("1", "true", "yes")
    else:
      try:
        value = kind(text)
      except ValueError:
        raise ConfigError(f"--config ...:{key}", f"cannot use {text!r}",
                          f"a value of type {kind.__name__}") from None
    values[key] = value
  return values


def _choice(config, field: str, allowed) -> None:
  value = _get(config, field)
  if value not in allowed:
    raise ConfigError(field, f"unknown value {value!r}", allowed)


def _at_least(config, field: str, low) -> None:
  value = _get(config, field)
  if not value >= low:
    raise ConfigError(field, f"must be >= {low}, got {value}", f">= {low}")


def _get(config, field: str):
  for part in field.split("."):
    config = config[part]
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot be used."""
  _choice(config, "algo.name", algorithms.ALGORITHMS)
  _at_least(config, "algo.local_steps", 1)
  _at_least(config, "algo.block_steps", 1)
  _at_least(config, "algo.switch_samples", 0)
  _at_least(config, "algo.global_momentum", 0)
  _at_least(config, "algo.extrapolation_scale", 0)
  _choice(config, "algo.compression", local_sgd.COMPRESSIONS)
  _choice(config, "algo.extrapolation", extrap.KINDS)
  if not 0 <= config.algo.qg_mu < 1:
    raise ConfigError("algo.qg_mu", f"{config.algo.qg_mu} is not a momentum", "0 <= qg_mu < 1")
  _at_least(config, "algo.qg_period", 1)
  _choice(config, "algo.compressor", compression.COMPRESSORS)
  low, high = compression.BITS_RANGE
  if not low <= config.algo.compress_bits <= high:
    raise ConfigError("algo.compress_bits", f"{config.algo.compress_bits} bits per entry",
                      f"an integer in {low}..{high}")
  _at_least(config, "algo.consensus_step", 0)
  _at_least(config, "algo.consensus_target", 0)
  _at_least(config, "algo.max_gossip_rounds", 1)
  for field in ("algo.control_phases", "algo.exact_phases"):
    phases = _get(config, field)
    if not all(isinstance(p, int) and p >= 0 for p in phases):
      raise ConfigError(field, f"{tuple(phases)} are not phase indices",
                        "a tuple of integers >= 0")
  _choice(config, "topology.name", topology.TOPOLOGIES)
  _choice(config, "topology.exchange", gossip.EXCHANGES)
  if config.algo.switch_samples > 0 and config.algo.switch_epochs >= 0:
    raise ConfigError("algo.switch_samples", "set either algo.switch_samples or "
                      "algo.switch_epochs, not both", "switch_samples = 0 or switch_epochs < 0")
  _at_least(config, "workers.num_workers", 1)
  _at_least(config, "workers.per_node", 0)
  per_node = config.workers.per_node
  if per_node and config.workers.num_workers % per_node:
    raise ConfigError("workers.per_node", f"{per_node} does not divide workers.num_workers="
                      f"{config.workers.num_workers}",
                      f"divisors of {config.workers.num_workers}, or 0 for no nodes")
  _choice(config, "workers.backend", workers.BACKENDS)
  _at_least(config, "workers.num_devices", 0)
  _choice(config, "data.name", datasets.DATASETS)
  _at_least(config, "data.batch_size", 1)
  _choice(config, "data.partition", partition.PARTITIONS)
  _choice(config, "data.dirichlet_scheme", partition.DIRICHLET_SCHEMES)
  _choice(config, "data.augment", datasets.AUGMENTATIONS)
  if not config.data.dirichlet_alpha > 0:
    raise ConfigError("data.dirichlet_alpha", f"must be > 0, got {config.data.dirichlet_alpha}",
                      "> 0")
  _choice(config, "data.relabel", datasets.RELABELS)
  _choice(config, "model.name", models.MODELS)
  _choice(config, "masking.name", masking.METHODS)
  if not 0 <= config.masking.sparsity < 1:
    raise ConfigError("masking.sparsity", f"{config.masking.sparsity} is not a fraction",
                      "0 <= sparsity < 1")
  if not 0 <= config.masking.initial_sparsity < 1:
    raise ConfigError("masking.initial_sparsity", f"{config.masking.initial_sparsity} is not a "
                      "fraction", "0 <= initial_sparsity < 1")
  _at_least(config, "masking.recompute_every", 1)
  if config.masking.ramp_end > 1:
    raise ConfigError("masking.ramp_end", f"{config.masking.ramp_end} is past the end of the run",
                      "a fraction in [0, 1], or < 0 for the second learning-rate decay")
  _choice(config, "optim.optimizer", recipes.OPTIMIZERS)
  _choice(config, "optim.lr_scaling", recipes.LR_SCALINGS)
  _choice(config, "optim.schedule", recipes.SCHEDULES)
  _choice(config, "optim.warmup_scaling", recipes.WARMUP_SCALINGS)
  _choice(config, "optim.trust_denominator", recipes.TRUST_DENOMINATORS)
  _choice(config, "optim.lars_momentum", recipes.LARS_MOMENTUM)
  for field in ("optim.base_lr", "optim.base_batch", "optim.momentum", "optim.weight_decay",
                "optim.warmup_epochs", "optim.decay_factor", "optim.decay_power", "optim.b1",
                "optim.b2", "optim.eps", "optim.trust_coefficient", "optim.grad_clip_value",
                "optim.grad_clip_norm"):
    _at_least(config, field, 0)
  low, high = config.optim.trust_clip
  if not 0 <= low <= high:
    raise ConfigError("optim.trust_clip", f"{tuple(config.optim.trust_clip)} is not a range",
                      "(low, high) with 0 <= low <= high")
  if config.optim.base_batch == 0:
    raise ConfigError("optim.base_batch", "must be >= 1, got 0", ">= 1")
  if config.train.num_steps < 0 or config.train.num_epochs < 0 or not (
      config.train.num_steps > 0 or config.train.num_epochs > 0):
    raise ConfigError("train.num_steps", "one of train.num_steps and train.num_epochs must be "
                      f"> 0, got {config.train.num_steps} and {config.train.num_epochs}",
                      "num_steps > 0, or num_steps = 0 and num_epochs > 0")
  _at_least(config, "train.log_every", 1)
  for field in ("eval.every_steps", "checkpoint.every_steps"):
    every = _get(config, field)
    if every < 0 or every % config.train.log_every:
      raise ConfigError(field, f"{every} is not a multiple of train.log_every "
                        f"({config.train.log_every})",
                        f"0 or multiples of {config.train.log_every}")
  _choice(config, "eval.model", EVAL_MODELS)
  _at_least(config, "eval.batch_size", 1)
  _at_least(config, "checkpoint.keep", 1)


def worker_grid(config: ml_collections.ConfigDict) -> tuple[tuple[int, ...], tuple[str, ...]]:
  """Shape and dimension names of the worker grid: flat, or nodes of `per_node` workers."""
  k, per_node = config.workers.num_workers, config.workers.per_node
  if per_node:
    return (k // per_node, per_node), ("nodes", algorithms.NODE_DIM)
  return (k,), (algorithms.NODE_DIM,)


def total_steps(config: ml_collections.ConfigDict, train_size: int) -> int:
  """Training steps of the run: train.num_steps, or num_epochs over the global batch."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  global_batch = config.workers.num_workers * config.data.batch_size
  return max(1, math.ceil(config.train.num_epochs * train_size / global_batch))
