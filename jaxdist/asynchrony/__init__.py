"""Asynchrony and stragglers (COMP 545 lecture 8): simulated and real asynchronous SGD, Hogwild!,
parameter servers, backup workers, one-shot averaging, coordinate parallelism."""

from jaxdist.asynchrony.compute_time import (
  ComputeTime,
  Constant,
  Exponential,
  LogNormal,
  Straggler,
)
from jaxdist.asynchrony.simulator import (
  AsyncParameterServer,
  AsyncState,
  async_ps,
  sampler,
  staleness_summary,
)
