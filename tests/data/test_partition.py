"""Worker shards and batches: disjoint, reproducible from (seed, step, worker), Dirichlet skew."""

import numpy as np
import pytest

from jaxdist.data.partition import Sampler, dirichlet_per_class, dirichlet_per_client
from jaxdist.errors import ArgumentError

LABELS = np.repeat(np.arange(10), 200)  # 2000 examples, 10 balanced classes


def test_iid_batches_are_disjoint_cover_an_epoch_and_reshuffle_between_epochs():
  sampler = Sampler(LABELS, num_workers=4, batch_size=25, partition="iid", seed=3)
  steps_per_epoch = 2000 // 4 // 25
  epoch = sampler.indices(0, steps_per_epoch, range(4))
  assert len(np.unique(epoch)) == epoch.size == 2000
  next_epoch = sampler.indices(steps_per_epoch, steps_per_epoch, range(4))
  assert len(np.unique(next_epoch)) == 2000
  assert not np.array_equal(np.sort(epoch[:, 0].ravel()), np.sort(next_epoch[:, 0].ravel()))


def test_batches_depend_only_on_seed_step_and_worker():
  a = Sampler(LABELS, 8, 16, "iid", seed=1)
  b = Sampler(LABELS, 8, 16, "iid", seed=1)
  late = b.indices(37, 5, [6, 2])  # asked out of order, on a fresh sampler
  early = a.indices(0, 42, range(8))
  np.testing.assert_array_equal(late, early[37:42][:, [6, 2]])
  assert not np.array_equal(Sampler(LABELS, 8, 16, "iid", seed=2).indices(37, 5, [6, 2]), late)


@pytest.mark.parametrize("partition", ["iid_fixed", "dirichlet"])
def test_fixed_shards_stay_with_their_worker(partition):
  sampler = Sampler(LABELS, 5, 10, partition, seed=0, dirichlet_alpha=1.0)
  shards = [set(s.tolist()) for s in sampler.shards]
  assert sum(len(s) for s in shards) == 2000 and len(set().union(*shards)) == 2000
  batches = sampler.indices(0, 400, range(5))
  for worker in range(5):
    assert set(batches[:, worker].ravel().tolist()) <= shards[worker]


def _class_shares(shards):
  return np.array([np.bincount(LABELS[s], minlength=10) / len(s) for s in shards])


def test_dirichlet_partition_statistics():
  """[Lin22] App. 17.3.2: alpha=100 near-uniform, alpha=0.1 dominated by 1-2 classes,
  alpha=0.01 one class per worker; every worker holds N/K examples."""
  rng = np.random.default_rng(0)
  uniform_shards = dirichlet_per_class(LABELS, 20, 100.0, rng)
  uniform = _class_shares(uniform_shards)
  assert np.abs(uniform - 0.1).mean() < 0.03 and uniform.max() < 0.25
  skewed_shards = dirichlet_per_class(LABELS, 20, 0.1, rng)
  top_two = np.sort(_class_shares(skewed_shards), axis=1)[:, -2:].sum(1)
  assert top_two.mean() > 0.75 and np.sort(uniform, axis=1)[:, -2:].sum(1).mean() < 0.3
  for shards in (uniform_shards, skewed_shards):
    assert [len(s) for s in shards] == [100] * 20
    assert len(np.unique(np.concatenate(shards))) == 2000
  one_class = _class_shares(dirichlet_per_class(LABELS, 20, 0.01, rng))
  assert one_class.max(1).mean() > 0.8


def test_dirichlet_per_client_scheme_follows_each_workers_mix():
  rng = np.random.default_rng(0)
  shards = dirichlet_per_client(LABELS, 10, 0.1, rng)
  assert [len(s) for s in shards] == [200] * 10
  assert len(np.unique(np.concatenate(shards))) == 2000
  assert np.mean(np.sort(_class_shares(shards), axis=1)[:, -2:].sum(1) > 0.8) > 0.5


def test_user_splits_are_kept_and_may_differ_in_size():
  splits = [np.arange(0, 100), np.arange(100, 130), np.arange(500, 2000)]
  sampler = Sampler(len(LABELS), 3, 10, splits, seed=0)
  batches = sampler.indices(0, 20, range(3))
  for worker, split in enumerate(splits):
    assert set(batches[:, worker].ravel()) <= set(split)
  assert len(np.unique(batches[:3, 1])) == 30  # a pass over worker 1's 30 examples


def test_with_replacement_batches_are_uniform_draws():
  sampler = Sampler(LABELS, 4, 50, "iid", seed=0, replacement=True)
  draws = sampler.indices(0, 200, range(4))
  assert draws.min() >= 0 and draws.max() < 2000
  counts = np.bincount(draws.ravel(), minlength=2000)
  assert np.any([len(np.unique(b)) < 50 for b in draws.reshape(-1, 50)])  # repeats within
  assert abs(counts.mean() - 20) < 1e-9 and counts.std() < 6  # ~Poisson(20): std ~4.5
  np.testing.assert_array_equal(draws[5:7], sampler.indices(5, 2, range(4)))
  fixed = Sampler(LABELS, 4, 50, "iid_fixed", seed=0, replacement=True)
  for worker in range(4):
    assert set(fixed.indices(0, 10, [worker]).ravel()) <= set(fixed.shards[worker].tolist())


def test_bad_partitions_are_refused():
  with pytest.raises(ArgumentError, match=r"batch_size: 600 does not fit .* \(allowed: 1..500\)"):
    Sampler(LABELS, 4, 600, "iid", seed=0)
  with pytest.raises(ArgumentError, match=r"partition: unknown value 'noniid'.*'iid'"):
    Sampler(LABELS, 4, 10, "noniid", seed=0)
  with pytest.raises(ArgumentError, match=r"dirichlet_alpha: must be > 0"):
    Sampler(LABELS, 4, 10, "dirichlet", seed=0, dirichlet_alpha=0.0)
  with pytest.raises(ArgumentError, match=r"dirichlet_alpha: no per_class split"):
    dirichlet_per_class(LABELS, 20, 0.001, np.random.default_rng(0), max_tries=3)
  with pytest.raises(ArgumentError, match=r"partition: 2 index arrays for 4 workers"):
    Sampler(LABELS, 4, 10, [np.arange(10), np.arange(10)])
  with pytest.raises(ArgumentError, match=r"partition: worker 1's indices are empty or outside"):
    Sampler(LABELS, 2, 10, [np.arange(10), np.arange(1995, 2005)])
  with pytest.raises(ArgumentError, match=r"labels: a Dirichlet split needs the labels"):
    Sampler(2000, 4, 10, "dirichlet")
