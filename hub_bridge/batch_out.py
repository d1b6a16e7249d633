"""Fused batches on their way to ``hub/batch/{task}``.

Published in order; an input's PUBACK is released only when the broker has the batch that carries its
rows, and the batch stays in the Handoff until a worker holds it (custody). When paho or the broker is
not taking publishes, batches wait here, in order, and are counted (``out.batch_retry``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from hub_bridge.acks import Acker
from hub_bridge.custody import Handoff
from hub_bridge.fusion import Emitted
from hub_bridge.label_custody import LabelTicket
from shared.process.counters import Counters
from shared.protocol.topics import Topics
from shared.transport.mqtt import MqttClient, MqttError


class BatchOut:
    def __init__(self, topics: Topics, handoff: Handoff, acker: Acker, counters: Counters, *, ttl_s: float,
                 client: Callable[[], MqttClient | None], clock: Callable[[], float]) -> None:
        self.t = topics
        self.handoff = handoff
        self.acker = acker
        self.counters = counters
        self.expiry = max(1, math.ceil(ttl_s))  # a batch expires at the broker with its rows' TTL
        self.client = client
        self.clock = clock
        self._queue: deque[tuple[str, bytes, list, int]] = deque()  # (task, payload, ack refs, batch seq)

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, emitted: list[Emitted]) -> None:
        now = self.clock()
        for e in emitted:
            payload = e.batch.encode()
            tickets = [r for r in e.refs if isinstance(r, LabelTicket)]  # their custody waits for a worker
            self.handoff.emitted(e.batch.seq, e.batch.task, payload, e.src, e.samples, now, tickets)
            self._queue.append((e.batch.task, payload, e.refs, e.batch.seq))
        self.flush()

    def resend(self, task: str, payload: bytes, seq: int) -> None:
        """A batch no worker acknowledged in time goes out again (its inputs were acked long ago)."""
        self._queue.append((task, payload, [], seq))
        self.counters.inc("out.batch_republished")

    def flush(self) -> bool:
        """Publish waiting batches in order; False when the broker or paho is not taking them."""
        client = self.client()
        while self._queue:
            task, payload, refs, seq = self._queue[0]
            if client is None:
                return False
            try:
                client.publish(self.t.hub_batch(task), payload, qos=1, message_expiry=self.expiry,
                               on_ack=lambda rc, refs=refs, seq=seq: self._acked(rc, refs, seq))
            except MqttError:
                self.counters.inc("out.batch_retry")
                return False
            self._queue.popleft()
            self.counters.inc("out.batches")
        return True

    def _acked(self, rc: int, refs: list, seq: int) -> None:
        if rc >= 0x80:
            self.counters.inc("out.batch_denied")
        else:
            self.handoff.broker_acked(seq)
        for r in refs:  # the MQTT acks; a label ticket's custody is the Handoff's to let go
            self.acker.release(r.tok if isinstance(r, LabelTicket) else r)
        self.acker.flush()
