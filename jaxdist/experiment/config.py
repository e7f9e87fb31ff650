"""The configuration: every section with its defaults.

Config files (`configs/*.py`) start from `default()` and change what their experiment needs;
`python -m launch --config FILE --config.section.field=value` overrides single fields.
`jaxdist.experiment.build` checks every value and maps it to the library's arguments.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from jaxdist.errors import ConfigError

NODE_DIM = "workers"  # the grid dimension of the workers within a node


def default() -> ml_collections.ConfigDict:
  """All fields, with the thesis's recipe as defaults where it has one ([Lin22] App. 11.1)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.algo = dict(
      # minibatch_sgd | local_sgd | post_local_sgd | hierarchical_local_sgd | ef_sign_sgd
      # (centralized EF-signSGD); decentralized:
      # dsgd | qg_dsgdm | d2 | d2_plus | gradient_tracking | choco_sgd | dcd_psgd | ecd_psgd |
      # deepsqueeze | sgp (push-sum, for topology.name=directed_exponential) | shared_momentum |
      # gradient_gossip | dmsgd | slowmo
      name="local_sgd",
      local_steps=4,  # H: local steps between averagings
      block_steps=1,  # H_b (hierarchical): node averagings between two global ones
      # post_local_sgd: switch after these epochs; < 0: at the first decay;
      # hierarchical_local_sgd: mini-batch SGD first for these epochs (>= 0)
      switch_epochs=-1.0,
      switch_samples=0,  # post_local_sgd, hierarchical_local_sgd: switch after these samples
      post_local_gradient_allreduce=False,  # post_local_sgd: gradients averaged in the node after
      local_steps_warmup_epochs=0.0,  # local_sgd: H grows from 1 to local_steps over these
      local_steps_warmup="exponential",  # exponential (1, 2, 4, ...) | linear | constant (1)
      average_start=0,  # local_sgd: steps before the periodic averaging starts
      average_offset=0,  # local_sgd: first average this many steps after average_start; 0: H
      global_momentum=0.0,  # momentum on the averaged model differences (block momentum)
      # none | sign (signSGD) | ef_sign (EF-signSGD) | sign_majority (signSGD, majority vote)
      compression="none",
      # none | extrap | gradient_noise | gaussian | uniform | smoothout | extrap_adam
      extrapolation="none",
      extrapolation_scale=1.0,  # eta_hat = scale * lr / K
      qg_mu=0.9,  # qg_dsgdm: mu of the quasi-global buffer
      qg_period=1,  # qg_dsgdm: tau, steps between buffer updates (Alg. 20)
      momentum_exchange="allreduce",  # shared_momentum: the buffer allreduce | gossip
      slow_period=12,  # slowmo: tau, base steps between outer steps (Alg. 22)
      slow_momentum=0.7,  # slowmo: beta
      slow_lr=1.0,  # slowmo: alpha
      compressor="sign",  # choco_sgd, dcd/ecd_psgd, deepsqueeze: identity | top_k | random_k |
      # sign | qsgd
      compress_fraction=0.01,  # choco_sgd: a for top_k and random_k
      compress_bits=4,  # choco_sgd: b for qsgd
      compress_unbiased=False,  # unbiased random_k / qsgd (not for CHOCO)
      consensus_step=0.45,  # choco_sgd: gamma (tune per compressor, [Lin22] Table 13.1)
      choco_order="gossip_first",  # choco_sgd: gossip_first (Alg. 2) | step_first (Koloskova)
      public_init="zero",  # choco_sgd: public copies start at zero (L1084) | x0
      choco_form="public_copies",  # choco_sgd: public_copies (Alg. 2) | error_feedback (Alg. 15)
      index_bits=0,  # top_k: bits an index costs; 0 = ceil(log2 d), or 32
      measure_consensus=True,  # decentralized: consensus distance every step (an all-reduce)
      consensus_target=0.0,  # dsgd, qg_dsgdm, gradient_gossip, slowmo: gossip until Xi <= target;
      # 0 = no control
      phase_targets=(),  # one target per learning-rate phase instead of consensus_target
      consensus_rule="distance",  # distance: Xi <= target | adaptive: Xi <= target * phi_ema |
      # residual: Theta < target * phi_ema (target = q)
      consensus_ema=0.9,  # decay of phi_ema, the EMA of the mean gradient norm in a phase
      control_phases=(),  # learning-rate phases (0, 1, ...) under control; empty = all
      exact_phases=(),  # phases that all-reduce instead of gossiping ("dec-phase-x" runs)
      max_gossip_rounds=100,  # cap on gossip rounds per step under control
  )
  c.topology = dict(
      # ring | torus | complete | exponential | one_peer_exponential | bipartite_exponential |
      # random_matching | social | disconnected (W = I) | directed_exponential (SGP)
      name="ring",
      exchange="auto",  # auto | shift (ppermute per neighbour) | dense (all-gather) | mean
  )
  c.workers = dict(
      num_workers=8,  # K
      per_node=0,  # hierarchical_local_sgd: workers per node (K / per_node nodes)
      backend="simulated",  # simulated: vmap (split over CPU devices) | shard_map: over a mesh
      # shard_map: devices in the mesh, 0 = all visible; simulated: CPU devices the workers are
      # split over, 0 = every one that divides the grid (1 for minibatch_sgd)
      num_devices=0,
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
      granularity="weights",  # pruning: weights | filters (structured, [Lin22] Table 15.3)
      thresholds="global",  # pruning: global | per_layer (Table 15.2)
      freeze_at=-1.0,  # pruning: fraction of the run after which the mask is frozen; < 0: never
      initial_sparsity=0.05,  # learned: fraction of scores starting below the threshold
      skip_layers=(),  # learned: top-level modules left unmasked (frozen as pretrained)
  )
  c.optim = dict(
      optimizer="sgd",  # sgd | adam | lars | lamb | adamw | adagrad
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
      eps=1e-6,  # adam, lamb
      eps_inside_sqrt=False,  # lamb: m / sqrt(v + eps) as printed in [You20] Alg. 16
      bias_correction=True,  # lamb
      trust_coefficient=0.001,  # lars
      trust_eps=0.0,  # lars: added to the trust-ratio denominator (ch. 5: none; ref. code 1e-5)
      trust_denominator="sum_of_norms",  # lars: ||g|| + wd||w|| | norm_of_sum: ||g + wd w||
      trust_clip=(0.0, math.inf),  # lars: bounds of the trust ratio; lamb: bounds of phi(||x||)
      # lr_inside: a = m a + lr d | lr_outside: w -= lr * a | ema_normalized: [You20] Alg. 15
      lars_momentum="lr_inside",
      trust_norm="l2",  # lars, lamb: l2 | l1 | linf, the norm of the trust ratio
      lamb_variant="lamb",  # lamb (Alg. 16) | n_lamb (Alg. 17) | nn_lamb (Alg. 18)
      initial_accumulator=0.1,  # adagrad
      log_trust_ratios=False,  # ||w|| / ||g|| per tensor as metrics (Table 5.6)
      gradient_noise_eta=0.0,  # Neelakantan noise N(0, eta / (1 + t)^gamma) on the gradient
      gradient_noise_gamma=0.55,
      adapt_norm_and_bias=False,  # lars, lamb: trust ratio also on leaves of rank < 2
      grad_clip_value=0.0,  # lars: clip each gradient entry to +-value; 0 = off
      grad_clip_norm=0.0,  # clip the global gradient norm (per worker); 0 = off
  )
  c.train = dict(
      num_epochs=30.0,  # passes over the training set by all workers together
      num_steps=0,  # if > 0, used instead of num_epochs
      log_every=50,  # steps per jitted call and per progress line
      on_nonfinite="stop",  # stop: end with one line at a non-finite loss | skip: drop the step
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


def worker_grid(config: ml_collections.ConfigDict) -> tuple[tuple[int, ...], tuple[str, ...]]:
  """Shape and dimension names of the worker grid: flat, or nodes of `per_node` workers."""
  k, per_node = config.workers.num_workers, config.workers.per_node
  if per_node:
    return (k // per_node, per_node), ("nodes", NODE_DIM)
  return (k,), (NODE_DIM,)


def total_steps(config: ml_collections.ConfigDict, train_size: int) -> int:
  """Training steps of the run: train.num_steps, or num_epochs over the global batch."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  global_batch = config.workers.num_workers * config.data.batch_size
  return max(1, math.ceil(config.train.num_epochs * train_size / global_batch))
