"""A scripted person at the console: labels queue items in the order the queue shows them.

For measuring what the queue's order is worth (issue 18): against `lepton up`'s random labeller, which
corrects a fixed fraction of all predictions, this "person" gives ``rate`` labels a second, always to the
sample at the top of the queue, with its true class from the packaged dataset (the sample's ``ref``,
``task:index``, as the random labeller uses). A sample whose ``ref`` has not arrived yet is passed over
for now; one with no ground truth (not a replayed dataset sample) is skipped for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lepton_console.state import ConsoleState
from lepton_tasks import TaskSpecError, load_task
from lepton_tasks.refs import parse_ref
from shared.process.counters import Counters
from shared.process.service import Service
from shared.protocol import schemas


def truth(ref: str) -> int | None:
    parsed = parse_ref(ref)
    if parsed is None:
        return None
    task, idx = parsed
    try:
        y = load_task(task).dataset().y
    except TaskSpecError:
        return None
    return int(y[idx]) if 0 <= idx < len(y) else None


class QueuePerson(Service):
    name = "person"

    def __init__(self, state: ConsoleState, send: Callable[[schemas.Labels], schemas.Labels], *,
                 rate: float = 1.0, source: str = "person") -> None:
        super().__init__()
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.state = state
        self.send = send
        self.rate = rate
        self.source = source
        self.counters = Counters()
        self._passed: set[str] = set()

    def _start(self) -> None:
        self.spawn(self._loop, "label")

    def step(self) -> bool:
        """Label the top of the queue; False when there was nothing to label."""
        for it in self.state.ranked(self._passed, limit=20):
            if it.key in self._passed:
                break
            if not it.ref:
                continue  # its prediction (and ref) is still on its way
            y = truth(it.ref)
            if y is None:
                self._passed.add(it.key)
                self.counters.inc("person.no_truth")
                continue
            lb = schemas.Labels(device=it.device, stream=it.stream, task=it.task,
                                items=[schemas.LabelItem(sample=it.sample, label=y)], source=self.source,
                                ts=time.time())
            self.state.apply_labels(self.send(lb))
            self.counters.inc("labels.sent")
            self.counters.inc(f"labels.{it.reason.replace(' ', '_')}")
            return True
        return False

    def _loop(self) -> None:
        gap = 1.0 / self.rate
        while not self.stopping.wait(gap):
            if not self.step():
                self.counters.inc("person.idle")
