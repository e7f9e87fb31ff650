"""Hogwild! with imposed staleness on a sparse SVM (the spec's check 4: 20,000 examples,
dimension 2,000, Omega = 5, 30,000 steps; torn per-coordinate reads at delays up to tau), its
whole-vector variant, a dense problem, and the conflict-free CYCLADES-style variant. The first
record carries Omega, Delta and rho. The cpu variant is the same problem 10 times shorter.

  python -m launch --config configs/asynchrony/hogwild.py --workdir runs/hogwild
  python -m launch --config configs/asynchrony/hogwild.py:cpu,tau=64 --workdir runs/hogwild64
  python -m launch --config configs/asynchrony/hogwild.py:cpu,whole --workdir runs/hogwild_whole
  python -m launch --config configs/asynchrony/hogwild.py:cpu,dense --workdir runs/hogwild_dense
  python -m launch --config configs/asynchrony/hogwild.py:cpu,cyclades --workdir runs/cyclades
"""

from jaxdist.experiment.asynchrony import default
from jaxdist.experiment.config import parse_arg


def get_config(variant: str = ""):
  a = parse_arg(variant, cpu=False, tau=16, whole=False, dense=False, cyclades=False)
  config = default()
  config.algo.update(name="hogwild", learning_rate=0.05, staleness="bounded", tau=a.tau,
                     reads="whole" if a.whole else "torn")
  config.data.update(num_examples=20000, dim=2000, nonzeros=5, objective="svm")
  config.train.update(num_steps=30000, log_every=3000)
  config.checkpoint.every_steps = 15000
  if a.dense:  # dimension 100, Omega = 100: every step conflicts with every other
    config.data.update(dim=100, nonzeros=100)
    config.algo.learning_rate = 0.0025
  if a.cpu:
    config.train.update(num_steps=3000, log_every=500)
    config.checkpoint.every_steps = 1500
  if a.cyclades:  # batches of 64 on 8 cores; a step is one batch
    config.algo.update(name="cyclades", num_workers=8, cyclades_batch=64)
    config.train.update(num_steps=400 if a.cpu else 4000, log_every=100)
    config.checkpoint.every_steps = 200 if a.cpu else 1000
  return config
