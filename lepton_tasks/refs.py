"""Sample refs of replayed dataset samples: ``digits:123`` names sample 123 of task digits.

A replay source writes them (edge_agent/sources.py), and whoever knows the data reads them back to
find a sample's ground truth: the scripted labeller, the console's scripted person, the fleet view.
"""

from __future__ import annotations


def sample_ref(task: str, index: int) -> str:
    """The ref of sample ``index`` of ``task``'s dataset."""
    return f"{task}:{int(index)}"


def parse_ref(ref: str) -> tuple[str, int] | None:
    """``digits:123`` -> ("digits", 123); anything else -> None (not a replayed dataset sample)."""
    task, sep, idx = ref.partition(":")
    if not sep or not idx.isdigit():
        return None
    return task, int(idx)
