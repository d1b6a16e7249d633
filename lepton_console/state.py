"""What the console knows, from the broker: the label queue, the labels given, the fleet and the models.

:class:`ConsoleState` is fed decoded messages (``shared.protocol.wire.Receiver`` on the console's MQTT client):

- escalations (``edge/+/hard/+``) become queue items, with their raw sample when it came
  (``HardSample.raw``: a JPEG frame or a window), else the edge's preprocessed input, else nothing
  ("features only"); the edge's scores and model version ride along;
- the cloud's replies (``edge/+/reply``) and the final predictions (``edge/+/pred/+``) fill in the
  cloud's answer and the sample's ``ref``; in training mode, confident predictions of a device or
  stream are also queued, at a set rate, for a while;
- labels (``label/+/+``) from anyone take their samples out of the queue (so a sample labelled on
  one console leaves every other console's queue) into the labelled history, and count per class
  (the queue's rarity);
- everything else goes to :class:`lepton_views.fleetview.FleetStats` (the state `lepton monitor` keeps)
  and :class:`lepton_console.fleet.FleetExtras`.

Listeners (the web app's live streams) hear of every change; they are called on the network thread
and must only hand the news on.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lepton_console import ranking
from lepton_console.fleet import FleetExtras
from lepton_console.samples import Shown, from_input, from_jpeg, from_window, placeholder
from lepton_console.snapshots import SnapshotShelf
from lepton_views.fleetview import FleetStats
from shared.process.counters import Counters
from shared.protocol import schemas
from shared.protocol.containers import HardSample
from shared.protocol.topics import Kind
from shared.protocol.wire import Decoded
from shared.transport.mqtt import Message

Listener = Callable[[dict[str, Any]], None]


@dataclass
class Item:
    """One sample someone may label."""

    key: str  # "device:sample"
    device: str
    stream: str
    task: str
    sample: int
    ts: float  # capture time
    model_version: int
    scores: list[float]
    reason: str  # "escalated" | "training mode"
    shown: Shown
    arrived: float = field(default_factory=time.monotonic)
    cloud_label: int | None = None
    cloud_conf: float | None = None
    cloud_defer: bool = False
    cloud_model: str = ""
    final_label: int | None = None
    final_source: str = ""
    ref: str = ""


@dataclass
class Labelled:
    """A label given (by anyone), for the review page."""

    item: Item
    label: int  # -1: none of these / retracted
    by: str
    ts: float


def item_key(device: str, sample: int) -> str:
    return f"{device}:{sample}"


class ConsoleState:
    def __init__(self, *, max_items: int = 5000, max_history: int = 20000, max_sample_bytes: int = 1 << 20,
                 seed: int | None = None) -> None:
        self.max_items = max_items
        self.max_history = max_history
        self.max_sample_bytes = max_sample_bytes
        self.counters = Counters()
        self.fleet = FleetStats()
        self.extras = FleetExtras()
        self.snapshots = SnapshotShelf()
        self.items: OrderedDict[str, Item] = OrderedDict()
        self.history: OrderedDict[str, Labelled] = OrderedDict()
        self.label_counts: Counter[tuple[str, int]] = Counter()
        self.training: dict[str, tuple[float, float]] = {}  # "device" or "device/stream" -> (rate, until unix time)
        self._early: OrderedDict[str, tuple[str, Any]] = OrderedDict()  # replies/preds before their escalation
        self._listeners: list[Listener] = []
        self._rng = random.Random(seed)
        self.lock = threading.RLock()

    # ---- listeners ---------------------------------------------------------------
    def listen(self, fn: Listener) -> None:
        with self.lock:
            self._listeners.append(fn)

    def unlisten(self, fn: Listener) -> None:
        with self.lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _tell(self, event: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:  # a listener's bug must not stop the intake
                self.counters.inc("console.listener_errors")

    # ---- intake --------------------------------------------------------------------
    def on_value(self, d: Decoded, m: Message) -> None:
        k, v = d.topic.kind, d.value
        if k is Kind.SNAPSHOT:  # a picture, not a fleet figure
            self.snapshots.put(d.topic.device, d.topic.stream, d.topic.name, v)
            self._tell({"type": "fleet"})
            return
        if k is not Kind.HARD:
            self.fleet.feed(d, len(m.payload))
        self.extras.feed(d)
        if k is Kind.HARD:
            self._hard(v)
        elif k is Kind.REPLY:
            self._reply(d.topic.device, v)
        elif k is Kind.PRED:
            self._pred(v)
        elif k is Kind.LABEL:
            self._labels(v)
        elif k in (Kind.STATUS, Kind.TELEMETRY, Kind.MODEL_STATE):
            self._tell({"type": "fleet"})
        elif k in (Kind.MANIFEST, Kind.MODEL_VERSION, Kind.CLOUD_STATUS, Kind.RELEASE, Kind.ROLLOUT_EVENT):
            self._tell({"type": "models"})

    def _hard(self, hs: HardSample) -> None:
        scores = np.asarray(hs.scores, np.float32)
        for i in range(len(hs.sample)):
            key = item_key(hs.device, int(hs.sample[i]))
            with self.lock:
                if key in self.items or key in self.history:
                    self.counters.inc("queue.duplicate")
                    continue
            it = Item(key, hs.device, hs.stream, hs.task, int(hs.sample[i]), float(hs.ts[i]), hs.model_version,
                      [round(float(p), 4) for p in scores[i]], "escalated", self._shown(hs, i))
            self._add(it)

    def _shown(self, hs: HardSample, i: int) -> Shown:
        raw = hs.raw
        try:
            if raw is not None and raw.encoding == "jpeg":
                return from_jpeg(bytes(raw.item(i)), self.max_sample_bytes)
            if raw is not None:
                return from_window(raw.item(i), self.max_sample_bytes)
            if hs.x.ndim > 1 and hs.x.shape[1] != 0:
                return from_input(hs.x[i]) if hs.x[i].ndim == 3 else from_window(hs.x[i], self.max_sample_bytes)
        except (ValueError, IndexError) as exc:  # a row the container let through but we cannot show
            return placeholder(f"malformed sample: {exc}")
        return placeholder("features only: this escalation carried no raw sample")

    def _add(self, it: Item) -> None:
        with self.lock:
            early = self._early.pop(it.key, None)
            self.items[it.key] = it
            while len(self.items) > self.max_items:
                self.items.popitem(last=False)
                self.counters.inc("queue.dropped_oldest")
            self.counters.inc(f"queue.in.{it.reason.replace(' ', '_')}")
        if early is not None:
            (self._reply_to if early[0] == "reply" else self._pred_to)(it, early[1])
        self._tell({"type": "queue"})

    def _park(self, key: str, kind: str, v: Any) -> None:
        with self.lock:
            self._early[key] = (kind, v)
            while len(self._early) > 10_000:
                self._early.popitem(last=False)

    def _reply(self, device: str | None, r: schemas.Reply) -> None:
        if device is None:
            return
        key = item_key(device, r.sample)
        with self.lock:
            it = self.items.get(key)
        if it is None:
            self._park(key, "reply", r)
            return
        self._reply_to(it, r)
        self._tell({"type": "queue"})

    @staticmethod
    def _reply_to(it: Item, r: schemas.Reply) -> None:
        it.cloud_label, it.cloud_conf, it.cloud_defer, it.cloud_model = r.label, r.confidence, r.defer, r.model

    @staticmethod
    def _pred_to(it: Item, p: schemas.Prediction) -> None:
        it.final_label, it.final_source, it.ref = p.label, p.source, p.ref

    def _pred(self, p: schemas.Prediction) -> None:
        key = item_key(p.device, p.sample)
        with self.lock:
            it = self.items.get(key)
            known = it is not None or key in self.history
        if it is not None:
            self._pred_to(it, p)
            return
        if p.escalated:
            if not known:
                self._park(key, "pred", p)
            return
        if self._sampled_for_training(p) and not known:
            it = Item(key, p.device, p.stream, p.task, p.sample, p.ts, p.model_version, [], "training mode",
                      placeholder("confident prediction: devices send features only for these"))
            it.final_label, it.final_source, it.ref = p.label, p.source, p.ref
            it.scores = self._one_hot(p)
            self._add(it)

    @staticmethod
    def _one_hot(p: schemas.Prediction) -> list[float]:
        return [round(p.confidence, 4) if c == p.label else 0.0 for c in range(p.label + 1)]

    def _sampled_for_training(self, p: schemas.Prediction) -> bool:
        now = time.time()
        with self.lock:
            for target in (f"{p.device}/{p.stream}", p.device):
                rule = self.training.get(target)
                if rule is not None and rule[1] > now:
                    return self._rng.random() < rule[0]
        return False

    def _labels(self, lb: schemas.Labels) -> None:
        changed = []
        with self.lock:
            for li in lb.items:
                key = item_key(lb.device, li.sample)
                it = self.items.pop(key, None)
                old = self.history.get(key)
                if it is None and old is None:
                    continue
                base = it if it is not None else old.item  # type: ignore[union-attr]
                if old is not None and old.label >= 0:
                    self.label_counts[(base.task, old.label)] -= 1
                if li.label >= 0:
                    self.label_counts[(base.task, li.label)] += 1
                if li.label < 0:  # retracted (an undo, a correction to "none"): unlabelled, so queued again
                    self.history.pop(key, None)
                    self.items[key] = base
                    changed.append(key)
                    continue
                self.history[key] = Labelled(base, li.label, lb.source, lb.ts)
                self.history.move_to_end(key)
                changed.append(key)
            while len(self.history) > self.max_history:
                self.history.popitem(last=False)
        if changed:
            self._tell({"type": "labelled", "keys": changed})

    def apply_labels(self, lb: schemas.Labels) -> None:
        """A label this console just gave: applied now (its echo from the broker changes nothing)."""
        self._labels(lb)

    def none_of_these(self, key: str, by: str) -> bool:
        """Out of the queue without a label (nothing is published: there was no label to give)."""
        with self.lock:
            it = self.items.pop(key, None)
            if it is None:
                return False
            self.history[key] = Labelled(it, -1, by, time.time())
        self._tell({"type": "labelled", "keys": [key]})
        return True

    def restore(self, key: str) -> bool:
        """Undo a "none of these": the sample is queued again."""
        with self.lock:
            old = self.history.get(key)
            if old is None or old.label >= 0:
                return False
            del self.history[key]
            self.items[key] = old.item
        self._tell({"type": "queue"})
        return True

    # ---- queries ---------------------------------------------------------------------
    def classes(self, task: str) -> list[str]:
        m = self.fleet.manifests.get(task)
        return list(m.input.classes) if m is not None else []

    def ranked(self, skipped: set[str] | frozenset = frozenset(), limit: int = 50) -> list[Item]:
        with self.lock:
            items = list(self.items.values())
            counts = dict(self.label_counts)
        return ranking.rank(items, counts, skipped, key=lambda it: it.key)[:limit]

    def get(self, key: str) -> Item | None:
        with self.lock:
            it = self.items.get(key)
            if it is None and key in self.history:
                it = self.history[key].item
            return it

    def set_training(self, target: str, rate: float, seconds: float) -> None:
        with self.lock:
            if rate <= 0 or seconds <= 0:
                self.training.pop(target, None)
            else:
                self.training[target] = (rate, time.time() + seconds)
