"""The runner: K workers of an algorithm in jitted chunks, with checkpoints and progress."""

from jaxdist.training.runner import Result, Runner, RunState, compiler_options, train

__all__ = ["Result", "RunState", "Runner", "checkpoint", "compiler_options", "progress", "runner",
           "train"]
