"""The worker's staged rollouts wired to the broker: what feeds the judges, and the operator's commands.

One :class:`~.rollout.RolloutManager` and :class:`~.field.FieldCounts` per task. The network thread
only counts (births, telemetry, model states) and queues verified commands; the answering thread
counts escalations; everything that decides runs in :meth:`Rollouts.step` on the learner thread.

Operator commands (``rollout/{task}/cmd``) must be signed with the model-signing key, the same
trust as a model, and are refused with a typed reason and counter otherwise
(``rollout.cmd.rejected.<reason>``): ``empty``, ``oversized``, ``not_json``, ``unknown_schema_version``,
``wrong_kind``, ``bad_signature``, ``invalid``, ``other_task``, ``stale`` (older than 5 minutes or from
the future: a captured command replayed later), plus the broker's ACL, which lets no device publish there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud_worker.answering.answer import Answered
from cloud_worker.config import WorkerConfig
from cloud_worker.registry import Entry, Registry
from cloud_worker.releasing.publisher import Publisher
from cloud_worker.rollout.field import FieldCounts
from cloud_worker.rollout.manager import Ports, RolloutManager
from shared.process.bounded import DropOldestQueue
from shared.process.counters import Counters
from shared.protocol import schemas
from shared.protocol.containers import FusedBatch
from shared.protocol.schemas import ModelState, RolloutCommand, Status, Telemetry
from shared.protocol.topics import Kind, Topics
from shared.protocol.wire import Decoded, Receiver
from shared.security.envelope import json_object
from shared.security.signing import SignatureError, verify_obj
from shared.transport.mqtt import Message, MqttClient

log = logging.getLogger(__name__)

CMD_MAX_AGE_S = 300.0
CMD_MAX_SKEW_S = 60.0


class CommandRejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def verify_command(raw: bytes, *, task: str, public: Ed25519PublicKey, now: float) -> RolloutCommand:
    """A rollout command as received: signature on the parsed JSON first, then schema, task and age."""
    obj = json_object(raw, max_bytes=schemas.MAX_JSON_BYTES, what="rollout command", error=CommandRejected)
    if obj.get("schema") != schemas.SCHEMA_VERSION:
        raise CommandRejected("unknown_schema_version", repr(obj.get("schema"))[:50])
    if obj.get("kind") != "rollout_cmd":
        raise CommandRejected("wrong_kind", repr(obj.get("kind"))[:50])
    try:
        verify_obj(obj, public)
    except (SignatureError, schemas.SchemaError) as exc:
        raise CommandRejected("bad_signature", str(exc)) from None
    try:
        cmd = RolloutCommand.model_validate(obj)
    except ValueError as exc:
        raise CommandRejected("invalid", str(exc).splitlines()[0][:200]) from None
    if cmd.task != task:
        raise CommandRejected("other_task", f"command for {cmd.task!r} on {task!r}'s topic")
    if not now - CMD_MAX_AGE_S <= cmd.ts <= now + CMD_MAX_SKEW_S:
        raise CommandRejected("stale", f"made at {cmd.ts:.0f}, now {now:.0f}")
    if cmd.action == "pin" and (cmd.group is None or cmd.version is None):
        raise CommandRejected("invalid", "pin needs a group and a version")
    if cmd.action == "unpin" and cmd.group is None:
        raise CommandRejected("invalid", "unpin needs a group")
    return cmd


class Rollouts:
    def __init__(self, cfg: WorkerConfig, tasks: list[str], topics: Topics, registry: Registry, counters: Counters,
                 client: MqttClient, publisher: Publisher, signer, restore: Callable[[str, int], Entry]) -> None:
        self.cfg = cfg
        self.topics = topics
        self.counters = counters
        self.client = client
        self.public = signer.public or signer.private.public_key()
        self.fields = {t: FieldCounts(t) for t in tasks}
        self.cmds: DropOldestQueue[RolloutCommand] = DropOldestQueue(64)
        self.managers: dict[str, RolloutManager] = {}
        publisher.protect = self.protected
        for task, fc in self.fields.items():
            ports = Ports(publish_fleet=publisher.publish, publish_version=publisher.publish_version,
                          clear_version=lambda t, v, a: publisher.clear_version(t, v, artifact=a),
                          send=lambda topic, payload, retain: publisher.send(topic, payload, retain=retain),
                          restore=lambda v, t=task: restore(t, v))
            self.managers[task] = RolloutManager(task, cfg.rollout, registry, topics, signer.private, fc, ports,
                                                 counters=counters)

    def load(self, fleet: dict[str, int]) -> None:
        for task, m in self.managers.items():
            m.load(fleet.get(task, 0))

    def subscribe(self) -> None:
        t = self.topics
        recv = Receiver(t, self._on_value, self.counters)
        for flt in (t.statuses(), t.edge_kind(Kind.TELEMETRY), t.edge_kind(Kind.MODEL_STATE)):
            self.client.subscribe(flt, 0 if "telemetry" in str(flt) else 1, recv)
        for task in self.managers:
            self.client.subscribe(t.rollout_cmd(task), 1, lambda msg, task=task: self._on_cmd(task, msg))
        self.client.on_connect_hooks.append(self._connected)

    def _connected(self, session_present: bool) -> None:
        # The broker may have lost retained releases and version manifests (a crash before its autosave).
        for m in self.managers.values():
            m.need_republish = True

    # ---- network thread: count, or queue --------------------------------------------------
    def _on_value(self, d: Decoded, msg: Message) -> None:
        v = d.value
        for task, fc in self.fields.items():
            if isinstance(v, Status):
                fc.status(v)
            elif isinstance(v, Telemetry):
                fc.telemetry(v)
            elif isinstance(v, ModelState) and v.task == task:
                fc.model_state(v)

    def _on_cmd(self, task: str, msg: Message) -> None:
        try:
            cmd = verify_command(msg.payload, task=task, public=self.public, now=time.time())
        except CommandRejected as exc:
            self.counters.inc(f"rollout.cmd.rejected.{exc.reason}")
            log.warning("rollout command on %s refused: %s", msg.topic, exc)
            return
        self.cmds.put(cmd)

    # ---- answering thread -------------------------------------------------------------------
    def answered(self, a: Answered) -> None:
        fc = self.fields.get(a.task)
        if fc is not None and a.versions is not None and a.edge is not None:
            fc.escalations(a.versions, a.edge, a.labels)

    # ---- learner thread ---------------------------------------------------------------------
    def fused(self, task: str, fb: FusedBatch) -> None:
        fc = self.fields.get(task)
        if fc is not None:
            fc.fused(fb)

    def route(self, entry: Entry) -> bool:
        """Publish ``entry`` as a release if the rollout wants it; False: the caller sends it to the fleet."""
        m = self.managers.get(entry.record["task"])
        if m is None or not m.wants(entry):
            return False
        m.start(entry)
        return True

    def on_fleet(self, entry: Entry) -> None:
        m = self.managers.get(entry.record["task"])
        if m is not None:
            m.on_fleet(entry)

    def holds(self, task: str) -> bool:
        """While a release is being judged, no new candidate: the experiment must not change under it."""
        m = self.managers.get(task)
        return m is not None and (m.active or m.pending is not None)

    def next_is_bad(self, task: str) -> bool:
        m = self.managers.get(task)
        return m is not None and m.next_is_bad()

    def step(self) -> None:
        for cmd in self.cmds.drain():
            m = self.managers.get(cmd.task)
            if m is not None:
                m.command(cmd)
        for m in self.managers.values():
            m.tick()
            if m.need_republish and self.client.connected:
                m.republish()

    def fleet_version(self, task: str) -> int:
        m = self.managers.get(task)
        return m.fleet if m is not None else 0

    def protected(self, task: str) -> set[int]:
        m = self.managers.get(task)
        return m.protected() if m is not None else set()

    def gauges(self) -> dict[str, Any]:
        out: dict[str, float] = {}
        for m in self.managers.values():
            out.update(m.gauges())
        return out
