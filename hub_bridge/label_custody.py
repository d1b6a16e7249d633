"""Custody for labels: a label publisher keeps each label message until the bridge says its fate is final.

Label messages that name themselves (``publisher``, ``boot``, ``seq`` in :class:`shared.protocol.schemas.Labels`)
are deduplicated by that key in a ledger of their own (a publisher's name is not a device id) and
announced on ``hub/custody/{publisher}``, cumulatively, like a device's messages
(docs/PROTOCOL.md, "Delivery guarantee"). A label's fate is final when

- every fused batch that carries one of its items is held by a worker (``hub/ack/{bridge}``; the
  broker's PUBACK with ``custody.features = "broker"``), or
- it was forwarded as a correction to ``hub/relabel/{task}`` and the broker acknowledged that, or
- each item was counted instead (duplicate, late, unmatched, evicted, task mismatch), or the
  message was dropped, expired or rejected by policy (counted).

A :class:`LabelTicket` stands for one such message while its items travel: fusion holds and releases
it as it does the MQTT ack token it wraps, and the custody part is let go only when the batch that
carries an item is held, not merely acknowledged by the broker. Messages without a key travel as
plain ack tokens, as before.
"""

from __future__ import annotations

import threading
from typing import Any

from hub_bridge.custody import NEW, CustodyLedger, Key
from shared.protocol import strictjson
from shared.protocol.topics import SEGMENT_RE


class LabelTicket:
    """One keyed label message in flight: its MQTT ack token and the count of what still carries it."""

    __slots__ = ("tok", "key", "n", "lost")

    def __init__(self, tok: Any, key: Key) -> None:
        self.tok = tok
        self.key = key
        self.n = 1  # the processing reference, let go when the bridge is done with the message itself
        self.lost = False  # a batch that carried an item was given up: no custody, the publisher resends


class LabelCustody:
    """The label ledger and the tickets' custody counts (the acker keeps their token counts)."""

    def __init__(self, ledger: CustodyLedger, clock) -> None:
        self.ledger = ledger
        self.clock = clock
        self._lock = threading.Lock()
        self.lost = 0

    def admit(self, key: Key) -> bool:
        return self.ledger.admit(key) == NEW

    def hold(self, t: LabelTicket) -> None:
        with self._lock:
            t.n += 1

    def release(self, t: LabelTicket) -> None:
        with self._lock:
            t.n -= 1
            done = t.n == 0
        if done:
            if t.lost:
                self.ledger.abandon(t.key)  # a resend is new work
            else:
                self.ledger.finish(t.key, self.clock())

    def lose(self, t: LabelTicket) -> None:
        """A batch carrying one of its items was given up: keep custody back, so the publisher resends."""
        with self._lock:
            if not t.lost:
                t.lost = True
                self.lost += 1
        self.release(t)

    def settle(self, payload: bytes) -> None:
        """A label message shed or rejected before processing: final (counted), when it names itself."""
        key = peek_key(payload)
        if key is not None:
            self.ledger.settle(key, self.clock())


def peek_key(payload: bytes) -> Key | None:
    """(publisher, boot, seq) from a label payload, without validating the rest; None when absent."""
    try:
        obj = strictjson.loads(payload)
    except (ValueError, TypeError):
        return None
    if not isinstance(obj, dict):
        return None
    pub, boot, seq = obj.get("publisher"), obj.get("boot", 0), obj.get("seq")
    if not (isinstance(pub, str) and SEGMENT_RE.match(pub) and isinstance(boot, int) and isinstance(seq, int)):
        return None
    if not (0 <= boot < 1 << 62 and 0 <= seq < 1 << 62):
        return None
    return (pub, boot, seq)
