"""Decentralized training: exact equivalences, CHOCO's consensus, quasi-global momentum as QHM,
consensus control, bits, equal numbers on devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from helpers import (LR, assert_same, build_algorithm, linear_regression_loss, regression_data,
                     run_algorithm, sgd)
from jaxdist import topology
from jaxdist.algorithms.decentralized import ChocoGossip
from jaxdist.algorithms.local_sgd import bits_per_model
from jaxdist.compression import Compressor
from jaxdist.errors import ConfigError
from jaxdist.gossip import Gossip
from jaxdist.workers import make_workers

D = 6  # parameters of the regression model


def test_complete_graph_dsgd_is_minibatch_sgd():
  """W = 11^T/n averages the models after every local step: local SGD with H = 1."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=15, dtype=np.float64)
    dsgd, w = build_algorithm("dsgd", topology="complete")
    minibatch, _ = build_algorithm("minibatch_sgd")
    assert dsgd.gossip.exchange == "mean"
    assert_same(run_algorithm(dsgd, w, params, batches)[0].params,
                run_algorithm(minibatch, w, params, batches)[0].params, 1e-13)


@pytest.mark.parametrize("graph", ["ring", "exponential"])
def test_choco_with_identity_compression_and_unit_step_is_dsgd(graph):
  """Q = identity, gamma = 1: xhat = x_{t+1/2}, s = W x_{t+1/2}, x_{t+1} = W x_{t+1/2}."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=15, dtype=np.float64)
    choco, w = build_algorithm("choco_sgd", topology=graph, compressor="identity",
                               consensus_step=1.0)
    dsgd, _ = build_algorithm("dsgd", topology=graph)
    choco_state, _ = run_algorithm(choco, w, params, batches)
    dsgd_state, _ = run_algorithm(dsgd, w, params, batches)
    assert np.ptp(np.asarray(dsgd_state.params["w"]), axis=0).max() > 1e-3  # not in consensus
    assert_same(choco_state.params, dsgd_state.params, 1e-12)
    assert_same(choco_state.opt_state, dsgd_state.opt_state, 1e-12)


def _gossip_only(n, compressor, gamma, rounds, naive=False):
  """T4: ring, d = 100, x_i ~ N(0, 1); the error Xi^2 = mean ||x_i - x_bar||^2 after `rounds`,
  and the drift of the mean, for CHOCO-Gossip or naive compressed gossip
  x_i += sum_j w_ij (Q(x_j) - Q(x_i))."""
  workers = make_workers((n,), ("workers",), "simulated")
  gossip = Gossip(topology.make("ring", n), workers.comm)
  choco = ChocoGossip(gossip, compressor, gamma)

  def run(x):
    def body(t, carry):
      x, public = carry
      key = jax.random.fold_in(jax.random.PRNGKey(t), workers.comm.index())
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
    top10 = Compressor("top_k", fraction=0.1)
    naive, naive_drift = _gossip_only(16, top10, 0.0, 2000, naive=True)
    choco, choco_drift = _gossip_only(16, top10, 0.05, 2000)
    choco_early, _ = _gossip_only(16, top10, 0.05, 1000)
    assert naive > 1.0  # ours 3.97
    assert choco < 1e-3  # ours 3.96e-4
    assert choco < choco_early / 10  # linear convergence, not a plateau
    assert naive_drift < 1e-12 and choco_drift < 1e-12


def test_choco_with_too_large_a_consensus_step_diverges():
  with jax.enable_x64(True):
    error, _ = _gossip_only(16, Compressor("top_k", fraction=0.01), 0.9, 300)
    assert not error < 10


def _qhm(params, batches, lr, beta, mu, steps):
  """Quasi-hyperbolic momentum by hand (float64): beta_hat = mu + (1 - mu) beta,
  m' <- beta_hat m' + g, x <- x - lr ((1 - mu/beta_hat) m' + (mu/beta_hat) g)."""
  beta_hat = mu + (1 - mu) * beta
  nu = 1 - mu / beta_hat
  grad = jax.grad(lambda p, b: linear_regression_loss(p, {}, b, None)[0])
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
    qg, w = build_algorithm("qg_dsgdm", 1, tx=tx, topology="complete", qg_mu=mu)
    state, _ = run_algorithm(qg, w, params, batches)
    assert_same(state.params, _qhm(params, batches, LR, 0.9, mu, 30), 1e-12)
    if mu == 0.0:
      heavy_ball, _ = build_algorithm("dsgd", 1, tx=tx, topology="complete")
      assert_same(state.params, run_algorithm(heavy_ball, w, params, batches)[0].params, 1e-12)


def test_quasi_global_buffer_is_the_model_difference_after_gossip():
  """m_{t+1} = mu m_t + (1 - mu) (x_t - x_{t+1}) / lr; with tau = 2 it moves every 2nd step."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=3, dtype=np.float64)
    qg, w = build_algorithm("qg_dsgdm", qg_mu=0.7)
    two, _ = run_algorithm(qg, w, params, jax.tree.map(lambda b: b[:2], batches))
    three, _ = run_algorithm(qg, w, params, batches)
    trace = lambda s: optax.tree_utils.tree_get(s.opt_state, "trace")
    expected = jax.tree.map(lambda m, a, b: 0.7 * m + 0.3 * (a - b) / LR, trace(two),
                            two.params, three.params)
    assert_same(trace(three), expected, 1e-12)
    every_two, _ = build_algorithm("qg_dsgdm", qg_mu=0.7, qg_period=2)
    one = run_algorithm(every_two, w, params, jax.tree.map(lambda b: b[:1], batches))[0]
    assert np.abs(np.asarray(trace(one)["w"])).max() == 0  # step 1: not yet
    two = run_algorithm(every_two, w, params, jax.tree.map(lambda b: b[:2], batches))[0]
    assert np.abs(np.asarray(trace(two)["w"])).max() > 0


def test_d2_plus_survives_a_learning_rate_drop_that_d2_does_not():
  """T12 ([Lin22] L2752): on one worker D^2_+ is plain SGD through a 10x decay, while D^2 keeps
  0.9 of the last large update in its correction."""
  with jax.enable_x64(True):
    batches, params = regression_data(1, steps=10, dtype=np.float64)
    schedule = optax.piecewise_constant_schedule(0.1, {5: 0.1})
    tx = sgd(momentum=0.0, weight_decay=0.0, learning_rate=schedule)
    runs = {name: run_algorithm(build_algorithm(name, 1, tx=tx, topology="complete",
                                                learning_rate=schedule)[0], w, params,
                                batches)[0].params
            for name, w in [(n, make_workers((1,), ("workers",), "simulated"))
                            for n in ("d2", "d2_plus", "dsgd")]}
    assert_same(runs["d2_plus"], runs["dsgd"], 1e-12)
    early = jax.tree.map(lambda b: b[:5], batches)
    w1 = make_workers((1,), ("workers",), "simulated")
    d2_early = run_algorithm(build_algorithm("d2", 1, tx=tx, topology="complete",
                                             learning_rate=schedule)[0], w1, params, early)[0]
    dsgd_early = run_algorithm(build_algorithm("dsgd", 1, tx=tx, topology="complete",
                                               learning_rate=schedule)[0], w1, params, early)[0]
    assert_same(d2_early.params, dsgd_early.params, 1e-12)  # identical before the drop
    assert np.abs(np.asarray(runs["d2"]["w"]) - np.asarray(runs["dsgd"]["w"])).max() > 1e-3


def test_gradient_tracking_tracks_the_mean_gradient():
  """mean_i y_i = mean_i g_i at every step; on the complete graph without momentum it is
  mini-batch SGD."""
  with jax.enable_x64(True):
    batches, params = regression_data(8, steps=6, dtype=np.float64)
    tx = sgd(momentum=0.0)
    tracking, w = build_algorithm("gradient_tracking", tx=tx)
    state, history = run_algorithm(tracking, w, params, batches)
    tracker, grads = state.previous
    assert_same(jax.tree.map(lambda y: np.mean(y, 0), tracker),
                jax.tree.map(lambda g: np.mean(g, 0), grads), 1e-12)
    assert [float(m["comm/bits_sent"][0]) for m in history] == [2 * 2 * 64 * D] * 6  # float64
    complete, _ = build_algorithm("gradient_tracking", tx=tx, topology="complete")
    minibatch, _ = build_algorithm("minibatch_sgd", tx=tx)
    assert_same(run_algorithm(complete, w, params, batches)[0].params,
                run_algorithm(minibatch, w, params, batches)[0].params, 1e-12)


def test_consensus_control_gossips_until_the_target():
  """§5.5: in a controlled phase extra rounds run until Xi <= target; in an exact phase the
  workers all-reduce (Xi = 0); elsewhere one round."""
  batches, params = regression_data(8, steps=12)
  schedule = optax.piecewise_constant_schedule(LR, {4 * 32: 0.5, 8 * 32: 0.5})
  target = 2e-3
  plain, w = build_algorithm("dsgd")
  controlled, _ = build_algorithm("dsgd", consensus_target=target, control_phases=(1,),
                                  exact_phases=(2,), learning_rate=schedule,
                                  optim={"decay_at": (0.04, 0.08)})
  assert list(controlled.phase_steps) == [4, 8]
  _, history = run_algorithm(controlled, w, params, batches)
  rounds = [float(m["comm/rounds"][0]) for m in history]
  distance = [float(m["consensus/distance"][0]) for m in history]
  _, plain_history = run_algorithm(plain, w, params, batches)
  assert rounds[:4] == [1] * 4 and distance[3] > target
  assert all(r > 1 for r in rounds[4:8]) and max(distance[4:8]) <= target
  assert all(d < 1e-6 for d in distance[8:]) and rounds[8:] == [1] * 4
  assert float(history[5]["comm/bits_sent"][0]) == rounds[5] * 2 * 32 * D
  assert float(history[9]["comm/bits_sent"][0]) == 32 * D  # one all-reduce
  assert max(float(m["consensus/distance"][0]) for m in plain_history[4:8]) > target


def test_bits_sent_are_the_analytic_counts():
  batches, params = regression_data(16, steps=2)
  expected = {  # per worker per step: neighbours x message
      ("dsgd", "ring", ()): 2 * 32 * D,
      ("dsgd", "torus", ()): 4 * 32 * D,
      ("dsgd", "complete", ()): 32 * D,  # one all-reduce
      ("choco_sgd", "ring", (("compressor", "top_k"), ("compress_fraction", 0.5))):
          2 * (2 * 32 * 2 + 2 * 32 * 1),  # k = 2 of w's 5 entries, k = 1 of b
      ("choco_sgd", "ring", (("compressor", "sign"),)): 2 * ((5 + 32) + (1 + 32)),
      ("choco_sgd", "ring", (("compressor", "qsgd"), ("compress_bits", 4))):
          2 * ((4 * 5 + 32) + (4 * 1 + 32)),
  }
  for (name, graph, algo), bits in expected.items():
    algorithm, w = build_algorithm(name, 16, topology=graph, **dict(algo))
    _, history = run_algorithm(algorithm, w, params, batches)
    assert [float(m["comm/bits_sent"][0]) for m in history] == [bits] * 2, (name, graph, algo)
  assert bits_per_model(params) == 32 * D


def test_consensus_distance_is_measured_every_step():
  batches, params = regression_data(8, steps=3)
  algorithm, w = build_algorithm("dsgd")
  state, history = run_algorithm(algorithm, w, params, batches)
  x = np.concatenate([np.asarray(state.params["w"]), np.asarray(state.params["b"])[:, None]], 1)
  xi = np.sqrt(np.mean(np.sum((x - x.mean(0))**2, 1)))
  np.testing.assert_allclose(history[-1]["consensus/distance"][0], xi, rtol=1e-5)
  silent, _ = build_algorithm("dsgd", measure_consensus=False)
  assert "consensus/distance" not in run_algorithm(silent, w, params, batches)[1][0]


VARIANTS = {
    "dsgd_ring": ("dsgd", {}),
    "dsgd_exponential": ("dsgd", {"topology": "exponential"}),
    "dsgd_one_peer_exponential": ("dsgd", {"topology": "one_peer_exponential"}),
    "dsgd_random_matching": ("dsgd", {"topology": "random_matching"}),
    "dsgd_bipartite": ("dsgd", {"topology": "bipartite_exponential"}),
    "qg_dsgdm_n": ("qg_dsgdm", {}),
    "qg_multi_step": ("qg_dsgdm", {"qg_period": 2}),
    "qg_dadam": ("qg_dsgdm", {"optimizer": "adam"}),
    "d2": ("d2", {}),
    "d2_plus": ("d2_plus", {}),
    "gradient_tracking": ("gradient_tracking", {}),
    "choco_top_k": ("choco_sgd", {"compressor": "top_k", "compress_fraction": 0.4,
                                  "consensus_step": 0.3}),
    "choco_random_k": ("choco_sgd", {"compressor": "random_k", "compress_fraction": 0.5,
                                     "consensus_step": 0.3}),
    "choco_qsgd": ("choco_sgd", {"compressor": "qsgd", "compress_bits": 8}),
    "consensus_control": ("dsgd", {"consensus_target": 1e-2, "max_gossip_rounds": 20}),
}


@pytest.mark.parametrize("num_workers", [8, 16])
@pytest.mark.parametrize("variant", VARIANTS)
def test_simulated_and_shard_map_give_the_same_numbers(variant, num_workers):
  name, algo = dict(VARIANTS[variant][1]), VARIANTS[variant][0]
  graph = name.pop("topology", "ring")
  optimizer = name.pop("optimizer", "sgd")
  batches, params = regression_data(num_workers, steps=7)
  tx = sgd(momentum=0.9, weight_decay=1e-3, optimizer=optimizer)
  results = []
  for backend in ("simulated", "shard_map"):
    algorithm, w = build_algorithm(algo, num_workers, backend, tx=tx, topology=graph, **name)
    results.append(run_algorithm(algorithm, w, params, batches))
  (sim, sim_history), (dist, dist_history) = results
  assert jax.tree.leaves(dist.params)[0].sharding.mesh.size == 8
  check = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  jax.tree.map(check, sim, dist)
  jax.tree.map(check, sim_history, dist_history)


@pytest.mark.parametrize("name, fields, message", [
    ("qg_dsgdm", {"optim": {"momentum": 0.0}}, r"optim.momentum: quasi-global momentum replaces"),
    ("choco_sgd", {"compressor": "random_k", "compress_unbiased": True},
     r"algo.compress_unbiased: CHOCO needs a contractive"),
    ("choco_sgd", {"compressor": "topk"}, r"algo.compressor: unknown compressor 'topk'"),
    ("choco_sgd", {"topology": "random_matching"}, r"topology.name: CHOCO keeps s_i"),
    ("dsgd", {"control_phases": (3,)}, r"algo.control_phases: \(3,\) names a phase"),
    ("dsgd", {"extrapolation": "extrap"}, r"algo.extrapolation: dsgd takes gradients"),
    ("dsgd", {"topology": "torus"}, r"topology.name: a 2-D torus needs a square number"),
    ("dsgd", {"per_node": 2}, r"workers.per_node: hierarchical_local_sgd runs on nodes"),
])
def test_bad_decentralized_settings_are_refused(name, fields, message):
  fields = dict(fields)
  optim = fields.pop("optim", None)
  with pytest.raises(ConfigError, match=message):
    algorithm, _ = build_algorithm(name, tx=sgd(**(optim or {})), **fields)
    algorithm.init({"w": jnp.zeros(5), "b": jnp.zeros(())}, {}, None)
