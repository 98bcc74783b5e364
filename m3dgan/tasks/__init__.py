"""Tasks: a source modality, a target modality, a data set, and the metrics that judge it."""

from m3dgan.tasks.registry import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
