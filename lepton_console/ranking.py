"""Which unlabelled sample is worth a person's next keystroke: pure scoring, no I/O.

score = uncertainty + disagreement + rarity, each in [0, 1]:

- uncertainty: the normalised entropy of the edge's class probabilities (1: the edge had no idea);
- disagreement: the cloud's confidence when it answered a different class than the edge's top one
  (0 when it agreed, deferred or has not answered);
- rarity: 1 / (1 + labels seen so far of the class the sample most likely is (the cloud's answer
  when it gave one, else the edge's)), so the first labels of a class count most.

Ties go to the newest sample. A person's skipped samples go last, for that person only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol


class Rankable(Protocol):
    task: str
    scores: list[float]
    cloud_label: int | None
    cloud_conf: float | None
    cloud_defer: bool
    arrived: float


def uncertainty(scores: list[float]) -> float:
    n = len(scores)
    if n < 2:
        return 0.0
    total = sum(p for p in scores if p > 0) or 1.0
    h = -sum((p / total) * math.log(p / total) for p in scores if p > 0)
    return min(1.0, h / math.log(n))


def edge_label(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__) if scores else -1


def disagreement(item: Rankable) -> float:
    if item.cloud_label is None or item.cloud_defer or item.cloud_label == edge_label(item.scores):
        return 0.0
    return float(item.cloud_conf or 0.0)


def likely_class(item: Rankable) -> int:
    if item.cloud_label is not None and not item.cloud_defer:
        return item.cloud_label
    return edge_label(item.scores)


def rarity(item: Rankable, label_counts: Mapping[tuple[str, int], int]) -> float:
    return 1.0 / (1.0 + label_counts.get((item.task, likely_class(item)), 0))


def score(item: Rankable, label_counts: Mapping[tuple[str, int], int]) -> float:
    return uncertainty(item.scores) + disagreement(item) + rarity(item, label_counts)


def rank(items: Iterable[Rankable], label_counts: Mapping[tuple[str, int], int],
         skipped: frozenset | set = frozenset(), key=lambda it: it) -> list:
    """Items most valuable first; those whose ``key(item)`` is in ``skipped`` after all others."""
    return sorted(items, key=lambda it: (key(it) in skipped, -score(it, label_counts), -it.arrived))
