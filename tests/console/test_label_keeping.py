"""A console restart does not lose a person's labels: what the bridge has not taken into custody is
kept on disk (``outbox``) and sent again at the next start; without it, a stop says what it lost."""

from __future__ import annotations

import logging
import time

import pytest

from lepton_console.config import ConsoleConfig
from lepton_console.service import ConsoleService
from shared.protocol import schemas
from shared.transport.mqtt import MqttSettings
from tests.hub.helpers import Collector

from .conftest import TOKEN, wait_until

pytestmark = pytest.mark.broker


def _console(broker, topics, **kw) -> ConsoleService:
    cfg = ConsoleConfig(mqtt=MqttSettings(host="127.0.0.1", port=broker.port, backoff_max=0.5), root=topics.root,
                        port=0, token=TOKEN, **kw)
    svc = ConsoleService(cfg).start()
    assert svc.wait_ready(10) and svc.client.wait_connected(10)
    return svc


def _label(sample: int, y: int) -> schemas.Labels:
    return schemas.Labels(device="cam-1", stream="front", task="digits",
                          items=[schemas.LabelItem(sample=sample, label=y)], ts=time.time())


def test_labels_not_in_custody_go_out_again_after_a_restart(broker, topics, mqtt_factory, tmp_path):
    # Prepare: no bridge, so nothing is ever taken into custody
    seen = Collector(mqtt_factory()).add(topics.labels())
    outbox = tmp_path / "console" / "labels.sqlite"
    first = _console(broker, topics, outbox=outbox)
    try:
        first.label(_label(1, 3))
        first.label(_label(2, 4))
        assert wait_until(lambda: len(seen.matching()) == 2)
    finally:
        first.stop()

    # Execute
    second = _console(broker, topics, outbox=outbox)
    try:
        again = wait_until(lambda: len(seen.matching()) == 4)
        recovered = second.counters.get("labels.recovered")
    finally:
        second.stop()

    # Assert: both labels again, in order, under the second boot
    msgs = [schemas.loads(m.payload, schemas.Labels) for m in seen.matching()]
    assert again and recovered == 2
    assert [(m.boot, m.seq, m.items[0].sample) for m in msgs[2:]] == [(second.sender.outbox.boot, 0, 1),
                                                                      (second.sender.outbox.boot, 1, 2)]
    assert msgs[0].boot != msgs[2].boot
    assert first.errors == second.errors == []


def test_without_an_outbox_file_a_stop_says_how_many_labels_it_lost(broker, topics, caplog):
    svc = _console(broker, topics)
    try:
        svc.label(_label(1, 3))
    finally:
        with caplog.at_level(logging.WARNING, logger="lepton_console.service"):
            svc.stop()
    assert svc.counters.get("labels.lost_at_stop") == 1
    assert "1 label messages not yet in the bridge's custody are lost" in caplog.text
