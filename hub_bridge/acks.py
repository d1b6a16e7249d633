"""Deferred QoS 1 acknowledgement: a message is PUBACKed only when its fate is final.

Final means: forwarded and acknowledged by the broker (escalations, fused rows), consumed
(events, labels, telemetry), or deliberately discarded and counted (dropped, expired,
rejected, duplicate). Until then the broker keeps it in our durable session, so a
``kill -9`` loses nothing: the broker redelivers and the deduper drops what was already done.

Each received message gets one :class:`AckToken` with a reference count (rows and labels
that still carry it hold one each). Tokens from an earlier connection are never acked on a
later one: the broker redelivers those messages, and their redelivered copy is acked instead.

A token released for good waits in a per-connection list until :meth:`Acker.flush`, which sends
the PUBACKs of the whole list as one write (``MqttClient.ack_many``): at thousands of messages a
second one write per PUBACK was a tenth of the bridge's time. The generation is checked again
at the flush, so a reconnect in between never acks a token of the old connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.transport.mqtt import Message


class AckToken:
    __slots__ = ("msg", "conn", "gen", "n")

    def __init__(self, msg: Message, conn: int, gen: int) -> None:
        self.msg = msg
        self.conn = conn
        self.gen = gen
        self.n = 1


class Acker:
    """Counts references per token; a token whose last reference is released is acknowledged at the
    next :meth:`flush` (``ack_fns[conn]`` gets that connection's messages as a list)."""

    def __init__(self, ack_fns: list[Callable[[list[Message]], None]]) -> None:
        self._ack_fns = ack_fns
        self._gen = [0] * len(ack_fns)
        self._lock = threading.Lock()
        self._ready: list[list[AckToken]] = [[] for _ in ack_fns]
        self.pending = 0
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
            if tok.n == 0:
                self._ready[tok.conn].append(tok)
                self.pending += 1

    def flush(self) -> None:
        """Send the PUBACKs of every token released for good since the last flush."""
        if not self.pending:
            return
        with self._lock:
            ready = self._ready
            self._ready = [[] for _ in ready]
            self.pending = 0
            gens = list(self._gen)
        for conn, toks in enumerate(ready):
            if not toks:
                continue
            msgs = [t.msg for t in toks if t.gen == gens[conn]]
            with self._lock:
                self.acked += len(msgs)
                self.stale += len(toks) - len(msgs)
            if msgs:
                self._ack_fns[conn](msgs)
