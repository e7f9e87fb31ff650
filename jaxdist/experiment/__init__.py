"""The experiment layer: configs, `python -m launch`, workdirs with metrics, checkpoints and
models, plots. A thin use of the library: a config's fields become the library's arguments in
`jaxdist.experiment.build`, and `run` drives the library's runner."""

from jaxdist.experiment.build import Experiment, validate
from jaxdist.experiment.config import default
from jaxdist.experiment.runs import run

__all__ = [
           "Experiment",
           "build",
           "config",
           "default",
           "families",
           "launcher",
           "overrides",
           "plot",
           "run",
           "runs",
           "validate",
           "writers",
]
