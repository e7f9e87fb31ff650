"""Timing of the jitted training chunk that `launch` runs (the library's `Runner`), shared by the
benchmarks."""

import time

import jax
import numpy as np

from jaxdist.experiment import Experiment
from jaxdist.experiment.config import default
from jaxdist.training.runner import Runner


class Case:
  """One compiled chunk of `steps` steps with its state and batches, ready to be timed."""

  def __init__(self, config, steps: int, layout=None):
    self.experiment = Experiment(config)
    self.runner, self.steps = self.experiment.runner, steps
    if layout is not None:  # the same run with the workers elsewhere
      r = self.runner
      self.runner = Runner(r.algorithm, r.data, grid=r.grid, layout=layout,
                           steps_per_chunk=r.steps_per_chunk, examples_per_step=r.examples_per_step)
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


def config(num_workers, batch, algorithm, backend, data_dir, steps: int = 50):
  """The benchmarks' run: MLP 40-256-256-10 on MNIST-1D, Nesterov SGD, constant step size, H=4."""
  c = default()
  c.algo.update(name=algorithm, local_steps=4)
  c.workers.update(num_workers=num_workers, backend=backend)
  c.data.update(name="mnist1d_large", batch_size=batch, data_dir=data_dir)
  c.optim.update(base_lr=0.05, lr_scaling="none", schedule="constant")
  c.train.update(num_steps=10**6, log_every=steps)
  return c
