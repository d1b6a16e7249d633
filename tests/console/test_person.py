"""The scripted person labels queue items in the order the queue shows them, with their true class."""

from __future__ import annotations

import numpy as np

from lepton_console.person import QueuePerson
from lepton_console.samples import placeholder
from lepton_console.state import ConsoleState, Item
from lepton_tasks import load_task
from shared.protocol import schemas


def _item(idx: int, scores: list[float], ref: str) -> Item:
    it = Item(f"cam-1:{idx}", "cam-1", "cam", "digits", idx, 0.0, 1, scores, "escalated", placeholder("-"))
    it.ref = ref
    return it


def test_the_person_labels_the_top_of_the_queue_first_with_the_truth():
    # Prepare: three samples, the middle one the most uncertain; one without a dataset ref
    st = ConsoleState()
    sent: list[schemas.Labels] = []
    y = load_task("digits").dataset().y
    flat = list(np.full(10, 0.1))
    st.items["cam-1:1"] = _item(1, [0.9] + [0.01] * 9, "digits:1")
    st.items["cam-1:2"] = _item(2, flat, "digits:2")
    st.items["cam-1:3"] = _item(3, [0.5, 0.5] + [0.0] * 8, "not-a-ref")
    person = QueuePerson(st, lambda lb: sent.append(lb) or lb, rate=1.0)

    # Execute
    steps = [person.step() for _ in range(4)]

    # Assert: most uncertain first, the no-truth sample passed over, then nothing left
    assert steps == [True, True, False, False]
    assert [(lb.items[0].sample, lb.items[0].label) for lb in sent] == [(2, int(y[2])), (1, int(y[1]))]
    assert list(st.items) == ["cam-1:3"] and person.counters.get("person.no_truth") >= 1
