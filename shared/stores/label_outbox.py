"""Labels under custody at their publisher: kept until the bridge says their fate is final.

A broker acknowledges a label from memory, so a broker crash can lose what it acknowledged (before
custody, every label published between a bridge kill -9 and a broker SIGKILL was lost). A label
publisher (the console, `lepton up`'s labeller, any app) therefore stamps each ``Labels`` message
with its name, its boot (ms epoch) and a sequence number, keeps it in a :class:`LabelOutbox`, and
forgets it only when a ``LabelCustody`` on ``hub/custody/{publisher}`` covers its seq. A message
sent and not in custody after ``timeout_s`` goes out again, the wait doubling per attempt up to
``timeout_max_s`` (docs/PROTOCOL.md, "Delivery guarantee"). :class:`LabelSender` is that outbox on
an :class:`shared.transport.mqtt.MqttClient`; the outbox itself is pure (clock passed in).

The outbox is bounded (``max_messages``; the oldest given up, counted ``labels.outbox_evicted``).
It lives in memory unless given a :class:`shared.stores.label_journal.LabelJournal`, which keeps a copy on
disk: what an earlier boot left there is taken back at start (counted ``labels.recovered``) and
sent again under this boot.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from shared.process.counters import Counters
from shared.protocol import schemas
from shared.protocol.topics import Topics, check_segment
from shared.stores.label_journal import LabelJournal
from shared.transport.mqtt import Message, MqttClient, MqttError


@dataclass
class _Entry:
    msg: schemas.Labels
    sent: float | None = None  # monotonic time of the last send; None: not sent yet
    attempts: int = 0


class LabelOutbox:
    def __init__(self, publisher: str, *, timeout_s: float = 30.0, timeout_max_s: float = 600.0,
                 max_messages: int = 100_000, boot: int | None = None, counters: Counters | None = None,
                 journal: LabelJournal | None = None) -> None:
        self.publisher = check_segment(publisher, "publisher")
        self.boot = int(time.time() * 1000) if boot is None else boot
        self.timeout_s = timeout_s
        self.timeout_max_s = timeout_max_s
        self.max_messages = max_messages
        self.counters = counters or Counters()
        self._seq = 0
        self._q: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.journal = journal
        if journal is not None:
            self._recover(journal)

    def _recover(self, journal: LabelJournal) -> None:
        # New rows first, old ones deleted after: a crash in between sends some twice, never none.
        for body in journal.left_over(self.boot):
            try:
                msg = schemas.loads(body, schemas.Labels)
            except schemas.SchemaError as exc:
                self.counters.inc(f"labels.journal_rejected.{exc.reason}")
                continue
            self.add(msg)  # stamped again: this publisher, this boot, a new seq
            self.counters.inc("labels.recovered", len(msg.items))
        journal.drop_other_boots(self.boot)

    def add(self, msg: schemas.Labels) -> schemas.Labels:
        """Stamp ``msg`` for custody and keep it; returns the stamped message (to send now or via due())."""
        with self._lock:
            seq = self._seq
            self._seq += 1
            stamped = msg.model_copy(update={"publisher": self.publisher, "boot": self.boot, "seq": seq})
            self._q[seq] = _Entry(stamped)
            self._keep(stamped)
            evicted = []
            while len(self._q) > self.max_messages:
                evicted.append(self._q.popitem(last=False)[0])
                self.counters.inc("labels.outbox_evicted")
            self._forget(evicted)
            return stamped

    def _keep(self, m: schemas.Labels) -> None:
        if self.journal is not None:
            self.journal.put(self.boot, m.seq, schemas.dumps(m))

    def _forget(self, seqs: list[int]) -> None:
        if self.journal is not None and seqs:
            self.journal.delete(self.boot, seqs)

    def forget_sample(self, device: str, sample: int) -> int:
        """A correction replaces what is still waiting for this sample: drop it from kept messages, so a
        resend never brings an old label back after its correction. Returns the items dropped."""
        dropped = 0
        with self._lock:
            for seq, e in list(self._q.items()):
                m = e.msg
                if m.device != device or m.supersedes:
                    continue
                keep = [i for i in m.items if i.sample != sample]
                if len(keep) == len(m.items):
                    continue
                dropped += len(m.items) - len(keep)
                if keep:
                    e.msg = m.model_copy(update={"items": keep})
                    self._keep(e.msg)
                else:
                    del self._q[seq]
                    self._forget([seq])
        return dropped

    def sent(self, seq: int, now: float) -> None:
        with self._lock:
            e = self._q.get(seq)
            if e is not None:
                e.sent, e.attempts = now, e.attempts + 1

    def due(self, now: float) -> list[schemas.Labels]:
        """Messages never sent, or sent and not in custody for longer than their wait."""
        out = []
        with self._lock:
            for e in self._q.values():
                if e.sent is None:
                    out.append(e.msg)
                    continue
                wait = min(self.timeout_max_s, self.timeout_s * 2 ** (e.attempts - 1))
                if now - e.sent >= wait:
                    out.append(e.msg)
        return out

    def custody(self, lc: schemas.LabelCustody) -> int:
        """Forget what ``lc`` covers; returns how many messages that was."""
        if lc.publisher != self.publisher or lc.boot != self.boot:
            return 0
        gone: list[int] = []
        with self._lock:
            for lo, hi in lc.ranges:
                if hi - lo < len(self._q):
                    gone += [s for s in range(lo, hi + 1) if self._q.pop(s, None) is not None]
                else:
                    for s in [s for s in self._q if lo <= s <= hi]:
                        del self._q[s]
                        gone.append(s)
            self._forget(gone)
        self.counters.inc("labels.custody", len(gone))
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._q)

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest message kept has waited since its first send (0 when none)."""
        with self._lock:
            sent = [e.sent for e in self._q.values() if e.sent is not None]
        return max(0.0, now - min(sent)) if sent else 0.0


class LabelSender:
    """A :class:`LabelOutbox` on an MQTT client: ``send`` publishes at once when it can, ``pump`` (call it
    about once a second) resends what is due. Custody arrives on the client's network thread."""

    def __init__(self, client: MqttClient, topics: Topics, outbox: LabelOutbox, *, clock=time.monotonic) -> None:
        self.client = client
        self.topics = topics
        self.outbox = outbox
        self.counters = outbox.counters
        self.clock = clock
        client.subscribe(topics.label_custody(outbox.publisher), 0, self._on_custody)

    def _on_custody(self, m: Message) -> None:
        try:
            lc = schemas.loads(m.payload, schemas.LabelCustody)
        except schemas.SchemaError as exc:
            self.counters.inc(f"rejected.label_custody.{exc.reason}")
            return
        self.outbox.custody(lc)

    def send(self, msg: schemas.Labels) -> schemas.Labels:
        """Keep ``msg`` under custody and publish it now if connected (else at the next pump)."""
        if msg.supersedes:
            for item in msg.items:
                self.outbox.forget_sample(msg.device, item.sample)
        stamped = self.outbox.add(msg)
        self._publish(stamped)
        return stamped

    def pump(self) -> int:
        n = 0
        for m in self.outbox.due(self.clock()):
            if not self._publish(m, resend=True):
                break
            n += 1
        return n

    def _publish(self, m: schemas.Labels, resend: bool = False) -> bool:
        assert m.seq is not None
        try:
            self.client.publish(self.topics.label(m.device, m.stream), schemas.dumps(m), qos=1)
        except MqttError:
            self.counters.inc("labels.unsent")
            return False
        self.outbox.sent(m.seq, self.clock())
        self.counters.inc("labels.resent" if resend else "labels.sent", len(m.items))
        return True
