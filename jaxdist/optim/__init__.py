"""Optimizers, learning-rate schedules and the thesis recipes as presets."""

from jaxdist.optim import presets
from jaxdist.optim.optimizers import adagrad, adam, adamw, lamb, lars, sgd, with_gradient_noise
from jaxdist.optim.schedules import learning_rate

__all__ = ["adagrad", "adam", "adamw", "lamb", "lars", "learning_rate", "optimizers", "presets",
           "schedules", "sgd", "with_gradient_noise"]
