"""Lepton task packs: tasks as data (a TOML spec each), the datasets they load, and the shipped scenarios.

A task is not code: ``lepton_tasks/specs/*.toml`` are the shipped ones, any spec file can be
named by its path, and pip-installed packs register theirs under the ``lepton.tasks`` entry
point group. See docs/TASKS.md. Nothing here imports torch: agents can load a task to replay
its data, and only the cloud worker builds its models.
"""

from lepton_tasks.registry import available, load_task, locate
from lepton_tasks.spec import TaskSpec, TaskSpecError, parse_spec, read_spec
from lepton_tasks.task import Dataset, Task, require_live

__all__ = ["Dataset", "Task", "require_live", "TaskSpec", "TaskSpecError", "available", "load_task", "locate", "parse_spec",
           "read_spec"]
