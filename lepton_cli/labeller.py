"""A simulated person correcting the system: publishes ground truth for some predictions, late.

It watches ``pred/`` from replaying agents (whose ``ref`` is ``<task>:<dataset index>``),
looks the true class up in the packaged dataset, and for a configurable fraction of
samples publishes a ``Labels`` message after a delay. Pure decision logic lives in
:class:`LabelPlan`; the thread only moves messages.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from dataclasses import dataclass, field

from lepton_tasks import TaskSpecError, load_task
from lepton_tasks.refs import parse_ref
from shared.process.counters import Counters
from shared.process.service import Service
from shared.protocol import schemas
from shared.protocol.topics import Kind, Topics
from shared.stores.label_outbox import LabelOutbox, LabelSender
from shared.transport.mqtt import Message, MqttClient, MqttSettings


@dataclass(order=True)
class _Due:
    at: float
    device: str = field(compare=False)
    stream: str = field(compare=False)
    task: str = field(compare=False)
    sample: int = field(compare=False)
    label: int = field(compare=False)


class LabelPlan:
    """Decides which samples get labelled and when; deterministic for a given seed."""

    def __init__(self, fraction: float, delay: float, seed: int = 0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        self.fraction = fraction
        self.delay = delay
        self._rng = random.Random(seed)
        self._heap: list[_Due] = []

    def offer(self, pred: schemas.Prediction, now: float) -> bool:
        parsed = parse_ref(pred.ref)
        if parsed is None or self._rng.random() >= self.fraction:
            return False
        task, idx = parsed
        try:
            y = load_task(task).dataset().y
        except TaskSpecError:  # a task this labeller cannot load: no ground truth to give
            return False
        if not 0 <= idx < len(y):
            return False
        truth = int(y[idx])
        heapq.heappush(self._heap, _Due(now + self.delay, pred.device, pred.stream, task, pred.sample, truth))
        return True

    def due(self, now: float) -> list[_Due]:
        out = []
        while self._heap and self._heap[0].at <= now:
            out.append(heapq.heappop(self._heap))
        return out


class Labeller(Service):
    name = "labeller"

    def __init__(self, mqtt: MqttSettings, topics: Topics, fraction: float = 0.3, delay: float = 2.0,
                 seed: int = 0, publisher: str = "labeller_1", custody_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.topics = topics
        self.counters = Counters()
        self.plan = LabelPlan(fraction, delay, seed)
        self._lock = threading.Lock()
        self.client = MqttClient(mqtt, client_id="lepton-labeller", counters=self.counters)
        # Every label is kept until the bridge gives custody (shared/stores/label_outbox.py).
        self.sender = LabelSender(self.client, topics, LabelOutbox(publisher, timeout_s=custody_timeout_s,
                                                                   counters=self.counters))

    def _start(self) -> None:
        self.client.subscribe(self.topics.edge_kind(Kind.PRED), 0, self._on_pred)
        self.client.start()
        self.spawn(self._loop, "publish")

    def _stop(self) -> None:
        self.client.stop()

    def _on_pred(self, m: Message) -> None:
        try:
            pred = schemas.loads(m.payload, schemas.Prediction)
        except schemas.SchemaError as exc:
            self.counters.inc(f"rejected.pred.{exc.reason}")
            return
        with self._lock:
            if self.plan.offer(pred, time.monotonic()):
                self.counters.inc("labels.planned")

    def _loop(self) -> None:
        last_pump = 0.0
        while not self.stopping.wait(0.1):
            if time.monotonic() - last_pump >= 1.0:
                last_pump = time.monotonic()
                self.sender.pump()
            with self._lock:
                due = self.plan.due(time.monotonic())
            groups: dict[tuple[str, str, str], list[schemas.LabelItem]] = {}
            for d in due:
                groups.setdefault((d.device, d.stream, d.task), []).append(
                    schemas.LabelItem(sample=d.sample, label=d.label))
            for (device, stream, task), items in groups.items():
                msg = schemas.Labels(device=device, stream=stream, task=task, items=items, source="labeller",
                                     ts=time.time())
                self.sender.send(msg)  # sent now, or by pump() once the broker is back
