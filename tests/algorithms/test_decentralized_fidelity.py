"""Decentralized algorithms against the thesis's boxes written out by hand: CHOCO-SGD in both
orders and both public-copy starts (Alg. 2, Koloskova et al.), its error-feedback form (Alg. 15),
QG-DAdam (Alg. 19); the configs of Table 4.1 / 13.1 and 9.5; metrics in float64; resume."""


import chex
import jax
import numpy as np
import optax
import pytest

import jaxdist
from helpers import (
    LR,
    assert_resumes_bit_exactly,
    assert_same,
    per_step,
    regression_data,
    run_algorithm,
)
from helpers import linear_regression_loss as loss
from helpers import sgd as helpers_sgd
from jaxdist.algorithms.decentralized import ConsensusControl
from jaxdist.communication import topology
from jaxdist.communication.compression import TopK
from jaxdist.errors import ArgumentError

N = 8
GRAD = jax.jit(jax.grad(lambda p, b: loss(p, {}, b, None)[0]))


def _grads(x, batches, t):
  """Every worker's gradient at its own model x (dict of [N, ...] arrays) on its step-t batch."""
  out = [GRAD({k: v[i] for k, v in x.items()}, jax.tree.map(lambda b: b[t, i], batches))
         for i in range(N)]
  return {k: np.stack([np.asarray(g[k]) for g in out]) for k in x}


def _top_k(v, fraction):
  """Per worker, per leaf: the k = max(1, floor(a d)) largest |v| kept."""
  flat = v.reshape(N, -1)
  k = max(1, int(fraction * flat.shape[1]))
  out = np.zeros_like(flat)
  for i in range(N):
    kept = np.argsort(-np.abs(flat[i]), kind="stable")[:k]
    out[i, kept] = flat[i, kept]
  return out.reshape(v.shape)


def _choco_by_hand(params, batches, steps, gamma, order, public_init, fraction=0.4):
  """Alg. 2 (gossip_first) or Koloskova et al. (step_first), plain SGD, ring of 8, float64."""
  w = topology.ring(N).matrices[0]
  mix = lambda v: np.tensordot(w, v, axes=1)
  x = {k: np.stack([np.asarray(v, np.float64)] * N) for k, v in params.items()}
  xhat = {k: (np.zeros_like(v) if public_init == "zero" else v.copy()) for k, v in x.items()}
  s = {k: mix(v) for k, v in xhat.items()}

  def publish():
    for k in x:
      q = _top_k(x[k] - xhat[k], fraction)
      xhat[k] += q
      s[k] += mix(q)

  def pull():
    for k in x:
      x[k] = x[k] + gamma * (s[k] - xhat[k])

  for t in range(steps):
    if order == "gossip_first":
      pull()
      publish()
    g = _grads(x, batches, t)
    x = {k: x[k] - LR * g[k] for k in x}
    if order == "step_first":
      publish()
      pull()
  return x


def _choco(**kwargs):
  return jaxdist.choco_sgd(loss, optax.sgd, learning_rate=LR, topology=topology.ring(N),
                           compressor=TopK(0.4), consensus_step=0.3, **kwargs)


@pytest.mark.parametrize("order", ["gossip_first", "step_first"])
@pytest.mark.parametrize("public_init", ["zero", "x0"])
def test_choco_sgd_is_its_algorithm_box(order, public_init):
  """Each order and start of the public copies, step for step against the box by hand; the
  default order is the thesis's Alg. 2; the error-feedback form (Alg. 15) is the same."""
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=6, dtype=np.float64)
    if order == "gossip_first" and public_init == "zero":
      algorithm = _choco()  # the defaults
      assert (algorithm.order, algorithm.choco.public_init) == (order, public_init)
    elif order == "gossip_first":
      algorithm = _choco(form="error_feedback", public_init=public_init)
    else:
      algorithm = _choco(order=order, public_init=public_init)
    state, _ = run_algorithm(algorithm, params, batches)
    by_hand = _choco_by_hand(params, batches, 6, 0.3, order, public_init)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, state.params), by_hand,
                                rtol=1e-12, atol=1e-12)


def test_choco_refuses_time_varying_graphs_and_unknown_orders_by_name():
  for graph in (topology.one_peer_exponential(N), topology.random_matching(N)):
    with pytest.raises(ArgumentError, match=r"topology: .*static graphs only"):
      jaxdist.choco_sgd(loss, learning_rate=LR, topology=graph, compressor=TopK(0.1),
                        consensus_step=0.1)
  with pytest.raises(ArgumentError, match=r"order: .*gossip_first"):
    _choco(order="later")
  with pytest.raises(ArgumentError, match=r"public_init: .*x0"):
    _choco(public_init="one")


def _qg_dadam_by_hand(params, batches, steps, b1, b2, eps):
  """Alg. 19 on a ring of 8: no bias correction, eps inside the square root, moments rebuilt
  from d / ||d||_2 after gossip."""
  w = topology.ring(N).matrices[0]
  x = {k: np.stack([np.asarray(v, np.float64)] * N) for k, v in params.items()}
  mhat = {k: np.zeros_like(v) for k, v in x.items()}
  vhat = {k: np.zeros_like(v) for k, v in x.items()}
  for t in range(steps):
    g = _grads(x, batches, t)
    half = {}
    for k in x:
      m = b1 * mhat[k] + (1 - b1) * g[k]
      v = b2 * vhat[k] + (1 - b2) * g[k]**2
      half[k] = x[k] - LR * m / np.sqrt(v + eps)
    new = {k: np.tensordot(w, v, axes=1) for k, v in half.items()}
    d = {k: x[k] - new[k] for k in x}
    norm = np.sqrt(sum(np.sum(v.reshape(N, -1)**2, 1) for v in d.values()))
    for k in x:
      dhat = d[k] / norm.reshape((N,) + (1,) * (d[k].ndim - 1))
      mhat[k] = b1 * mhat[k] + (1 - b1) * dhat
      vhat[k] = b2 * vhat[k] + (1 - b2) * dhat**2
    x = new
  return x


def test_qg_dadam_is_alg_19():
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=6, dtype=np.float64)
    qg = jaxdist.qg_dadam(loss, learning_rate=LR, topology=topology.ring(N), b1=0.9, b2=0.99,
                          eps=1e-6)
    state, _ = run_algorithm(qg, params, batches)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, state.params),
                                _qg_dadam_by_hand(params, batches, 6, 0.9, 0.99, 1e-6),
                                rtol=1e-10, atol=1e-12)
    with pytest.raises(ArgumentError, match=r"optimizer: QG-DAdam follows Alg. 19"):
      jaxdist.qg_dsgdm(loss, jaxdist.optim.adam, learning_rate=LR,
                       topology=topology.ring(N)).init(params, {}, None)


def test_disconnected_workers_never_communicate():
  """W = I: each worker runs SGD alone (local SGD that never averages), sending nothing."""
  batches, params = regression_data(N, steps=5)
  alone, metrics = run_algorithm(jaxdist.dsgd(loss, learning_rate=LR,
                                              topology=topology.disconnected(N)), params, batches)
  never, _ = run_algorithm(jaxdist.local_sgd(loss, learning_rate=LR, local_steps=100), params,
                           batches)
  chex.assert_trees_all_equal(alone.params, never.params)
  assert list(metrics["comm/bits_sent"]) == [0] * 5


def test_metrics_of_a_float64_run_are_float64():
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=2, dtype=np.float64)
    _, metrics = run_algorithm(_choco(), params, batches)
    for name in ("consensus/distance", "consensus/phi", "comm/bits_sent", "comm/rounds"):
      assert np.asarray(metrics[name]).dtype == np.float64, name


def test_decentralized_configs_follow_tables_4_1_13_1_and_9_5():
  from configs.decentralized.cifar10_resnet20 import get_config
  for name in ("d2", "d2_plus"):
    assert get_config(f"algo={name}").optim.momentum == 0.0  # Table 9.5
  assert get_config("algo=dsgd").optim.momentum == 0.9
  top1 = get_config("algo=choco_sgd,n=8,B=128,compressor=top_k,fraction=0.01")
  assert top1.data.partition == "iid"  # reshuffled every epoch (Table 13.1's caption)
  assert (top1.optim.base_lr, top1.optim.base_batch, top1.algo.consensus_step) == (1.2, 1024,
                                                                                   0.0375)
  assert top1.optim.warmup_start_lr == 0.1
  qsgd8 = get_config("algo=choco_sgd,n=8,B=128,compressor=qsgd,bits=8")
  assert (qsgd8.optim.base_lr, qsgd8.algo.consensus_step) == (0.96, 0.2)
  assert get_config("algo=choco_sgd,compressor=sign,gamma=0.3").algo.consensus_step == 0.3


RESUMED = {
    "choco_error_feedback": lambda: _choco(form="error_feedback", public_init="x0"),
    "qg_dadam": lambda: jaxdist.qg_dadam(loss, learning_rate=LR, topology=topology.ring(N)),
    "sgp": lambda: jaxdist.sgp(loss, learning_rate=LR, topology=_column_stochastic()),
    "dmsgd": lambda: jaxdist.dmsgd(loss, helpers_sgd(nesterov=False), learning_rate=LR,
                                   topology=topology.ring(N)),
    "slowmo": lambda: jaxdist.slowmo(loss, helpers_sgd(), learning_rate=LR,
                                     topology=topology.ring(N), slow_period=3),
    "adaptive_control": lambda: jaxdist.dsgd(
        loss, learning_rate=LR, topology=topology.ring(N),
        consensus_control=ConsensusControl(0.05, rule="adaptive", max_rounds=5)),
    "deepsqueeze": lambda: jaxdist.deepsqueeze(loss, learning_rate=LR, topology=topology.ring(N),
                                               compressor=TopK(0.4), consensus_step=0.1),
    "slowmo_adaptive_control": lambda: jaxdist.slowmo(
        loss, helpers_sgd(), learning_rate=LR, topology=topology.ring(N), slow_period=3,
        consensus_control=ConsensusControl(0.05, rule="adaptive", max_rounds=5)),
}


@pytest.mark.parametrize("variant", RESUMED)
def test_new_states_resume_bit_identical(tmp_path, variant):
  batches, params = regression_data(N, steps=8)
  run = lambda directory: jaxdist.train(
      RESUMED[variant](), params, data=per_step(batches), num_workers=N, num_steps=8,
      steps_per_chunk=4, progress=False, checkpoint_dir=str(directory), checkpoint_every=4,
      keep=3)
  assert_resumes_bit_exactly(run, tmp_path)


def _baseline_by_hand(name, params, batches, steps, gamma=0.2, fraction=0.4):
  """DCD-PSGD, ECD-PSGD (Tang et al. 2018a) and DeepSqueeze (Tang et al. 2019) on a ring of 8,
  plain SGD, float64, with replicas of the neighbours written out."""
  w = topology.ring(N).matrices[0]
  mix = lambda v: np.tensordot(w, v, axes=1)
  x = {k: np.stack([np.asarray(v, np.float64)] * N) for k, v in params.items()}
  replica = {k: v.copy() for k, v in x.items()}  # DCD: copies of x_j; ECD: estimates y_j
  error = {k: np.zeros_like(v) for k, v in x.items()}
  for t in range(1, steps + 1):
    g = _grads(x, batches, t - 1)
    for k in x:
      if name == "dcd_psgd":
        q = _top_k(mix(replica[k]) - LR * g[k] - x[k], fraction)
        x[k] = x[k] + q
        replica[k] = replica[k] + q
      elif name == "ecd_psgd":
        new = mix(replica[k]) - LR * g[k]
        z = (1 - t / 2) * x[k] + (t / 2) * new
        replica[k] = (1 - 2 / t) * replica[k] + (2 / t) * _top_k(z, fraction)
        x[k] = new
      else:
        half = x[k] - LR * g[k]
        v = half + error[k]
        q = _top_k(v, fraction)
        error[k] = v - q
        x[k] = half + gamma * (mix(q) - q)
  return x


@pytest.mark.parametrize("name", ["dcd_psgd", "ecd_psgd", "deepsqueeze"])
def test_compressed_gossip_baselines_are_their_papers_updates(name):
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=5, dtype=np.float64)
    extra = {"consensus_step": 0.2} if name == "deepsqueeze" else {}
    algorithm = getattr(jaxdist, name)(loss, optax.sgd, learning_rate=LR,
                                       topology=topology.ring(N), compressor=TopK(0.4), **extra)
    state, metrics = run_algorithm(algorithm, params, batches)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, state.params),
                                _baseline_by_hand(name, params, batches, 5),
                                rtol=1e-10, atol=1e-12)
    assert list(metrics["comm/bits_sent"]) == [2 * ((32 + 3) * 2 + 32)] * 5


def _controlled(control, steps=12):
  batches, params = regression_data(N, steps=steps)
  schedule = optax.piecewise_constant_schedule(LR, {4: 0.5, 8: 0.5})
  algorithm = jaxdist.dsgd(loss, optax.sgd, learning_rate=schedule, topology=topology.ring(N),
                           consensus_control=control)
  return run_algorithm(algorithm, params, batches)


def test_consensus_control_by_phase_adaptive_and_residual_rules():
  """Per-phase targets (Table 5.2), Xi <= k phi_ema (Table 14.9) and Theta < q phi_ema
  (Tables 14.1/14.2), phi_ema restarted at every phase; Xi_max per phase from a run."""
  _, plain = _controlled(None)
  xi_max = jaxdist.algorithms.decentralized.xi_max_per_phase(plain["consensus/distance"],
                                                             (4, 8))
  distance = np.asarray(plain["consensus/distance"])
  assert xi_max == (distance[:4].max(), distance[4:8].max(), distance[8:].max())
  targets = (xi_max[0] / 2, xi_max[1] / 4, 1.0)
  _, by_phase = _controlled(ConsensusControl(targets, phase_steps=(4, 8), max_rounds=50))
  for phase, steps in enumerate((slice(0, 4), slice(4, 8), slice(8, 12))):
    assert max(by_phase["consensus/distance"][steps]) <= targets[phase]
  assert max(by_phase["comm/rounds"][:8]) > 1 and list(by_phase["comm/rounds"][8:]) == [1] * 4
  _, zero_first = _controlled(ConsensusControl((0.0, targets[1], 0.0), phase_steps=(4, 8),
                                               max_rounds=50))
  rounds = list(zero_first["comm/rounds"])  # target 0: no control in that phase
  assert rounds[:4] == [1] * 4 and rounds[8:] == [1] * 4 and max(rounds[4:8]) > 1

  def ema(phi):
    out = []
    for t, value in enumerate(phi):
      out.append(value if t in (0, 4, 8) else 0.5 * out[-1] + 0.5 * value)
    return np.asarray(out)

  k = 0.5 * np.median(distance / ema(plain["consensus/phi"]))  # uncontrolled runs exceed it
  _, adaptive = _controlled(ConsensusControl(k, phase_steps=(4, 8), rule="adaptive",
                                             ema_decay=0.5, max_rounds=50))
  phi_ema = ema(adaptive["consensus/phi"])
  assert np.all(adaptive["consensus/distance"] <= k * phi_ema * (1 + 1e-5))
  assert max(adaptive["comm/rounds"]) > 1
  q_rounds = [sum(_controlled(ConsensusControl(q, phase_steps=(4, 8), rule="residual",
                                               max_rounds=50))[1]["comm/rounds"])
              for q in (1e-2, 1e-3)]
  assert 12 < q_rounds[0] < q_rounds[1]  # a smaller q gossips longer


@pytest.mark.parametrize("name", ["gradient_gossip", "slowmo"])
def test_adaptive_control_holds_on_gradient_gossip_and_slowmo(name):
  """Xi <= k phi_ema after every step (Table 14.9's rule), phi_t the norm of the workers' own
  gradients (gradient gossip: before their gossip); SlowMo's exact average every 5 steps."""
  batches, params = regression_data(N, steps=12)
  extra = {"slow_period": 5} if name == "slowmo" else {}
  make = lambda control: getattr(jaxdist, name)(loss, optax.sgd, learning_rate=LR,
                                                topology=topology.ring(N),
                                                consensus_control=control, **extra)
  _, plain = run_algorithm(make(None), params, batches)
  _, dsgd = run_algorithm(jaxdist.dsgd(loss, optax.sgd, learning_rate=LR,
                                       topology=topology.ring(N)), params, batches)
  assert plain["consensus/phi"][0] == dsgd["consensus/phi"][0]  # the same local gradients

  def ema(phi):
    out = []
    for value in phi:
      out.append(value if not out else 0.5 * out[-1] + 0.5 * value)
    return np.asarray(out)

  distance = np.asarray(plain["consensus/distance"])
  k = 0.5 * np.median(distance / ema(plain["consensus/phi"]))
  _, adaptive = run_algorithm(make(ConsensusControl(k, rule="adaptive", ema_decay=0.5,
                                                    max_rounds=50)), params, batches)
  assert np.all(adaptive["consensus/distance"] <= k * ema(adaptive["consensus/phi"]) * (1 + 1e-5))
  assert max(adaptive["comm/rounds"]) > 1


def test_phi_is_the_mean_local_gradient_norm():
  batches, params = regression_data(N, steps=1)
  _, metrics = run_algorithm(jaxdist.dsgd(loss, learning_rate=LR, topology=topology.ring(N)),
                             params, batches)
  g = _grads({k: np.stack([v] * N) for k, v in params.items()}, batches, 0)
  phi = np.sqrt(np.mean(sum(np.sum(v.reshape(N, -1)**2, 1) for v in g.values())))
  np.testing.assert_allclose(metrics["consensus/phi"][0], phi, rtol=1e-5)


def _column_stochastic(n=N):
  """Worker i keeps half; even i pushes the other half to i + 1, odd i a quarter to i + 1 and
  a quarter to i + 2: W[receiver, sender], columns sum to 1, rows do not."""
  w = 0.5 * np.eye(n)
  for i in range(n):
    if i % 2 == 0:
      w[(i + 1) % n, i] += 0.5
    else:
      w[(i + 1) % n, i] += 0.25
      w[(i + 2) % n, i] += 0.25
  return topology.Topology("column_stochastic", n, (w,))


def test_sgp_is_push_sum_and_dsgd_on_a_doubly_stochastic_graph():
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=6, dtype=np.float64)
    graph = _column_stochastic()
    state, _ = run_algorithm(jaxdist.sgp(loss, learning_rate=LR, topology=graph), params,
                             batches)
    w = graph.matrices[0]
    z = {k: np.stack([np.asarray(v, np.float64)] * N) for k, v in params.items()}
    weight = np.ones(N)
    for t in range(6):
      g = _grads(z, batches, t)
      x = {k: np.tensordot(w, weight.reshape((N,) + (1,) * (v.ndim - 1)) * v - LR * g[k], 1)
           for k, v in z.items()}
      weight = w @ weight
      z = {k: v / weight.reshape((N,) + (1,) * (v.ndim - 1)) for k, v in x.items()}
    assert np.ptp(weight) > 0.1  # the weights move: push-sum, not plain gossip
    chex.assert_trees_all_close(jax.tree.map(np.asarray, state.params), z, rtol=1e-12)
    directed = topology.directed_exponential(N)
    sgp, _ = run_algorithm(jaxdist.sgp(loss, learning_rate=LR, topology=directed), params,
                           batches)
    dsgd, _ = run_algorithm(jaxdist.dsgd(loss, learning_rate=LR, topology=directed), params,
                            batches)
    chex.assert_trees_all_close(sgp.params, dsgd.params, rtol=1e-12)
    np.testing.assert_array_equal(sgp.weight, 1.0)


def test_momentum_baselines_of_table_9_6():
  """Buffer all-reduced: one buffer on every worker, and on the complete graph the same as
  gossiping it; gradient gossip on the complete graph without momentum is mini-batch SGD;
  DMSGD on one worker is heavy-ball SGDm (d = beta mhat + g there)."""
  with jax.enable_x64(True):
    batches, params = regression_data(N, steps=4, dtype=np.float64)
    heavy_ball = helpers_sgd(momentum=0.9, nesterov=False, weight_decay=0.0)
    trace = lambda s: optax.tree_utils.tree_get(s.opt_state, "trace")
    shared, metrics = run_algorithm(jaxdist.shared_momentum(
        loss, heavy_ball, learning_rate=LR, topology=topology.ring(N)), params, batches)
    assert np.ptp(np.asarray(trace(shared)["w"]), axis=0).max() < 1e-15
    assert list(metrics["comm/bits_sent"]) == [(2 + 1) * 64 * 6] * 4  # ring + one all-reduce
    on_complete = [run_algorithm(jaxdist.shared_momentum(
        loss, heavy_ball, learning_rate=LR, topology=topology.complete(N),
        momentum_exchange=kind, exchange="dense"), params, batches)[0]
        for kind in ("allreduce", "gossip")]
    chex.assert_trees_all_close(trace(on_complete[0]), trace(on_complete[1]), rtol=1e-12)
    gossiped, _ = run_algorithm(jaxdist.gradient_gossip(
        loss, learning_rate=LR, topology=topology.complete(N)), params, batches)
    minibatch, _ = run_algorithm(jaxdist.minibatch_sgd(loss, learning_rate=LR), params, batches)
    assert_same(gossiped.params, minibatch.params, 1e-12)
    one = jax.tree.map(lambda b: b[:, :1], batches)
    dmsgd, _ = run_algorithm(jaxdist.dmsgd(loss, heavy_ball, learning_rate=LR,
                                           topology=topology.complete(1), qg_mu=0.5), params, one)
    dsgdm, _ = run_algorithm(jaxdist.dsgd(loss, heavy_ball, learning_rate=LR,
                                          topology=topology.complete(1)), params, one)
    chex.assert_trees_all_close(dmsgd.params, dsgdm.params, rtol=1e-12)


def test_slowmo_is_alg_22():
  """One worker, plain SGD base, tau = 3: the slow momentum and outer step by hand."""
  with jax.enable_x64(True):
    batches, params = regression_data(1, steps=7, dtype=np.float64)
    algorithm = jaxdist.slowmo(loss, learning_rate=LR, topology=topology.complete(1),
                               slow_period=3, slow_momentum=0.7, slow_lr=0.5)
    state, _ = run_algorithm(algorithm, params, batches)
    x = {k: np.asarray(v, np.float64)[None] for k, v in params.items()}
    outer, m = dict(x), {k: np.zeros_like(v) for k, v in x.items()}
    for t in range(7):
      g = {k: np.asarray(v)[None] for k, v in GRAD({k: v[0] for k, v in x.items()},
                                                   jax.tree.map(lambda b: b[t, 0],
                                                                batches)).items()}
      x = {k: x[k] - LR * g[k] for k in x}
      if (t + 1) % 3 == 0:
        m = {k: 0.7 * m[k] + (outer[k] - x[k]) / LR for k in x}
        outer = {k: outer[k] - 0.5 * LR * m[k] for k in x}
        x = dict(outer)
    chex.assert_trees_all_close(jax.tree.map(np.asarray, state.params), x, rtol=1e-12)
