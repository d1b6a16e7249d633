"""The console's /metrics: labels given, labels not yet in custody, queue length (prometheus-client's parser)."""

from __future__ import annotations

import time

import pytest

from shared.protocol import schemas
from tests.hub.helpers import scrape

from .conftest import hard, wait_until

pytestmark = pytest.mark.broker


def test_console_metrics_follow_the_queue_and_the_labels(consoles, topics, pub):
    svc = consoles(topics, metrics={"enabled": True, "port": 0})
    for s in (1, 2):
        pub.publish(topics.hard("cam-1", "cam"), hard("cam-1", s, [0.4, 0.3, 0.2, 0.1]), qos=1)
    port = svc.metrics.port
    assert wait_until(lambda: scrape(port)["lepton_console_queue_length"][()] == 2), scrape(port)
    svc.label(schemas.Labels(device="cam-1", stream="cam", task="digits",
                             items=[schemas.LabelItem(sample=1, label=3)], ts=time.time()))
    m = scrape(port)
    assert m["lepton_console_labels_given_total"][()] == 1
    assert m["lepton_console_labels_awaiting_custody"][()] == 1  # no bridge here: nobody takes custody
    assert m["lepton_console_queue_dropped_total"][()] == 0


def test_console_metrics_are_off_by_default(consoles, topics):
    assert consoles(topics).metrics is None
