"""Masking: dynamic pruning with feedback and learned binary masks ([Lin22] ch. 6-7, App. 15-16).

Masking transforms the objective, not the training algorithm: `Pruning(...).wrap(model, task)`
and `LearnedMask(...).wrap(model, task)` turn a (model, task) pair into one whose forward pass
sees masked weights, and keep the mask state in `model_state` ({"model": the model's own state,
"mask": MaskState}), which every algorithm already carries per worker, never averages, and
checkpoints. Mini-batch, local and decentralized SGD train the result
without knowing.

Pruning (`dpf`, `incremental`, `one_shot`; ch. 6):
* `dpf` (Alg. 4): the gradient is taken at the pruned model m * x and applied to the dense x, so
  pruned weights keep learning and can come back (a straight-through mask);
* `incremental` (Zhu & Gupta): the gradient reaches only the kept weights and masks are drawn from
  the pruned model, so a pruned weight stays pruned;
* `one_shot`: the dense model trains until the end of the ramp, is pruned once by magnitude to
  the target, and fine-tuned with that mask.
Masks are one global magnitude threshold over the pruned layers (every weight matrix or kernel but
the classifier; biases and normalisation parameters stay dense), recomputed every
`recompute_every` steps, with exactly round(s_t * N) weights pruned; s_t follows the cubic ramp
s_t = s (1 - (1 - t / T)^3) to the target at T (default: the second learning-rate decay, L4848),
then stays. The deployed model is m * x. Variants:
* `granularity="filters"` (structured pruning, Table 15.3): whole output filters (slice [..., j]
  of a kernel) ranked by their l2 norm across layers, round(s_t F) of the F filters pruned;
* `thresholds="per_layer"` (Table 15.2): every pruned layer loses round(s_t N_l) of its own
  weights (or filters) instead of one threshold for all;
* `freeze_at` (Table 6.2, DPF + fine-tuning): from that step the mask stays and the gradient
  reaches only the kept weights.
Logged: sparsity per layer and overall, the mask entries that flipped at the last recompute, and
delta_t = ||x - m x||^2 / ||x||^2 over the pruned layers (eq. 6.1).

Learned masks (`learned`; ch. 7, eq. 7.1-7.2): pretrained weights W are frozen; each masked
kernel gets real scores M ~ U[tau - s0, tau - s0 + 1) (tau = 1/2, so a fraction s0 = initial
sparsity starts below tau); the forward pass uses W * 1[M >= tau] and the straight-through
estimator hands dL/dmask to M. A fresh classifier is random, frozen and masked too. The trained
parameters are the scores; a task costs one bit per masked weight (`export_masks`).
"""


from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdist.errors import ArgumentError, check_at_least, check_choice, check_fraction
from jaxdist.models import Model, flat_names
from jaxdist.objectives.tasks import Task

PyTree = Any
PRUNING = ("dpf", "incremental", "one_shot")
GRANULARITIES = ("weights", "filters")
THRESHOLDS = ("global", "per_layer")
THRESHOLD = 0.5  # tau of the learned masks


class MaskState(NamedTuple):
  mask: PyTree  # 0/1 floats shaped like the parameters; scalar 1 for leaves never pruned
  kept: jax.Array  # [pruned leaves]: weights each keeps, counted at the last recompute
  flips: jax.Array  # mask entries that changed at the last recompute


def prunable(params: PyTree, num_classes: int, prune_classifier: bool = False) -> PyTree:
  """True for the leaves pruning acts on: weight matrices and kernels, except the classifier
  (the last one with `num_classes` outputs) unless `prune_classifier`."""
  leaves = jax.tree.leaves(params)
  flags = [x.ndim >= 2 for x in leaves]
  classifiers = [i for i, x in enumerate(leaves) if x.ndim == 2 and x.shape[-1] == num_classes]
  if classifiers and not prune_classifier:
    flags[classifiers[-1]] = False
  return jax.tree.unflatten(jax.tree.structure(params), flags)


def magnitude_mask(params: PyTree, pruned: PyTree, sparsity) -> PyTree:
  """One global threshold over the pruned leaves: the round(sparsity * N) smallest |x| get 0
  (exactly that many unless magnitudes tie at the threshold).

  The threshold is the k-th smallest magnitude, found by bisection on the bit patterns of the
  non-negative floats (ordered like the floats): 32 counting passes, ~25x faster than a sort
  on XLA:CPU."""
  leaves = [x for x, p in zip(jax.tree.leaves(params), jax.tree.leaves(pruned)) if p]
  bits = [lax.bitcast_convert_type(jnp.abs(x).astype(jnp.float32), jnp.int32) for x in leaves]
  num_pruned = jnp.round(sparsity * sum(x.size for x in leaves)).astype(jnp.int32)

  def halve(_, bounds):  # invariant: count(bits <= high) >= num_pruned
    low, high = bounds
    middle = low + (high - low) // 2
    enough = sum(jnp.sum(b <= middle) for b in bits) >= num_pruned
    return jnp.where(enough, low, middle + 1), jnp.where(enough, middle, high)

  _, threshold = lax.fori_loop(0, 32, halve, (jnp.int32(0), jnp.int32(0x7F800000)))
  threshold = jnp.where(num_pruned > 0, threshold, -1)
  kept = iter([(b > threshold).astype(jnp.float32) for b in bits])
  return jax.tree.map(lambda x, p: next(kept) if p else jnp.ones((), jnp.float32), params,
                      pruned)


def filter_mask(params: PyTree, pruned: PyTree, sparsity) -> PyTree:
  """Structured masks: whole output filters (slice [..., j]) with the smallest l2 norms, ranked
  by one threshold across the pruned layers, round(sparsity * F) of the F filters pruned."""
  def norms(x, p):
    return jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), tuple(range(x.ndim - 1)))) if p \
        else x
  kept = magnitude_mask(jax.tree.map(norms, params, pruned), pruned, sparsity)
  return jax.tree.map(lambda x, m, p: jnp.broadcast_to(m, x.shape) if p else m, params, kept,
                      pruned)


def layer_masks(params: PyTree, pruned: PyTree, sparsity, rule: Callable) -> PyTree:
  """`rule` (magnitude_mask or filter_mask) applied to each pruned layer on its own."""
  leaves, treedef = jax.tree.flatten(params)
  flags = jax.tree.leaves(pruned)
  masks = [rule([x], [True], sparsity)[0] if p else jnp.ones((), jnp.float32)
           for x, p in zip(leaves, flags)]
  return jax.tree.unflatten(treedef, masks)


def cubic_sparsity(step, target: float, ramp_steps: int):
  """s_t = s (1 - (1 - t/T)^3) until T, then s (Zhu & Gupta; [Lin22] L4848)."""
  progress = jnp.minimum(step / max(ramp_steps, 1), 1.0)
  return target * (1.0 - (1.0 - progress)**3)


def _bits(params: PyTree, pruned: PyTree, kept: jax.Array) -> jax.Array:
  """Bits of the deployed sparse model: the kept values plus a one-bit map per pruned leaf."""
  total, kept = jnp.float32(0), iter(kept)
  for x, p in zip(jax.tree.leaves(params), jax.tree.leaves(pruned)):
    bits_per_value = x.dtype.itemsize * 8
    total += bits_per_value * next(kept) + x.size if p else bits_per_value * x.size
  return total


class Pruning:
  """Pruning during training to a target sparsity.

  Args:
    method: `dpf` (Alg. 4), `incremental` or `one_shot`.
    sparsity: the target fraction of pruned weights, in [0, 1).
    recompute_every: steps between mask recomputations.
    ramp_steps: the step at which the target is reached (the thesis: the second decay).
    num_classes: outputs of the classifier, which is not pruned unless `prune_classifier`.
    granularity: "weights" (unstructured) or "filters" (whole output filters, Table 15.3).
    thresholds: "global" (one over all pruned layers) or "per_layer" (Table 15.2).
    freeze_at: from this step the mask stays and only kept weights learn (DPF + fine-tuning,
      Table 6.2); None: never.
  """

  def __init__(self, method: str, sparsity: float, recompute_every: int, ramp_steps: int,
               num_classes: int, prune_classifier: bool = False, *,
               granularity: str = "weights", thresholds: str = "global",
               freeze_at: int | None = None):
    check_choice("method", method, PRUNING)
    check_fraction("sparsity", sparsity)
    check_at_least("recompute_every", recompute_every, 1, integer=True)
    check_at_least("ramp_steps", ramp_steps, 0, integer=True)
    check_choice("granularity", granularity, GRANULARITIES)
    check_choice("thresholds", thresholds, THRESHOLDS)
    if freeze_at is not None:
      check_at_least("freeze_at", freeze_at, 0, integer=True)
    self.method, self.sparsity, self.every = method, sparsity, recompute_every
    self.ramp_steps, self.num_classes = ramp_steps, num_classes
    self.prune_classifier = prune_classifier
    self.granularity, self.thresholds, self.freeze_at = granularity, thresholds, freeze_at

  def wrap(self, model: Model, task: Task) -> tuple[Model, Task, Callable]:
    def init(rng):
      params, model_state = model.init(rng)
      pruned = prunable(params, self.num_classes, self.prune_classifier)
      ones = jax.tree.map(lambda x, p: jnp.ones(x.shape if p else (), jnp.float32), params,
                          pruned)
      sizes = [x.size for x, p in zip(jax.tree.leaves(params), jax.tree.leaves(pruned)) if p]
      return params, {"model": model_state,
                      "mask": MaskState(ones, jnp.asarray(sizes, jnp.float32), jnp.int32(0))}

    def loss(params, state, batch, rng):
      step = _step(batch)
      masks = self._recompute(params, state["mask"], step)
      value, (model_state, metrics) = task.loss(self._forward(params, masks.mask, step),
                                                state["model"], batch, rng)
      metrics = {**metrics, **self._metrics(params, masks, step)}
      return value, ({"model": model_state, "mask": masks}, metrics)

    def evaluate(params, state, batch):
      return task.evaluate(_apply_mask(params, state["mask"].mask), state["model"], batch)

    def apply(params, state, x, train):
      logits, model_state = model.apply(_apply_mask(params, state["mask"].mask), state["model"],
                                        x, train)
      return logits, {**state, "model": model_state}

    def deployed(params, state):
      return _apply_mask(params, state["mask"].mask), state["model"]

    return Model(init, apply), Task(loss, evaluate), deployed

  def schedule(self, step):
    if self.method == "one_shot":
      return jnp.where(step >= self.ramp_steps, self.sparsity, 0.0)
    return cubic_sparsity(step, self.sparsity, self.ramp_steps)

  def _recompute(self, params, state: MaskState, t) -> MaskState:
    if self.method == "one_shot":
      due = t == self.ramp_steps
    else:
      due = t % self.every == 0
    if self.freeze_at is not None:
      due = due & (t < self.freeze_at)
    # Incremental pruning ranks the pruned model: what was cut stays cut.
    source = params if self.method == "dpf" else _apply_mask(params, state.mask)
    pruned = prunable(params, self.num_classes, self.prune_classifier)

    def recompute(_):
      rule = filter_mask if self.granularity == "filters" else magnitude_mask
      if self.thresholds == "per_layer":
        mask = layer_masks(jax.lax.stop_gradient(source), pruned, self.schedule(t), rule)
      else:
        mask = rule(jax.lax.stop_gradient(source), pruned, self.schedule(t))
      flips = sum(jnp.sum(a != b) for a, b in zip(jax.tree.leaves(mask),
                                                   jax.tree.leaves(state.mask)))
      kept = [jnp.sum(m) for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(pruned)) if p]
      return MaskState(mask, jnp.stack(kept), flips.astype(jnp.int32))

    return lax.cond(due, recompute, lambda _: state, None)

  def _forward(self, params, masks, step):
    if self.method != "dpf":
      return _apply_mask(params, masks)
    # value m * x; gradient to every x (the feedback), to the kept ones once frozen
    frozen = False if self.freeze_at is None else step >= self.freeze_at
    def leaf(x, m):
      reach = jnp.where(frozen, m, 1.0).astype(x.dtype)
      return reach * x + jax.lax.stop_gradient(m * x - reach * x)
    return jax.tree.map(leaf, params, masks)

  def _metrics(self, params, state: MaskState, step) -> dict[str, jax.Array]:
    """Sparsity per pruned layer and overall, from the counts of the last recompute."""
    pruned = prunable(params, self.num_classes, self.prune_classifier)
    named = [(n, x) for n, x, p in zip(flat_names(params), jax.tree.leaves(params),
                                        jax.tree.leaves(pruned)) if p]
    out = {f"masking/sparsity/{n}": 1.0 - k / x.size for (n, x), k in zip(named, state.kept)}
    out["masking/sparsity"] = 1.0 - jnp.sum(state.kept) / sum(x.size for _, x in named)
    out["masking/target"] = self.schedule(step)
    out["masking/flips"] = state.flips.astype(jnp.float32)
    masks = [m for m, p in zip(jax.tree.leaves(state.mask), jax.tree.leaves(pruned)) if p]
    square = lambda v: jnp.sum(jnp.square(v.astype(jnp.float32)))
    dense = sum(square(x) for _, x in named)
    out["masking/delta"] = sum(square(x - m * x) for (_, x), m in zip(named, masks)) / jnp.where(
        dense > 0, dense, 1.0)
    out["masking/deployed_bits"] = _bits(params, pruned, state.kept)
    return out


def _step(batch) -> jax.Array:
  """The iteration, which the runner puts into every batch (the same on every worker, so the
  recompute below is a real branch, not a select over the workers)."""
  if "step" not in batch:
    raise ValueError("pruning needs the iteration in batch['step']")
  return batch["step"]


def _apply_mask(params, masks):
  return jax.tree.map(lambda x, m: (x * m).astype(x.dtype), params, masks)


class LearnedMask:
  """Binary masks over frozen pretrained weights, learned through real scores (ch. 7). The
  trained parameters are `{leaf name: scores}` for the masked kernels."""

  def __init__(self, initial_sparsity: float = 0.05, skip_layers=()):
    check_fraction("initial_sparsity", initial_sparsity)
    self.initial_sparsity, self.skip_layers = initial_sparsity, tuple(skip_layers)

  def masked_names(self, weights) -> list[str]:
    """The kernels that get scores: every weight matrix outside `skip_layers`."""
    return [p for p, x in flat_names(weights).items()
            if x.ndim >= 2 and p.split("/")[0] not in self.skip_layers]

  def wrap(self, model: Model, task: Task) -> tuple[Model, Task, Callable]:
    def init(rng):
      score_rng, rng = jax.random.split(rng)
      weights, model_state = model.init(rng)  # pretrained where names and shapes match
      unknown = set(self.skip_layers) - set(weights)
      if unknown:
        raise ArgumentError("skip_layers", f"no layers named {sorted(unknown)}",
                            sorted(weights))
      named = flat_names(weights)
      low = THRESHOLD - self.initial_sparsity
      names = self.masked_names(weights)
      keys = jax.random.split(score_rng, len(names))
      scores = {n: jax.random.uniform(k, named[n].shape, jnp.float32, low, low + 1.0)
                for n, k in zip(names, keys)}
      return scores, {"model": model_state, "frozen": weights}

    def masked_weights(scores, frozen, straight_through):
      def mask(m):  # value 1[M >= tau]; with the estimator the gradient goes straight to M
        binary = (m >= THRESHOLD).astype(m.dtype)
        return m + jax.lax.stop_gradient(binary - m) if straight_through else binary

      leaves = [w * mask(scores[n]) if n in scores else w
                for n, w in flat_names(frozen).items()]
      return jax.tree.unflatten(jax.tree.structure(frozen), leaves)

    def loss(scores, state, batch, rng):
      value, (model_state, metrics) = task.loss(masked_weights(scores, state["frozen"], True),
                                                state["model"], batch, rng)
      kept = sum(jnp.sum(m >= THRESHOLD) for m in scores.values())
      total = sum(m.size for m in scores.values())
      metrics = {**metrics, "masking/sparsity": 1.0 - kept / total,
                 "masking/stored_bits": jnp.float32(total)}
      return value, ({**state, "model": model_state}, metrics)

    def evaluate(scores, state, batch):
      return task.evaluate(masked_weights(scores, state["frozen"], False), state["model"], batch)

    def apply(scores, state, x, train):
      logits, model_state = model.apply(masked_weights(scores, state["frozen"], False),
                                        state["model"], x, train)
      return logits, {**state, "model": model_state}

    def deployed(scores, state):
      return masked_weights(scores, state["frozen"], False), state["model"]

    return Model(init, apply), Task(loss, evaluate), deployed


def export_masks(scores: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  """The binary masks of learned scores, packed 8 per byte: all a task needs to store."""
  return {name: np.packbits(np.asarray(m) >= THRESHOLD) for name, m in scores.items()}
