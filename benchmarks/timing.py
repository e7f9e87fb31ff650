"""Timing of the jitted training chunk that `launch` runs, shared by the benchmarks."""

import time

import jax
import numpy as np

from jaxdist.train import Trainer


class Case:
  """One compiled chunk of `steps` steps with its state and batches, ready to be timed."""

  def __init__(self, config, steps: int):
    self.trainer, self.steps = Trainer(config), steps
    started = time.perf_counter()
    self.trainer.compile(steps)
    self.compile_seconds = time.perf_counter() - started
    self.examples = steps * config.workers.num_workers * config.data.batch_size
    self.state, self.batches = self.trainer.init(), self.trainer.batches(0, steps)
    self.times = []
    self.run()  # warm-up

  def run(self) -> float:
    started = time.perf_counter()
    self.state, metrics = self.trainer.train(self.state, self.batches)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - started

  @property
  def seconds_per_step(self) -> float:
    return float(np.median(self.times)) / self.steps

  @property
  def seconds_per_example(self) -> float:
    return float(np.median(self.times)) / self.examples


def measure(cases, repeats: int) -> None:
  """Times the cases in turns, so that a slow spell of the machine hits them all alike."""
  for _ in range(repeats):
    for case in cases:
      case.times.append(case.run())
