"""The small-loop threshold of XLA:CPU: the flag it sets, and what it changes in the compiled
runner chunk (the loop compiled whole, results equal to rounding)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxdist.core import cpu
from jaxdist.errors import ArgumentError, UserError

# One chunk of 20 steps on the convex problem, 16 workers on a ring, float64: whether the scan is
# compiled as one function, and the final parameters.
CHILD = textwrap.dedent("""
    import json, os, sys
    import jaxdist
    if sys.argv[1] == "whole":
      jaxdist.core.cpu.compile_small_loops_whole()
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from jaxdist import compression, topology

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 200)), rng.choice([-1.0, 1.0], size=64)

    def loss(params, model_state, batch, key):
      value = jnp.mean(jnp.logaddexp(0.0, -batch["b"] * (batch["a"] @ params)))
      return value, (model_state, {})

    common = dict(learning_rate=0.5, topology=topology.ring(16), measure_consensus=False)
    out = {}
    for name, algorithm in [
        ("dsgd", jaxdist.dsgd(loss, optax.sgd, **common)),
        ("top_k", jaxdist.choco_sgd(loss, optax.sgd, compressor=compression.TopK(0.01),
                                    consensus_step=0.04, **common)),
        ("random_k", jaxdist.choco_sgd(loss, optax.sgd, compressor=compression.RandomK(0.01),
                                       consensus_step=0.04, **common))]:
      data = jaxdist.data.from_function(
          lambda t, i: {"a": a[(3 * t + i) % 64][None], "b": b[(3 * t + i) % 64][None]})
      runner = jaxdist.Runner(algorithm, data, num_workers=16, steps_per_chunk=20)
      state = runner.init(jnp.zeros(200))
      state, _ = runner.train(state, runner.batches(0, 20))
      text = runner._compiled[20].as_text()
      out[name] = {"whole": 'xla_cpu_small_call="true"' in text,
                   "params": np.asarray(runner.deployed(state, average=False)[0]).tolist()}
    print(json.dumps(out))
""")


def _child(mode):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.splitlines()[-1])


def test_small_loops_compile_whole_with_the_same_numbers():
  default, whole = _child("default"), _child("whole")
  for name in ("dsgd", "top_k", "random_k"):
    assert not default[name]["whole"], name  # XLA's 1 KiB threshold: per-op thunks
    assert whole[name]["whole"], name  # top-k and random-k select by mask: no scatter in the loop
    np.testing.assert_allclose(whole[name]["params"], default[name]["params"], rtol=1e-12,
                               atol=1e-14)


def test_the_flag_replaces_an_earlier_threshold_and_keeps_other_options():
  assert cpu.small_loop_flags("") == (
      "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000")
  flags = ("--xla_force_host_platform_device_count=8 --xla_backend_extra_options="
           "a=1,xla_cpu_small_while_loop_byte_threshold=5 --b=2")
  assert cpu.small_loop_flags(flags, 7) == (
      "--xla_force_host_platform_device_count=8 --xla_backend_extra_options="
      "a=1,xla_cpu_small_while_loop_byte_threshold=7 --b=2")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1e6"])
def test_a_bad_threshold_is_named(bad):
  with pytest.raises(ArgumentError, match="max_bytes"):
    cpu.small_loop_flags("", bad)


def test_too_late_once_the_backend_runs():
  import jax.numpy as jnp  # the test process's backend is up
  jnp.zeros(1).block_until_ready()
  with pytest.raises(UserError, match="before the first JAX computation"):
    cpu.compile_small_loops_whole(123)
  assert "threshold=123" not in os.environ.get("XLA_FLAGS", "")
