"""Decentralized training: exact equivalences, CHOCO's consensus, quasi-global momentum as QHM,
consensus control, bits, equal numbers on devices."""

import functools

import chex
import jax
import numpy as np
import optax
import pytest
from jax import lax

import jaxdist
from helpers import LR, assert_same, make_workers, regression_data, run_algorithm, sgd
from helpers import linear_regression_loss as loss
from jaxdist.algorithms.base import bits_per_model
from jaxdist.algorithms.decentralized import ChocoGossip, ConsensusControl
from jaxdist.communication import topology
from jaxdist.communication.compression import QSGD, Identity, RandomK, Sign, TopK
from jaxdist.communication.gossip import Gossip
from jaxdist.core import collectives
from jaxdist.errors import ArgumentError

D = 6  # parameters of the regression model


def test_complete_graph_dsgd_is_minibatch_sgd():
  """W = 11^T/n averages the models after every local step: local SGD with H = 1."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=15, dtype=np.float64)
    dsgd = jaxdist.dsgd(loss, sgd(), learning_rate=LR, topology=topology.complete(8))
    minibatch = jaxdist.minibatch_sgd(loss, sgd(), learning_rate=LR)
    assert dsgd.gossip.exchange == "mean"
    assert_same(run_algorithm(dsgd, params, batches)[0].params,
                run_algorithm(minibatch, params, batches)[0].params, 1e-13)


@pytest.mark.parametrize("graph", ["ring", "exponential"])
def test_choco_with_identity_compression_and_unit_step_is_dsgd(graph):
  """Q = identity, gamma = 1, step first: xhat = x_{t+1/2}, s = W x_{t+1/2},
  x_{t+1} = W x_{t+1/2}."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=15, dtype=np.float64)
    choco = jaxdist.choco_sgd(loss, sgd(), learning_rate=LR, topology=topology.make(graph, 8),
                              compressor=Identity(), consensus_step=1.0, order="step_first")
    dsgd = jaxdist.dsgd(loss, sgd(), learning_rate=LR, topology=topology.make(graph, 8))
    choco_state, _ = run_algorithm(choco, params, batches)
    dsgd_state, _ = run_algorithm(dsgd, params, batches)
    assert np.ptp(np.asarray(dsgd_state.params["w"]), axis=0).max() > 1e-3  # not in consensus
    assert_same(choco_state.params, dsgd_state.params, 1e-12)
    assert_same(choco_state.opt_state, dsgd_state.opt_state, 1e-12)


def _gossip_only(n, compressor, gamma, rounds, naive=False):
  """T4: ring, d = 100, x_i ~ N(0, 1); the error Xi^2 = mean ||x_i - x_bar||^2 after `rounds`,
  and the drift of the mean, for CHOCO-Gossip or naive compressed gossip
  x_i += sum_j w_ij (Q(x_j) - Q(x_i))."""
  workers = make_workers((n,))
  gossip = Gossip(topology.ring(n))
  choco = ChocoGossip(gossip, compressor, gamma)

  def run(x):
    def body(t, carry):
      x, public = carry
      key = jax.random.fold_in(jax.random.PRNGKey(t), collectives.index())
      if naive:
        sent = compressor(x, key)
        return x + gossip.mix(sent, t) - sent, public
      x, public, _ = choco(x, public, t, key)
      return x, public

    x, _ = lax.fori_loop(0, rounds, body, (x, choco.init(x)))
    return x

  x0 = np.random.default_rng(0).normal(size=(n, 100))
  x = np.asarray(jax.jit(workers.map(run, in_axes=0, out_axes=0))(x0))
  error = np.mean(np.sum((x - x.mean(0))**2, 1))
  return error, np.abs(x.mean(0) - x0.mean(0)).max()


def test_choco_gossip_converges_where_naive_compressed_gossip_stalls():
  """[Lin22] §15 T4 (ring n = 16, top-10%, 2000 rounds: naive 4.76 stuck, CHOCO gamma = 0.05
  4.0e-4; both keep the mean)."""
  with jax.enable_x64(True):
    top10 = TopK(0.1)
    naive, naive_drift = _gossip_only(16, top10, 0.0, 2000, naive=True)
    choco, choco_drift = _gossip_only(16, top10, 0.05, 2000)
    choco_early, _ = _gossip_only(16, top10, 0.05, 1000)
    assert naive > 1.0  # ours 3.97
    assert choco < 1e-3  # ours 3.96e-4
    assert choco < choco_early / 10  # linear convergence, not a plateau
    assert naive_drift < 1e-12 and choco_drift < 1e-12


def test_choco_with_too_large_a_consensus_step_diverges():
  with jax.enable_x64(True):
    error, _ = _gossip_only(16, TopK(0.01), 0.9, 300)
    assert not error < 10


def _qhm(params, batches, lr, beta, mu, steps):
  """Quasi-hyperbolic momentum by hand (float64): beta_hat = mu + (1 - mu) beta,
  m' <- beta_hat m' + g, x <- x - lr ((1 - mu/beta_hat) m' + (mu/beta_hat) g)."""
  beta_hat = mu + (1 - mu) * beta
  nu = 1 - mu / beta_hat
  grad = jax.grad(lambda p, b: loss(p, {}, b, None)[0])
  x = jax.tree.map(np.asarray, params)
  m = jax.tree.map(np.zeros_like, x)
  for t in range(steps):
    g = jax.tree.map(np.asarray, grad(x, jax.tree.map(lambda b: b[t, 0], batches)))
    m = jax.tree.map(lambda m, g: beta_hat * m + g, m, g)
    x = jax.tree.map(lambda x, m, g: x - lr * (nu * m + (1 - nu) * g), x, m, g)
  return x


@pytest.mark.parametrize("mu", [0.9, 0.5, 0.0])
def test_single_worker_quasi_global_momentum_is_qhm(mu):
  """T7 ([Lin22] §9.5.2): QG-SGDm on one worker is QHM with beta_hat = mu + (1 - mu) beta,
  nu = 1 - mu / beta_hat; mu = 0 is heavy-ball SGDm."""
  with jax.enable_x64(True):
    batches, params = regression_data(1, steps=30, dtype=np.float64)
    tx = sgd(momentum=0.9, nesterov=False, weight_decay=0.0)
    qg = jaxdist.qg_dsgdm(loss, tx, learning_rate=LR, topology=topology.complete(1), qg_mu=mu)
    state, _ = run_algorithm(qg, params, batches)
    assert_same(state.params, _qhm(params, batches, LR, 0.9, mu, 30), 1e-12)
    if mu == 0.0:
      heavy_ball = jaxdist.dsgd(loss, tx, learning_rate=LR, topology=topology.complete(1))
      assert_same(state.params, run_algorithm(heavy_ball, params, batches)[0].params, 1e-12)


def test_quasi_global_buffer_is_the_model_difference_after_gossip():
  """m_{t+1} = mu m_t + (1 - mu) (x_t - x_{t+1}) / lr; with tau = 2 it moves every 2nd step."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=3, dtype=np.float64)
    build = functools.partial(jaxdist.qg_dsgdm, loss, sgd(), learning_rate=LR,
                              topology=topology.ring(8), qg_mu=0.7)
    qg = build()
    two, _ = run_algorithm(qg, params, jax.tree.map(lambda b: b[:2], batches))
    three, _ = run_algorithm(qg, params, batches)
    trace = lambda s: optax.tree_utils.tree_get(s.opt_state, "trace")
    expected = jax.tree.map(lambda m, a, b: 0.7 * m + 0.3 * (a - b) / LR, trace(two),
                            two.params, three.params)
    assert_same(trace(three), expected, 1e-12)
    every_two = build(qg_period=2)
    one = run_algorithm(every_two, params, jax.tree.map(lambda b: b[:1], batches))[0]
    assert np.abs(np.asarray(trace(one)["w"])).max() == 0  # step 1: not yet
    two = run_algorithm(every_two, params, jax.tree.map(lambda b: b[:2], batches))[0]
    assert np.abs(np.asarray(trace(two)["w"])).max() > 0


def test_d2_plus_survives_a_learning_rate_drop_that_d2_does_not():
  """T12 ([Lin22] L2752): on one worker D^2_+ is plain SGD through a 10x decay, while D^2 keeps
  0.9 of the last large update in its correction."""
  with jax.enable_x64(True):
    batches, params = regression_data(1, steps=10, dtype=np.float64)
    schedule = optax.piecewise_constant_schedule(0.1, {5: 0.1})
    tx = sgd(momentum=0.0, weight_decay=0.0)
    build = lambda name: getattr(jaxdist, name)(loss, tx, learning_rate=schedule,
                                                topology=topology.complete(1))
    runs = {name: run_algorithm(build(name), params, batches)[0].params
            for name in ("d2", "d2_plus", "dsgd")}
    assert_same(runs["d2_plus"], runs["dsgd"], 1e-12)
    early = jax.tree.map(lambda b: b[:5], batches)
    assert_same(run_algorithm(build("d2"), params, early)[0].params,
                run_algorithm(build("dsgd"), params, early)[0].params, 1e-12)  # before the drop
    assert np.abs(np.asarray(runs["d2"]["w"]) - np.asarray(runs["dsgd"]["w"])).max() > 1e-3


def test_gradient_tracking_tracks_the_mean_gradient():
  """mean_i y_i = mean_i g_i at every step; on the complete graph without momentum it is
  mini-batch SGD."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=6, dtype=np.float64)
    tx = sgd(momentum=0.0)
    tracking = jaxdist.gradient_tracking(loss, tx, learning_rate=LR, topology=topology.ring(8))
    state, metrics = run_algorithm(tracking, params, batches)
    assert_same(jax.tree.map(lambda y: np.mean(y, 0), state.tracker),
                jax.tree.map(lambda g: np.mean(g, 0), state.previous_grads), 1e-12)
    assert list(metrics["comm/bits_sent"]) == [2 * 2 * 64 * D] * 6  # float64
    complete = jaxdist.gradient_tracking(loss, tx, learning_rate=LR,
                                         topology=topology.complete(8))
    minibatch = jaxdist.minibatch_sgd(loss, tx, learning_rate=LR)
    assert_same(run_algorithm(complete, params, batches)[0].params,
                run_algorithm(minibatch, params, batches)[0].params, 1e-12)


def test_consensus_control_gossips_until_the_target():
  """§5.5: in a controlled phase extra rounds run until Xi <= target; in an exact phase the
  workers all-reduce (Xi = 0); elsewhere one round."""
  batches, params = regression_data(8, steps=12)
  schedule = optax.piecewise_constant_schedule(LR, {4: 0.5, 8: 0.5})
  target = 2e-3
  plain = jaxdist.dsgd(loss, sgd(), learning_rate=schedule, topology=topology.ring(8))
  control = ConsensusControl(target, phase_steps=(4, 8), control_phases=(1,),
                             exact_phases=(2,))
  controlled = jaxdist.dsgd(loss, sgd(), learning_rate=schedule, topology=topology.ring(8),
                            consensus_control=control)
  _, metrics = run_algorithm(controlled, params, batches)
  rounds, distance = list(metrics["comm/rounds"]), list(metrics["consensus/distance"])
  _, plain_metrics = run_algorithm(plain, params, batches)
  assert rounds[:4] == [1] * 4 and distance[3] > target
  assert all(r > 1 for r in rounds[4:8]) and max(distance[4:8]) <= target
  assert all(d < 1e-6 for d in distance[8:]) and rounds[8:] == [1] * 4
  assert metrics["comm/bits_sent"][5] == rounds[5] * 2 * 32 * D
  assert metrics["comm/bits_sent"][9] == 32 * D  # one all-reduce
  assert max(plain_metrics["consensus/distance"][4:8]) > target


def test_bits_sent_are_the_analytic_counts():
  batches, params = regression_data(16, steps=2)
  build = lambda make, graph, **kw: make(loss, sgd(), learning_rate=LR,
                                         topology=topology.make(graph, 16), **kw)
  choco = functools.partial(build, jaxdist.choco_sgd, consensus_step=0.45)
  expected = [  # per worker per step: neighbours x message
      (build(jaxdist.dsgd, "ring"), 2 * 32 * D),
      (build(jaxdist.dsgd, "torus"), 4 * 32 * D),
      (build(jaxdist.dsgd, "complete"), 32 * D),  # one all-reduce
      # k = 2 of 5 with 3-bit indices, 1 of 1 with none
      (choco("ring", compressor=TopK(0.5)), 2 * ((32 + 3) * 2 + 32 * 1)),
      (choco("ring", compressor=TopK(0.5, index_bits=32)), 2 * (2 * 32 * 2 + 2 * 32 * 1)),
      (choco("ring", compressor=Sign()), 2 * ((5 + 32) + (1 + 32))),
      (choco("ring", compressor=QSGD(4)), 2 * ((4 * 5 + 32) + (4 * 1 + 32))),
  ]
  for algorithm, bits in expected:
    _, metrics = run_algorithm(algorithm, params, batches)
    assert list(metrics["comm/bits_sent"]) == [bits] * 2, algorithm
  assert bits_per_model(params) == 32 * D


def test_consensus_distance_is_measured_every_step():
  batches, params = regression_data(8, steps=3)
  state, metrics = run_algorithm(
      jaxdist.dsgd(loss, sgd(), learning_rate=LR, topology=topology.ring(8)), params, batches)
  x = np.concatenate([np.asarray(state.params["w"]), np.asarray(state.params["b"])[:, None]], 1)
  xi = np.sqrt(np.mean(np.sum((x - x.mean(0))**2, 1)))
  np.testing.assert_allclose(metrics["consensus/distance"][-1], xi, rtol=1e-5)
  silent = jaxdist.dsgd(loss, sgd(), learning_rate=LR, topology=topology.ring(8),
                        measure_consensus=False)
  assert "consensus/distance" not in run_algorithm(silent, params, batches)[1]


def _choco(compressor, gamma=0.3):
  return lambda tx, graph: jaxdist.choco_sgd(loss, tx, learning_rate=LR, topology=graph,
                                             compressor=compressor, consensus_step=gamma)


VARIANTS = {  # (build(tx, topology), topology name)
    "dsgd_ring": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR, topology=g), "ring"),
    "dsgd_exponential": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR, topology=g),
                         "exponential"),
    "dsgd_one_peer_exponential": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR,
                                                             topology=g), "one_peer_exponential"),
    "dsgd_random_matching": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR, topology=g),
                             "random_matching"),
    "dsgd_bipartite": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR, topology=g),
                       "bipartite_exponential"),
    "qg_dsgdm_n": (lambda tx, g: jaxdist.qg_dsgdm(loss, tx, learning_rate=LR, topology=g),
                   "ring"),
    "qg_multi_step": (lambda tx, g: jaxdist.qg_dsgdm(loss, tx, learning_rate=LR, topology=g,
                                                     qg_period=2), "ring"),
    "qg_dadam": (lambda tx, g: jaxdist.qg_dadam(loss, learning_rate=LR, topology=g), "ring"),
    "d2": (lambda tx, g: jaxdist.d2(loss, tx, learning_rate=LR, topology=g), "ring"),
    "d2_plus": (lambda tx, g: jaxdist.d2_plus(loss, tx, learning_rate=LR, topology=g), "ring"),
    "gradient_tracking": (lambda tx, g: jaxdist.gradient_tracking(loss, tx, learning_rate=LR,
                                                                  topology=g), "ring"),
    "choco_top_k": (_choco(TopK(0.4)), "ring"),
    "choco_random_k": (_choco(RandomK(0.5)), "ring"),
    "choco_qsgd": (_choco(QSGD(8), 0.45), "ring"),
    "choco_step_first_ef": (lambda tx, g: jaxdist.choco_sgd(
        loss, tx, learning_rate=LR, topology=g, compressor=TopK(0.4), consensus_step=0.3,
        order="step_first", form="error_feedback", public_init="x0"), "ring"),
    "dcd_psgd": (lambda tx, g: jaxdist.dcd_psgd(loss, tx, learning_rate=LR, topology=g,
                                                compressor=TopK(0.4)), "ring"),
    "ecd_psgd": (lambda tx, g: jaxdist.ecd_psgd(loss, tx, learning_rate=LR, topology=g,
                                                compressor=QSGD(8, unbiased=True)), "ring"),
    "deepsqueeze": (lambda tx, g: jaxdist.deepsqueeze(loss, tx, learning_rate=LR, topology=g,
                                                      compressor=Sign(), consensus_step=0.1),
                    "ring"),
    "sgp_directed": (lambda tx, g: jaxdist.sgp(loss, tx, learning_rate=LR, topology=g),
                     "directed_exponential"),
    "momentum_gossiped": (lambda tx, g: jaxdist.shared_momentum(
        loss, tx, learning_rate=LR, topology=g, momentum_exchange="gossip"), "ring"),
    "momentum_allreduced": (lambda tx, g: jaxdist.shared_momentum(
        loss, tx, learning_rate=LR, topology=g), "ring"),
    "gradient_gossip": (lambda tx, g: jaxdist.gradient_gossip(loss, tx, learning_rate=LR,
                                                              topology=g), "ring"),
    "dmsgd": (lambda tx, g: jaxdist.dmsgd(loss, tx, learning_rate=LR, topology=g), "ring"),
    "slowmo": (lambda tx, g: jaxdist.slowmo(loss, tx, learning_rate=LR, topology=g,
                                            slow_period=3), "ring"),
    "dsgd_disconnected": (lambda tx, g: jaxdist.dsgd(loss, tx, learning_rate=LR, topology=g),
                          "disconnected"),
    "consensus_control": (lambda tx, g: jaxdist.dsgd(
        loss, tx, learning_rate=LR, topology=g,
        consensus_control=ConsensusControl(1e-2, max_rounds=20)), "ring"),
    "consensus_residual_rule": (lambda tx, g: jaxdist.dsgd(
        loss, tx, learning_rate=LR, topology=g,
        consensus_control=ConsensusControl(1e-2, rule="residual", max_rounds=20)), "ring"),
    "slowmo_adaptive_control": (lambda tx, g: jaxdist.slowmo(
        loss, tx, learning_rate=LR, topology=g, slow_period=3,
        consensus_control=ConsensusControl(0.05, rule="adaptive", max_rounds=20)), "ring"),
    "gradient_gossip_adaptive_control": (lambda tx, g: jaxdist.gradient_gossip(
        loss, tx, learning_rate=LR, topology=g,
        consensus_control=ConsensusControl(0.05, rule="adaptive", max_rounds=20)), "ring"),
}


# the variants for which 16 workers add nothing to 8
ON_8_ONLY = ("choco_step_first_ef", "dcd_psgd", "ecd_psgd", "deepsqueeze", "sgp_directed",
             "dsgd_disconnected", "consensus_residual_rule", "momentum_gossiped",
             "momentum_allreduced", "gradient_gossip", "dmsgd", "slowmo",
             "slowmo_adaptive_control", "gradient_gossip_adaptive_control")


@pytest.mark.parametrize("variant, num_workers", [
    (variant, n) for n in (8, 16) for variant in VARIANTS
    if n == 8 or variant not in ON_8_ONLY])
def test_simulated_and_shard_map_give_the_same_numbers(variant, num_workers):
  build, graph = VARIANTS[variant]
  batches, params = regression_data(num_workers, steps=7)
  algorithm = build(sgd(momentum=0.9, weight_decay=1e-3), topology.make(graph, num_workers))
  results = [run_algorithm(algorithm, params, batches, backend=backend)
             for backend in ("simulated", "shard_map")]
  (sim, sim_metrics), (dist, dist_metrics) = results
  assert jax.tree.leaves(dist.params)[0].sharding.mesh.size == 8
  chex.assert_trees_all_close(sim, dist, rtol=2e-5, atol=2e-6)
  chex.assert_trees_all_close(sim_metrics, dist_metrics, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("build, message", [
    (lambda: jaxdist.qg_dsgdm(loss, sgd(momentum=0.0), learning_rate=LR,
                              topology=topology.ring(8)).init({"w": np.zeros(5)}, {}, None),
     r"optimizer: quasi-global momentum replaces a momentum buffer"),
    (lambda: jaxdist.qg_dsgdm(loss, optax.sgd(0.1, momentum=0.9), topology=topology.ring(8)),
     r"learning_rate: quasi-global momentum needs the learning rate"),
    (lambda: jaxdist.choco_sgd(loss, learning_rate=LR, topology=topology.ring(8),
                               compressor=RandomK(0.1, unbiased=True), consensus_step=0.1),
     r"compressor: CHOCO needs a contractive"),
    (lambda: jaxdist.choco_sgd(loss, learning_rate=LR, topology=topology.ring(8),
                               compressor="top_k", consensus_step=0.1),
     r"compressor: 'top_k' is not a compressor"),
    (lambda: jaxdist.choco_sgd(loss, learning_rate=LR, topology=topology.random_matching(8),
                               compressor=Sign(), consensus_step=0.1),
     r"topology: CHOCO keeps s_i"),
    (lambda: jaxdist.choco_sgd(loss, learning_rate=LR, topology=topology.ring(8),
                               compressor=Sign(), consensus_step=0.1, form="dense"),
     r"form: unknown value 'dense'"),
    (lambda: jaxdist.dsgd(loss, learning_rate=LR, topology="ring"),
     r"topology: 'ring' is not a topology"),
    (lambda: ConsensusControl(0.1, control_phases=(3,)),
     r"control_phases: \(3,\) names a phase"),
    (lambda: jaxdist.qg_dsgdm(loss, sgd(), learning_rate=LR, topology=topology.ring(8),
                              qg_mu=1.5), r"qg_mu: 1.5 is not a momentum"),
])
def test_bad_decentralized_arguments_are_refused_by_name(build, message):
  with pytest.raises(ArgumentError, match=message):
    build()


def test_a_topology_for_other_workers_is_refused_at_the_first_step():
  batches, params = regression_data(8, steps=2)
  algorithm = jaxdist.dsgd(loss, sgd(), learning_rate=LR, topology=topology.ring(16))
  with pytest.raises(ArgumentError, match=r"topology: a topology on 16 workers cannot connect a "
                     r"worker grid of 8"):
    run_algorithm(algorithm, params, batches)
