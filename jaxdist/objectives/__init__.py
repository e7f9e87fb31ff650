"""What is trained: tasks (losses and evaluation) and the masks that transform them."""

from jaxdist.objectives.masking import LearnedMask, Pruning
from jaxdist.objectives.tasks import Task, classification

__all__ = ["LearnedMask", "Pruning", "Task", "classification", "masking", "tasks"]
