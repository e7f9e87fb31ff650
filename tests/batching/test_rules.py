"""Batch-size rules: the cap of Alg. 1, GeoDamp and its -LR twin, the oracle, the passive rule,
S1 Table 1's update counts, the time model's ordering."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from jaxdist import batching
from jaxdist.batching import variable_workers as vw

MILESTONES = (60.0, 120.0, 180.0)


def test_cap_rescales_from_the_base_rate_every_update():
  rule = batching.RadaDamp(4, 16)
  state = rule.init().replace(batch=jnp.float32(64.0))
  for _ in range(3):  # the same factor each time, not compounded
    state, batch, scale = rule.schedule(state, {"epoch": 0.0})
    assert int(batch) == 16 and float(scale) == pytest.approx(0.25)
  state = state.replace(batch=jnp.float32(15.2))
  _, batch, scale = rule.schedule(state, {"epoch": 0.0})
  assert int(batch) == 16 and float(scale) == pytest.approx(1.0)  # ceil(15.2) = 16 >= B_max


def test_geodamp_and_its_lr_twin_damp_by_the_same_factor():
  rule = batching.GeoDamp(128, 640, factor=5.0, milestones=MILESTONES)
  twin = batching.LearningRateTwin(rule)
  for epoch, batch, scale, twin_scale in [(0, 128, 1, 1), (59.9, 128, 1, 1), (60, 640, 1, 0.2),
                                          (120, 640, 0.2, 0.04), (199, 640, 0.04, 0.008)]:
    _, b, s = rule.schedule(rule.init(), {"epoch": epoch})
    _, tb, ts = twin.schedule(twin.init(), {"epoch": epoch})
    assert (int(b), int(tb)) == (batch, 128)
    np.testing.assert_allclose([float(s), float(ts)], [scale, twin_scale], rtol=1e-6)
  every = batching.GeoDamp(256, factor=1.219231, delay=10)
  _, b, _ = every.schedule(every.init(), {"epoch": 25.0})
  assert int(b) == math.ceil(256 * 1.219231**2)


def test_oracle_and_gradient_norm_and_linear_rules():
  oracle = batching.Oracle(2, optimum=0.5)
  state, b, _ = oracle.schedule(oracle.init(), {"epoch": 0, "full_loss": 4.5})
  state = oracle.observe(state, 0.0, 0.0)
  _, b1, _ = oracle.schedule(state, {"epoch": 0, "full_loss": 1.5})
  assert (int(b), int(b1)) == (2, 8)  # ceil(2 * 4 / 1)
  norm = batching.GradientNorm(3)
  state, _, _ = norm.schedule(norm.init(), {"epoch": 0, "full_grad_sq": 10.0})
  state = norm.observe(state, 0.0, 0.0)
  _, b1, _ = norm.schedule(state, {"epoch": 0, "full_grad_sq": 4.0})
  assert int(b1) == 8  # ceil(3 * 10 / 4)
  linear = batching.Linear(5, slope=0.5)
  state = linear.init()
  seen = []
  for _ in range(4):
    state, b, _ = linear.schedule(state, {"epoch": 0})
    state = linear.observe(state, 0.0, 0.0)
    seen.append(int(b))
  assert seen == [5, 6, 6, 7]


# S1 Table 1 (S1 L206-213): max batch -> (model updates, max workers)
TABLE_1 = {"5.1k (*2)": (14_960, 40), "3.2k": (29_480, 25), "16k": (29_240, 125),
           "640": (34_520, 5), "128": (78_200, 1)}


def table_1_rules():
  return {"5.1k (*2)": batching.GeoDamp(256, 5120, factor=5.0, milestones=MILESTONES),
          "3.2k": batching.GeoDamp(128, 3200, factor=5.0, milestones=MILESTONES),
          "16k": batching.GeoDamp(128, 16000, factor=5.0, milestones=MILESTONES),
          "640": batching.GeoDamp(128, 640, factor=5.0, milestones=MILESTONES),
          "128": batching.LearningRateTwin(batching.GeoDamp(128, factor=5.0,
                                                            milestones=MILESTONES))}


def test_table_1_update_counts_within_one_percent_and_time_model_ordering():
  compute = vw.Compute(per_example=1e-3, per_update=0.02, overhead_per_worker=5e-3)
  model_bytes = 4 * 2.75e6
  times = {"centralized": lambda b, p: vw.centralized_update_time(b, p, model_bytes,
                                                                  vw.MODERATE, compute),
           "ring": lambda b, p: vw.ring_allreduce_update_time(b, p, model_bytes, vw.MODERATE,
                                                              compute)}
  results = {}
  for name, rule in table_1_rules().items():
    updates, workers = TABLE_1[name]
    got = vw.simulate_schedule(rule, 50_000, 200, max_workers=workers, update_times=times)
    assert got["updates"] == pytest.approx(updates, rel=0.01), name
    assert got["max_workers"] == workers
    results[name] = got
  for arch in times:  # S1 Table 2: 5.1k(*2) < 3.2k ~ 16k < 640 < 128
    t = {name: r[arch] for name, r in results.items()}
    assert t["5.1k (*2)"] < min(t["3.2k"], t["16k"]) <= max(t["3.2k"], t["16k"]) < t["640"]
    assert t["640"] < t["128"]
    assert t["3.2k"] == pytest.approx(t["16k"], rel=0.05)
  assert all(r["ring"] < r["centralized"] for r in results.values())


def test_active_workers_and_shares():
  np.testing.assert_array_equal(vw.active_workers(np.array([1, 128, 129, 640, 16000]), 128, 40),
                                [1, 1, 2, 5, 40])
  starts, counts = zip(*[vw.worker_share(jnp.int32(10), jnp.int32(3), i) for i in range(4)])
  assert [int(c) for c in counts] == [4, 4, 2, 0] and [int(s) for s in starts[:3]] == [0, 4, 8]


def test_bad_rule_arguments_are_named():
  for kwargs, name in [({"initial_batch": 0}, "initial_batch"),
                       ({"initial_batch": 8, "max_batch": 4}, "max_batch"),
                       ({"rho": 1.0}, "rho")]:
    with pytest.raises(jaxdist.ArgumentError, match=name):
      batching.RadaDamp(**kwargs)
  with pytest.raises(jaxdist.ArgumentError, match="factor"):
    batching.GeoDamp(factor=0)
  with pytest.raises(jaxdist.ArgumentError, match="bandwidth"):
    vw.Network(bandwidth=0, latency=0)
