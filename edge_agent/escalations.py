"""Escalations waiting for the cloud's answer, and how each one ends.

Every escalation ends in exactly one of: ``reply.used`` (the cloud's label stands), ``reply.deferred``
(the cloud says it is no better here), ``reply.rejected.bad_label``, ``escalation.deadline``,
``escalation.evicted`` (the table was full) or ``escalation.at_stop``; each of them publishes the
sample's one prediction through ``finalize``. Replies come on the network thread, deadlines on the
infer thread: ``PendingTable.pop`` decides which of them wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.config import DecisionSettings
from edge_agent.pending import PendingTable
from shared.process.counters import Counters
from shared.protocol.schemas import Reply
from shared.protocol.wire import Decoded
from shared.transport.mqtt import Message


@dataclass(slots=True)
class Pending:
    """A sample's edge decision, kept until the cloud answers or the deadline passes."""

    sample: int
    label: int
    confidence: float
    model_version: int
    ref: str
    ts: float
    escalated: bool


Finalize = Callable[[Pending, str, int, float], None]  # (pending, source, label, confidence)


class Escalations:
    def __init__(self, cfg: DecisionSettings, task: str, counters: Counters, finalize: Finalize,
                 classes: Callable[[], Sequence[str]]) -> None:
        self.cfg = cfg
        self.task = task
        self.counters = counters
        self.finalize = finalize
        self.classes = classes  # of the model in use: a reply's label must name one
        self.table: PendingTable[Pending] = PendingTable(cfg.max_pending)

    def __len__(self) -> int:
        return len(self.table)

    def register(self, p: Pending) -> None:
        """Before the escalation can be sent, so that even an instant reply finds its entry."""
        for old in self.table.add(p.sample, p, time.time() + self.cfg.reply_deadline_s):
            self.counters.inc("escalation.evicted")
            self._edge(old)

    def cancel(self, sample: int) -> Pending | None:
        """It could not be queued after all: the caller decides locally."""
        return self.table.pop(sample)

    def next_deadline(self) -> float | None:
        return self.table.next_deadline()

    def expire(self, now: float) -> None:
        for p in self.table.expired(now):
            self.counters.inc("escalation.deadline")
            self._edge(p)

    def at_stop(self) -> None:
        """Stopping before the replies came: each is decided locally, and counted."""
        for p in self.table.drain():
            self.counters.inc("escalation.at_stop")
            self._edge(p)

    def _edge(self, p: Pending) -> None:
        self.finalize(p, "edge", p.label, p.confidence)

    def on_reply(self, d: Decoded, msg: Message) -> None:
        """The network thread's handler: keep it short."""
        reply: Reply = d.value
        if not isinstance(reply, Reply):
            self.counters.inc("reply.rejected.wrong_kind")
            return
        key = reply.sample
        if msg.correlation_data:
            try:
                key = int(msg.correlation_data.decode())
            except (UnicodeDecodeError, ValueError):
                self.counters.inc("reply.rejected.bad_correlation")
                return
        if reply.task != self.task or key != reply.sample:
            self.counters.inc("reply.rejected.mismatch")
            return
        p = self.table.pop(key)
        if p is None:
            self.counters.inc("reply.late")
            return
        if reply.label >= len(self.classes()):
            self.counters.inc("reply.rejected.bad_label")
            self._edge(p)
        elif reply.defer:  # the cloud says it is no better here: the edge's decision stands (counted)
            self.counters.inc("reply.deferred")
            self._edge(p)
        else:
            self.counters.inc("reply.used")
            self.finalize(p, "cloud", reply.label, reply.confidence)
