"""Timing of the jitted training chunk that `launch` runs (the library's `Runner`), shared by the
benchmarks."""

import time

import jax
import numpy as np

from jaxdist.experiment import Experiment


class Case:
  """One compiled chunk of `steps` steps with its state and batches, ready to be timed."""

  def __init__(self, config, steps: int):
    self.experiment = Experiment(config)
    self.runner, self.steps = self.experiment.runner, steps
    params, model_state = self.experiment.initial_model()
    self.state, self.batches = self.runner.init(params, model_state), self.runner.batches(0, steps)
    started = time.perf_counter()
    self.runner.compile(self.runner.abstract_state(params, model_state),
                        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                    sharding=x.sharding),
                                     self.batches))
    self.compile_seconds = time.perf_counter() - started
    self.examples = steps * config.workers.num_workers * config.data.batch_size
    self.times = []
    self.run()  # warm-up

  def run(self) -> float:
    started = time.perf_counter()
    self.state, metrics = self.runner.train(self.state, self.batches)
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
