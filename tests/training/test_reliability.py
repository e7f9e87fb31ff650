"""The runner under faults: divergence stops or skips, damaged checkpoints are found and passed
over, a checkpoint directory serves one run at a time."""

import os
import shutil
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdist
from helpers import LR, sgd
from jaxdist.errors import UserError
from jaxdist.training.checkpoint import DirectoryLock, fingerprints
from jaxdist.training.runner import Divergence

K = 4


DIM = 1000  # arrays big enough that their bytes, not the metadata, fill the checkpoint


def _arrays():
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(200, DIM)) / np.sqrt(DIM)).astype(np.float32)
  return {"x": x, "y": (x @ rng.normal(size=DIM)).astype(np.float32)}


def _loss(bad_from=None):
  def loss(params, model_state, batch, rng):
    value = jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"])**2)
    if bad_from is not None:  # NaN from step `bad_from` on (1-based)
      value = value + jnp.where(batch["step"] + 1 >= bad_from, jnp.nan, 0.0)
    return value, (model_state, {"loss": value})
  return loss


def _fit(loss, num_steps=12, progress=False, **kwargs):
  params = {"w": np.zeros(DIM, np.float32), "b": np.float32(0)}
  algorithm = jaxdist.local_sgd(loss, sgd(), learning_rate=LR, local_steps=2)
  data = jaxdist.data.sampled(_arrays(), num_workers=K, batch_size=4)
  return jaxdist.train(algorithm, params, data=data, num_steps=num_steps, steps_per_chunk=4,
                       progress=progress, **kwargs)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
  with pytest.raises(Divergence, match=r"^divergence: the metric loss is not finite from step "
                     r"7; the run stopped at step 8 and the last checkpoint \(step 4\) is finite "
                     r"and kept; lower the learning rate"):
    _fit(_loss(bad_from=7), checkpoint_dir=str(tmp_path), checkpoint_every=4, keep=1)
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["4"]
  resumed = _fit(_loss(), checkpoint_dir=str(tmp_path), checkpoint_every=4, keep=1)
  assert resumed.started == 4 and resumed.step == 12  # resumes from the finite one


def test_skipping_drops_exactly_the_non_finite_steps():
  skipped = _fit(_loss(bad_from=7), on_nonfinite="skip")
  assert skipped.final["nonfinite/skipped"] == 6
  chex.assert_trees_all_equal(skipped.state.algorithm, _fit(_loss(), num_steps=6).state.algorithm)
  assert skipped.final["train/loss"] is None  # no finite loss in the last chunk: null in JSON


def _biggest_data_file(directory):
  """The largest file of array bytes in the newest checkpoint of `directory`."""
  newest = os.path.join(directory, max((n for n in os.listdir(directory) if n.isdigit()),
                                       key=int))
  data = os.path.join(newest, "state", "ocdbt.process_0", "d")
  return max((os.path.join(data, n) for n in os.listdir(data)), key=os.path.getsize)


def test_a_flipped_bit_in_the_newest_checkpoint_is_found_and_passed_over(tmp_path, capsys):
  unbroken = _fit(_loss(), checkpoint_dir=str(tmp_path / "unbroken"), checkpoint_every=4, keep=3)
  directory = str(tmp_path / "damaged")
  _fit(_loss(), checkpoint_dir=directory, checkpoint_every=4, keep=3)
  shutil.rmtree(os.path.join(directory, "12"))  # as if killed after the step-8 checkpoint
  biggest = _biggest_data_file(directory)
  with open(biggest, "r+b") as f:  # one bit in the middle of the arrays' bytes
    f.seek(os.path.getsize(biggest) // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 0x10]))
  resumed = _fit(_loss(), checkpoint_dir=directory, checkpoint_every=4, keep=3, progress="lines")
  out = capsys.readouterr().out
  assert "the checkpoint at step 8 is damaged" in out and "resumed from the checkpoint at step 4" \
      in out
  assert resumed.started == 4
  chex.assert_trees_all_equal(resumed.state, unbroken.state)
  assert os.path.isdir(os.path.join(directory, "damaged", "8"))  # kept for a look, out of the way


def test_when_no_checkpoint_restores_the_run_stops_and_touches_nothing(tmp_path):
  directory = str(tmp_path)
  _fit(_loss(), checkpoint_dir=directory, checkpoint_every=4, keep=3)
  for step in ("4", "8", "12"):
    for root, _, files in os.walk(os.path.join(directory, step)):
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"\x00garbage")
  listing = sorted(os.walk(directory))
  with pytest.raises(UserError, match=r"^checkpoint: no checkpoint in .* can be restored \(step "
                     r"12: .*; step 8: .*; step 4: .*\); they were left untouched") as error:
    _fit(_loss(), checkpoint_dir=directory, checkpoint_every=4, keep=3)
  assert "\n" not in str(error.value)
  assert sorted(os.walk(directory)) == listing


def test_fingerprints_see_a_single_bit_and_not_the_layout():
  x = np.arange(64, dtype=np.float32)
  flipped = x.view(np.uint32).copy()
  flipped[37] ^= 1 << 7
  assert fingerprints({"x": x}) != fingerprints({"x": flipped.view(np.float32)})
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
  spread = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
  assert fingerprints({"x": spread}) == fingerprints({"x": x})
  assert len(set(fingerprints([np.zeros(3, t) + 1 for t in (np.float64, np.int8, np.bool_)])))


def test_a_directory_serves_one_run_at_a_time(tmp_path):
  with DirectoryLock(str(tmp_path)):
    with pytest.raises(UserError, match=r"^checkpoint_dir: .* is in use by another run"):
      _fit(_loss(), checkpoint_dir=str(tmp_path))
  # A process killed while holding the lock does not keep it.
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; sys.path.insert(0, '.')\n"
      "from jaxdist.training.checkpoint import DirectoryLock\n"
      f"lock = DirectoryLock({str(tmp_path)!r}); lock.acquire()\n"
      "print('locked', flush=True); time.sleep(60)")],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(UserError, match="in use by another run"):
    DirectoryLock(str(tmp_path)).acquire()
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  assert _fit(_loss(), checkpoint_dir=str(tmp_path)).step == 12
