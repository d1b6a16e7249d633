"""Deferred QoS 1 acknowledgement: a message is PUBACKed only when its fate is final.

Final means: forwarded and acknowledged by the broker (escalations, fused rows), consumed
(events, labels, telemetry), or deliberately discarded and counted (dropped, expired,
rejected, duplicate). Until then the broker keeps it in our durable session, so a
``kill -9`` loses nothing: the broker redelivers and the deduper drops what was already done.

Each received message gets one :class:`AckToken` with a reference count (rows and labels
that still carry it hold one each). Tokens from an earlier connection are never acked on a
later one: the broker redelivers those messages, and their redelivered copy is acked instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.mqtt import Message


class AckToken:
    __slots__ = ("msg", "conn", "gen", "n")

    def __init__(self, msg: Message, conn: int, gen: int) -> None:
        self.msg = msg
        self.conn = conn
        self.gen = gen
        self.n = 1


class Acker:
    """Counts references per token and sends the PUBACK when the last one is released."""

    def __init__(self, ack_fns: list[Callable[[Message], None]]) -> None:
        self._ack_fns = ack_fns
        self._gen = [0] * len(ack_fns)
        self._lock = threading.Lock()
        self.acked = 0
        self.stale = 0

    def new_connection(self, conn: int) -> None:
        with self._lock:
            self._gen[conn] += 1

    def token(self, msg: Message, conn: int) -> AckToken | None:
        if msg.qos == 0:
            return None
        return AckToken(msg, conn, self._gen[conn])

    def hold(self, tok: AckToken | None) -> None:
        if tok is not None:
            with self._lock:
                tok.n += 1

    def release(self, tok: AckToken | None) -> None:
        if tok is None:
            return
        with self._lock:
            tok.n -= 1
            if tok.n != 0:
                return
            current = tok.gen == self._gen[tok.conn]
            if current:
                self.acked += 1
            else:
                self.stale += 1
        if current:
            self._ack_fns[tok.conn](tok.msg)
