"""Adaptive and growing batch sizes ([Sievert] §3.1-3.2): rules, accumulation without
recompiling, variable-worker training on a fixed grid with a time model."""

from jaxdist.batching import accumulation, rules, variable_workers
from jaxdist.batching.rules import (
  Constant,
  GeoDamp,
  GradientNorm,
  LearningRateTwin,
  Linear,
  Oracle,
  RadaDamp,
)
from jaxdist.batching.training import AdaptiveBatchSGD, BatchingState

__all__ = ["AdaptiveBatchSGD", "BatchingState", "Constant", "GeoDamp", "GradientNorm",
           "LearningRateTwin", "Linear", "Oracle", "RadaDamp", "accumulation", "rules",
           "variable_workers"]
