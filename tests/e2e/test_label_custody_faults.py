"""Labels survive a bridge kill -9 followed by a broker SIGKILL: their publisher keeps them until custody.

Before label custody every label published between the two kills was lost (the broker had acknowledged
them from memory and queued them for the dead bridge's session). Now the publisher sends them again."""

from __future__ import annotations

import signal
import time

import pytest

from shared.protocol import schemas
from shared.stores.label_outbox import LabelOutbox, LabelSender
from shared.transport.mqtt import MqttClient, MqttSettings

from .faultstack import FaultStack

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_labels_published_between_a_bridge_kill_and_a_broker_crash_are_not_lost(tmp_path):
    # Prepare: a stack whose bridge forgets unmatched labels fast (they are counted, then in custody)
    stack = FaultStack(tmp_path, agents=1, fps=5, label_fraction=0.0,
                       bridge={"fusion": {"window": 2.0}, "custody": {"interval_s": 0.2}}).start()
    client = MqttClient(MqttSettings(port=stack.broker.port, backoff_min=0.05, backoff_max=0.5),
                        client_id="label-app")
    sender = LabelSender(client, stack.topics, LabelOutbox("labeller_app", timeout_s=2.0, timeout_max_s=4.0))
    client.start()
    try:
        assert client.wait_connected(10)
        pump_until = lambda pred, t: _pump(sender, pred, t)  # noqa: E731
        sender.send(_label(0))
        assert pump_until(lambda: len(sender.outbox) == 0, 20), "no custody while everything is up"

        # Execute: kill -9 the bridge, publish 10 labels (the broker acknowledges them), SIGKILL the broker
        # before it saves anything, bring both back
        stack.procs["bridge"].signal(signal.SIGKILL, 5)
        for i in range(1, 11):
            sender.send(_label(i))
        acked = _pump(sender, lambda: (client.counters.get("mqtt.published") or 0) >= 11, 2)
        time.sleep(1.0)
        stack.kill_broker()
        stack.restart_broker()
        stack.resume("bridge")
        drained = pump_until(lambda: len(sender.outbox) == 0, 60)
        resent = sender.counters.get("labels.resent") or 0
    finally:
        client.stop()
        stack.kill_all()

    # Assert: every label reached the restarted bridge (custody for all 11), after being sent again
    assert acked
    assert drained, f"{len(sender.outbox)} labels never reached the bridge"
    assert resent >= 10


def _label(i: int) -> schemas.Labels:
    return schemas.Labels(device="cam-1", stream="cam", task="digits",
                          items=[schemas.LabelItem(sample=10_000_000 + i, label=i % 10)], ts=time.time())


def _pump(sender: LabelSender, pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        sender.pump()
        time.sleep(0.2)
    return bool(pred())
