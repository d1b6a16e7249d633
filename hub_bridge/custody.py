"""Custody at the hub: which device messages reached their final fate here, and who must hear of it.

A broker acknowledges a QoS 1 message from memory and writes it to disk only at its next
autosave, so a broker crash can lose what it acknowledged. Agents therefore keep every QoS 1
message until the bridge gives *custody* of it (docs/PROTOCOL.md, "Delivery guarantee"). Two
pure, thread-safe pieces live here:

- :class:`CustodyLedger` replaces a plain deduper. A message keyed (device, boot, seq) is *new*
  (process it), *in process* (a copy: drop it, custody follows the first copy's fate) or *in
  custody* (a copy: drop it and tell the device again, which evidently missed the word). Fates
  are final when a message is consumed (event), forwarded and acknowledged (escalation), held
  durably by a worker (features, see :class:`Handoff`), or dropped, expired or rejected by
  policy and counted. ``due()`` hands out, per (device, boot) with news, its whole custody set
  as ranges: cumulative, so one lost custody message is repaired by the next.
- :class:`Handoff` keeps fused batches until a worker says it holds them durably
  (``hub/ack/{bridge}``), republishes those nobody acknowledged, and tells the ledger when every
  row of a device's feature message is held. With ``mode = "broker"`` the broker's PUBACK is
  taken as the worker's word (for a disk-backed broker, or workers that do not acknowledge).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.protocol.dedup import SeqSet
from shared.protocol.schemas import MAX_RANGES

Key = tuple[str, int, int]  # (device, boot, seq)
Stream = tuple[str, int]  # (device, boot)

NEW, IN_PROCESS, IN_CUSTODY = 0, 1, 2


def custody_payload(device: str, boot: int, ranges: list[tuple[int, int]], ts: float) -> bytes:
    """``schemas.dumps(Custody(...))`` without pydantic: the bridge sends one per device and second
    (1,000 a second at 1,000 devices), and ``device`` is a checked id, the rest ints and a float.
    tests/hub/test_custody.py checks it against the schema."""
    rs = ",".join([f"[{lo},{hi}]" for lo, hi in ranges])
    return (f'{{"schema":1,"kind":"custody","device":"{device}","boot":{int(boot)},"ranges":[{rs}],'
            f'"ts":{float(ts)!r}}}').encode()


class CustodyLedger:
    """``interval_s`` spaces two words to one device; with ``max_rate`` the spacing grows with the
    number of devices that have news, so that all of them together get about ``max_rate`` words a
    second, up to ``max_interval_s`` (docs/BRIDGE.md, "Custody interval": a word costs the broker a
    message per device, a longer spacing costs resends after a crash)."""

    def __init__(self, max_streams: int = 100_000, interval_s: float = 1.0, max_rate: float | None = None,
                 max_interval_s: float | None = None) -> None:
        self.max_streams = max_streams
        self.interval_s = interval_s
        self.max_rate = max_rate
        self.max_interval_s = max(interval_s, max_interval_s or interval_s)
        self.effective_interval_s = interval_s
        self._done: OrderedDict[Stream, SeqSet] = OrderedDict()
        self._busy: set[Key] = set()
        self._news: dict[Stream, float] = {}  # stream -> when it first had news since its last word
        self._told: dict[Stream, float] = {}
        # Messages in custody whose device has not heard so yet, per stream and in all: what the devices
        # would send again (after their custody_timeout_s) if this bridge died now.
        self._untold: dict[Stream, int] = {}
        self.untold = 0
        self._lock = threading.Lock()
        self.duplicates = 0
        self.finished = 0

    def admit(self, key: Key) -> int:
        """NEW (and now in process), IN_PROCESS or IN_CUSTODY; copies of custodied ones re-arm the word."""
        dev, boot, seq = key
        with self._lock:
            s = self._done.get((dev, boot))
            if s is not None and seq in s:
                self.duplicates += 1
                self._news.setdefault((dev, boot), 0.0)  # word again, at once: the device missed it
                return IN_CUSTODY
            if key in self._busy:
                self.duplicates += 1
                return IN_PROCESS
            self._busy.add(key)
            return NEW

    def state(self, key: Key) -> int:
        dev, boot, seq = key
        with self._lock:
            s = self._done.get((dev, boot))
            if s is not None and seq in s:
                return IN_CUSTODY
            return IN_PROCESS if key in self._busy else NEW

    def finish(self, key: Key, now: float) -> None:
        """This message's fate is final: it is in custody."""
        dev, boot, seq = key
        stream = (dev, boot)
        with self._lock:
            self._busy.discard(key)
            s = self._done.get(stream)
            if s is None:
                s = self._done[stream] = SeqSet()
                if len(self._done) > self.max_streams:
                    old, _ = self._done.popitem(last=False)
                    self._news.pop(old, None)
                    self._told.pop(old, None)
                    self.untold -= self._untold.pop(old, 0)
            else:
                self._done.move_to_end(stream)
            if s.add(seq):
                self.finished += 1
                self._untold[stream] = self._untold.get(stream, 0) + 1
                self.untold += 1
            self._news.setdefault(stream, now)

    def settle(self, key: Key, now: float) -> bool:
        """Finish a message never admitted (shed before processing), unless a copy of it is in process."""
        with self._lock:
            if key in self._busy:
                return False
        self.finish(key, now)
        return True

    def abandon(self, key: Key) -> None:
        """No fate after all (the bridge gave the work up): a copy sent again is new."""
        with self._lock:
            self._busy.discard(key)

    def due(self, now: float) -> list[tuple[str, int, list[tuple[int, int]]]]:
        """(device, boot, ranges) for every stream with news, at most once per interval each (see the class)."""
        out = []
        with self._lock:
            interval = self.interval_s
            if self.max_rate:
                interval = min(self.max_interval_s, max(interval, len(self._news) / self.max_rate))
            self.effective_interval_s = interval
            for stream, since in list(self._news.items()):
                if now - self._told.get(stream, -1e18) < interval and since > 0.0:
                    continue
                s = self._done.get(stream)
                del self._news[stream]
                if s is None:
                    continue
                self._told[stream] = now
                self.untold -= self._untold.pop(stream, 0)
                out.append((stream[0], stream[1], s.ranges()[-MAX_RANGES:]))
        return out

    def gauges(self) -> dict[str, float]:
        with self._lock:
            return {"custody.in_process": float(len(self._busy)), "custody.streams": float(len(self._done)),
                    "custody.streams_with_news": float(len(self._news)), "custody.untold": float(self.untold),
                    "custody.interval_s": round(self.effective_interval_s, 3)}


@dataclass
class _Batch:
    seq: int
    task: str
    payload: bytes
    rows: Counter  # Key -> rows of that device message in this batch
    samples: list[tuple[str, int]]  # (device, sample) of those rows
    sent: float
    attempts: int = 1
    tickets: list = field(default_factory=list)  # label tickets (hub_bridge/label_custody.py) its rows carry
    born: float = 0.0  # first publication (``sent`` moves on with each republication)


@dataclass
class Handoff:
    """Fused batches not yet held durably by a worker. Owned by the dispatcher; acks may come from
    other threads, so every method takes the lock."""

    mode: str  # "worker" | "broker"
    republish_s: float
    republish_max_s: float
    max_batches: int
    on_held: Callable[[Key], None]  # every row of this device message is held downstream
    on_abandon: Callable[[_Batch], None]  # a batch given up (memory bound): its rows are nobody's
    on_label_held: Callable[[object], None] = lambda ticket: None  # a label item this batch carried is held
    _batches: OrderedDict[int, _Batch] = field(default_factory=OrderedDict)
    _outstanding: Counter = field(default_factory=Counter)  # Key -> rows not yet held
    _lock: threading.Lock = field(default_factory=threading.Lock)
    republished: int = 0
    abandoned: int = 0

    def expect(self, key: Key, rows: int) -> None:
        """A device message contributed ``rows`` new rows to fusion (0: held already, nothing to wait for)."""
        if rows <= 0:
            self.on_held(key)
            return
        with self._lock:
            self._outstanding[key] += rows

    def emitted(self, seq: int, task: str, payload: bytes, rows: Counter, samples: list[tuple[str, int]],
                now: float, tickets: list | None = None) -> None:
        if not rows and not tickets:
            return  # label-only rows of labels without custody: nothing to hold
        with self._lock:
            self._batches[seq] = _Batch(seq, task, payload, rows, samples, now, tickets=list(tickets or ()), born=now)
            over = len(self._batches) - self.max_batches
            victims = [self._batches.popitem(last=False)[1] for _ in range(max(0, over))]
            for v in victims:
                for key in v.rows:
                    self._outstanding.pop(key, None)  # its other batches no longer complete it
            self.abandoned += len(victims)
        for v in victims:
            self.on_abandon(v)

    def broker_acked(self, seq: int) -> None:
        if self.mode == "broker":
            self._held([seq])

    def worker_acked(self, ranges: Iterable[tuple[int, int]]) -> int:
        seqs = []
        with self._lock:
            for lo, hi in ranges:
                if hi - lo > 100_000:
                    continue  # nobody acks that many batches at once: ignore rather than loop
                seqs.extend(s for s in range(lo, hi + 1) if s in self._batches)
        self._held(seqs)
        return len(seqs)

    def _held(self, seqs: list[int]) -> None:
        done: list[Key] = []
        tickets: list = []
        with self._lock:
            for seq in seqs:
                b = self._batches.pop(seq, None)
                if b is None:
                    continue
                tickets += b.tickets
                for key, n in b.rows.items():
                    if key not in self._outstanding:
                        continue
                    self._outstanding[key] -= n
                    if self._outstanding[key] <= 0:
                        del self._outstanding[key]
                        done.append(key)
        for key in done:
            self.on_held(key)
        for t in tickets:
            self.on_label_held(t)

    def due(self, now: float) -> list[_Batch]:
        """Batches no worker acknowledged in time, to publish again (doubling the wait each time)."""
        if self.mode != "worker":
            return []
        out = []
        with self._lock:
            for b in self._batches.values():
                wait = min(self.republish_max_s, self.republish_s * 2 ** (b.attempts - 1))
                if now - b.sent >= wait:
                    b.sent, b.attempts = now, b.attempts + 1
                    out.append(b)
            self.republished += len(out)
        return out

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest batch has waited for a worker's acknowledgement (0 when none waits)."""
        with self._lock:
            first = next(iter(self._batches.values()), None)
        return max(0.0, now - first.born) if first is not None else 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._batches)
