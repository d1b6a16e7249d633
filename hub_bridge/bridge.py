"""HubBridge: consume the edge and label trees, route by priority, fuse, forward.

Threads: two MQTT network threads (``hi``: events, escalations, labels, statuses; ``bulk``:
features, telemetry; one durable session each, so a feature backlog at the broker never
queues in front of an alert), one dispatcher, one status publisher. The network threads
classify by topic (cached), check size, and queue; an alert (event, escalation) with nothing
of its class or above waiting is served on the hi network thread at once (take_now), so it
never waits for the dispatcher. The dispatcher serves the rest of the scheduler by priority.
Everything decodes through ``shared.protocol.wire.decode_parsed``.

Custody (hub_bridge/custody.py): every device message that reaches its final fate here, or
whose rows a worker holds durably, is reported back to its device on edge/{device}/custody,
so agents keep each QoS 1 message until then and a broker crash loses nothing.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import threading
import time
from collections import deque

import numpy as np

from hub_bridge.acks import Acker, AckToken
from hub_bridge.batch_out import BatchOut
from hub_bridge.classes import (
    CLASS_NAMES,
    CLASS_OF_KIND,
    ESCALATION,
    EVENT,
    FEATURE,
    LABEL,
    STATUS,
)
from hub_bridge.config import BridgeConfig
from hub_bridge.context import ContextBuilder
from hub_bridge.custody import NEW, CustodyLedger, Handoff, Key
from hub_bridge.custody_notes import CustodyNotes
from hub_bridge.device_board import DeviceBoard
from hub_bridge.fusion import Fuser
from hub_bridge.gc_policy import GcPolicy
from hub_bridge.label_custody import LabelCustody
from hub_bridge.label_route import LabelRefs, LabelRouter
from hub_bridge.scheduler import Item, PriorityScheduler
from shared.process.counters import Counters
from shared.process.service import Service
from shared.protocol import codec, schemas, strictjson, wire
from shared.protocol.topics import Filter, Kind, TopicError, Topics
from shared.transport.mqtt import (
    Message,
    MqttClient,
    MqttError,
    NotConnected,
    PacketTooLarge,
    PublishRefused,
    Will,
)

log = logging.getLogger(__name__)

HI, BULK = 0, 1
_ROUTE_CACHE_MAX = 200_000
_ACK_EVERY_S = 0.002
_POLL_EVERY_S = 0.01
def _label_custody_payload(publisher: str, boot: int, ranges: list[tuple[int, int]], ts: float) -> bytes:
    return schemas.dumps(schemas.LabelCustody(publisher=publisher, boot=boot, ranges=ranges, ts=ts))


_TELEMETRY_KEYS = ("fps", "latency_ms_p50", "latency_ms_p99", "outbox_depth", "escalation_ratio", "dropped_frames")


class HubBridge(Service):
    name = "bridge"

    def __init__(self, cfg: BridgeConfig, *, clock=time.monotonic) -> None:
        super().__init__()
        self.cfg = cfg
        self.t = Topics(cfg.root)
        self.clock = clock
        self.counters = Counters()
        self.dev_counters = Counters()  # "<what>.<class>.<device>"
        pol = cfg.classes.ordered()
        self._ttl = [p.ttl for p in pol]
        self._max_bytes = [p.max_bytes for p in pol]
        self.sched = PriorityScheduler([p.capacity for p in pol], [p.share for p in pol], [p.overflow for p in pol],
                                       on_discard=self._on_discard, clock=clock, urgent=LABEL)
        self.context = ContextBuilder(list(cfg.fusion.context), cfg.fusion.devices, cfg.fusion.meta_default)
        # Milliseconds: (id, boot, seq) names a fused batch across restarts, for the workers' acks.
        self.boot = int(time.time() * 1000)
        cc = cfg.custody
        self.ledger = CustodyLedger(cfg.dedup_streams, cc.interval_s, cc.max_rate, cc.max_interval_s)
        self.labels = LabelCustody(CustodyLedger(cfg.dedup_streams, cc.interval_s, cc.max_rate, cc.max_interval_s),
                                   clock)
        self.handoff = Handoff(cc.features, cc.republish_s, cc.republish_max_s, cc.max_unacked_batches,
                               on_held=lambda key: self.ledger.finish(key, self.clock()),
                               on_abandon=self._abandoned, on_label_held=self.labels.release)
        self.clients: list[MqttClient] = []
        self.acker = Acker([self._ack_hi, self._ack_bulk])
        self.label_refs = LabelRefs(self.labels, self.acker)
        self.fuser = Fuser(cfg.fusion, cfg.id, self.context, counters=self.counters, release=self.label_refs.release,
                           boot=self.boot)
        self.label_router = LabelRouter(self.labels, self.label_refs, self.fuser, self.acker, self.counters, self.t,
                                        lambda: self.clients[HI])
        self.devices_online: dict[str, int] = {}
        self.delivered = [0] * 5
        self._delivered_lock = threading.Lock()  # the hi network thread delivers alerts too (take_now)
        self._dispatcher: threading.Thread | None = None
        self._gc_entered = False
        self._gc_pause_ms = 0.0
        self._lat = [deque(maxlen=cfg.latency_samples) for _ in range(5)]
        self._routes: dict[str, tuple[int, object]] = {}
        self.out = BatchOut(self.t, self.handoff, self.acker, self.counters, ttl_s=self._ttl[FEATURE],
                            client=lambda: self.clients[BULK] if self.clients else None, clock=clock)
        self.notes = CustodyNotes(self.t, self.ledger, self.counters)
        self.label_notes = CustodyNotes(self.t, self.labels.ledger, self.counters, topic_of=self.t.label_custody,
                                        payload_of=_label_custody_payload, counter="label_custody")
        self._rate_prev: tuple[float, list[int]] | None = None
        self._status_lock = threading.Lock()
        self.devices = DeviceBoard(cfg.metrics.max_devices)
        self.metrics = None  # the /metrics endpoint (cfg.metrics.enabled), and its latency histogram:
        self._latency_hist = None

    # ---- lifecycle ----------------------------------------------------------
    def _mqtt_settings(self, suffix: str):
        m = self.cfg.mqtt
        durable = self.cfg.session_expiry > 0
        creds = {}
        if suffix == "bulk" and self.cfg.bulk_username is not None:
            creds = {"username": self.cfg.bulk_username,
                     "password": self.cfg.bulk_password if self.cfg.bulk_password is not None else m.password}
        return m.model_copy(update={
            **creds,
            "client_id": f"{m.client_id or self.cfg.id}-{suffix}", "clean_start": not durable,
            "session_expiry": self.cfg.session_expiry, "manual_ack": True,
            "receive_maximum": self.cfg.receive_maximum, "max_queued": max(m.max_queued, 65535),
            "read_pause_s": self.cfg.bulk_read_pause_s if suffix == "bulk" else m.read_pause_s})

    def _filters(self) -> tuple[list[tuple[Filter, bool]], list[tuple[Filter, bool]]]:
        t = self.t
        hi = [(t.edge_kind(Kind.EVENT), True), (t.edge_kind(Kind.HARD), True),
              # Labels go to every replica: only the one holding the row can join it (docs/BRIDGE.md).
              (t.labels(), False), (t.statuses(), False)]
        bulk = [(t.edge_kind(Kind.FEAT), True), (t.edge_kind(Kind.TELEMETRY), True),
                (t.edge_kind(Kind.MODEL_STATE), True)]
        if self.cfg.consume_predictions:
            bulk.append((t.edge_kind(Kind.PRED), True))
        return hi, bulk

    def _start(self) -> None:
        sys.setswitchinterval(self.cfg.switch_interval_s)
        if self.cfg.metrics.enabled:  # first: a port already taken fails the start before anything connects
            from hub_bridge.metrics import bridge_endpoint

            self.metrics, self._latency_hist = bridge_endpoint(self)
            self.metrics.start()
        status_topic = self.t.hub_status()
        hi = MqttClient(self._mqtt_settings("hi"), client_id=f"{self.cfg.id}-hi",
                        will=Will(status_topic, self._status_payload("offline")),
                        birth=lambda: (status_topic, self._status_payload("online")))
        bulk = MqttClient(self._mqtt_settings("bulk"), client_id=f"{self.cfg.id}-bulk")
        self.clients = [hi, bulk]
        for conn, (client, subs) in enumerate(zip(self.clients, self._filters(), strict=True)):
            client.on_connect_hooks.append(lambda present, c=conn: self.acker.new_connection(c))
            client.on_read_hooks.append(self.sched.nudge)
            handler = self._on_hi if conn == HI else self._on_bulk
            for flt, shareable in subs:
                if shareable and self.cfg.share_group:
                    flt = flt.shared(self.cfg.share_group)
                client.subscribe(flt, qos=1, handler=handler)
        hi.subscribe(Filter(str(self.t.hub_ack(self.cfg.id))), qos=1, handler=self._on_worker_ack)
        for c in self.clients:
            c.start()
        self._dispatcher = self.spawn(self._dispatch_loop, "dispatch")
        self.spawn(self._status_loop, "status")
        GcPolicy.enter(self.cfg.gc_freeze, self.cfg.gc_collect_every_s > 0)
        self._gc_entered = True

    def wait_connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(c.wait_connected(max(0.0, deadline - time.monotonic())) for c in self.clients)

    def _stop(self) -> None:
        self.sched.wake()
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(5.0)
        # Send what fusion holds; anything still queued stays unacked and is redelivered next start.
        self.out.send(self.fuser.poll(self.clock(), flush=True))
        deadline = time.monotonic() + 2.0
        while len(self.out) and time.monotonic() < deadline:
            if not self.out.flush():
                time.sleep(0.05)
        self.acker.flush()
        if self._gc_entered:
            GcPolicy.leave()
            self._gc_entered = False
        hi = self.clients[HI] if self.clients else None
        if hi is not None:
            hi.stop(death=(self.t.hub_status(), self._status_payload("offline")))
        for c in self.clients[1:]:
            c.stop()
        if self.metrics is not None:
            self.metrics.stop()

    # ---- network threads: classify, size-check, queue -------------------------
    def _ack_hi(self, msgs: list[Message]) -> None:
        self.clients[HI].ack_many(msgs)

    def _ack_bulk(self, msgs: list[Message]) -> None:
        self.clients[BULK].ack_many(msgs)

    def _route(self, topic: str) -> tuple[int, object]:
        r = self._routes.get(topic)
        if r is None:
            try:
                p = self.t.parse(topic)
                cls = CLASS_OF_KIND.get(p.kind)
                r = (cls, p) if cls is not None else (-2, f"{p.kind.value}")
            except TopicError:
                r = (-2, "bad_topic")
            if len(self._routes) > _ROUTE_CACHE_MAX:
                self._routes.clear()
            self._routes[topic] = r
        return r

    def _on_hi(self, msg: Message) -> None:
        self._on_message(msg, HI)

    def _on_bulk(self, msg: Message) -> None:
        self._on_message(msg, BULK)

    def _on_message(self, msg: Message, conn: int) -> None:
        cls, parsed = self._route(msg.topic)
        tok = self.acker.token(msg, conn)
        if cls < 0:
            # Consumed here: acked once counted, whatever happens, so a poison message is never
            # redelivered and never holds one of the connection's receive-maximum slots.
            try:
                if cls == STATUS:
                    self._on_status(msg, parsed)
                else:
                    self.counters.inc(f"ignored.{parsed}")
            finally:
                self.acker.release(tok)
                self.acker.flush()
            return
        device = parsed.device
        if len(msg.payload) > self._max_bytes[cls]:
            self._reject(cls, device, "oversized")
            self.acker.release(tok)
            self.acker.flush()
            return
        now = self.clock()
        ttl = self._ttl[cls]
        if msg.message_expiry is not None and msg.message_expiry < ttl:
            ttl = msg.message_expiry
        item = Item(cls, device, now, now + ttl, (msg, parsed, tok, None))
        if cls < LABEL:
            took = self.sched.take_now(item)
            if took is not False:
                # An alert with nothing of its class or above waiting: served here, now, on this network
                # thread, instead of waking the dispatcher and then this thread again to write it out.
                if took:
                    self._process(item, now)
                self.acker.flush()
                return
        self.sched.put(item)

    def _on_status(self, msg: Message, parsed) -> None:
        try:
            st = wire.decode_parsed(parsed, msg.payload)
        except wire.WireError as exc:
            if exc.reason == "empty":  # retained status cleared
                self.devices_online.pop(parsed.device, None)
                self.devices.forget(parsed.device)
                self.counters.inc("status.cleared")
                return
            self.counters.inc(f"rejected.status.{exc.reason}")
            self.dev_counters.inc(f"rejected.status.{parsed.device}")
            return
        if st.state == "online":
            self.devices_online[st.device] = st.boot
        else:
            self.devices_online.pop(st.device, None)
        self.devices.status(st.device, st.state == "online")
        self.counters.inc(f"status.{st.state}")

    def _on_discard(self, item: Item, reason: str) -> None:
        name = CLASS_NAMES[item.cls]
        self.counters.inc(f"{reason}.{name}")
        self.dev_counters.inc(f"{reason}.{name}.{item.device}")
        if item.cls == LABEL and not item.payload[3]:
            self.labels.settle(item.payload[0].payload)  # shed (counted): its publisher may forget it
        if item.cls in (EVENT, ESCALATION, FEATURE):
            # Shed by policy is a final fate (counted): the device may forget it, or it would send it again.
            admitted = item.payload[3]
            key = admitted[:3] if admitted else self._peek_key(item.cls, item.payload[0], item.device)
            if key is not None:
                if admitted:
                    self.ledger.finish(key, self.clock())
                else:  # never admitted: only if no other copy is in process, whose fate is still open
                    self.ledger.settle(key, self.clock())
        self.acker.release(item.payload[2])

    @staticmethod
    def _peek_key(cls: int, msg: Message, device: str) -> Key | None:
        """(device, boot, seq) from the payload's header alone; None when it has none worth trusting."""
        try:
            if cls == EVENT:
                obj = strictjson.loads(msg.payload)
                boot, seq = obj.get("boot"), obj.get("seq")
                if obj.get("device") != device:
                    return None
            else:
                meta = codec.peek_meta(msg.payload)
                if meta.get("device") != device:
                    return None
                boot, seq = int(meta.get("boot", "-1")), int(meta.get("seq", "-1"))
        except (ValueError, AttributeError):
            return None
        if not (isinstance(boot, int) and isinstance(seq, int) and 0 <= boot < 1 << 62 and 0 <= seq < 1 << 62):
            return None
        return (device, boot, seq)

    def _reject(self, cls: int, device: str | None, reason: str, msg: Message | None = None,
                now: float = 0.0) -> None:
        name = CLASS_NAMES[cls]
        self.counters.inc(f"rejected.{name}.{reason}")
        self.dev_counters.inc(f"rejected.{name}.{device}")
        if msg is not None and cls == LABEL:
            self.labels.settle(msg.payload)  # it would be rejected again: its publisher may forget it
        if msg is not None and device is not None and cls in (EVENT, ESCALATION, FEATURE):
            # Rejected (counted) is a final fate: when the message names itself, its device may forget it
            # instead of sending it again and again.
            key = self._peek_key(cls, msg, device)
            if key is not None:
                self.ledger.settle(key, now)

    # ---- dispatcher -------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        next_sweep = last_ack = next_poll = 0.0
        next_gc = self.clock() + self.cfg.gc_collect_every_s
        while not self.stopping.is_set():
            now = self.clock()
            if now - last_ack >= _ACK_EVERY_S or not len(self.sched):
                # PUBACKs go out in one write per flush: at least every couple of ms, and before idling.
                self.acker.flush()
                last_ack = now
            due = self.fuser.next_due()
            wait = 0.05 if due is None else min(0.05, max(due, next_poll) - now)
            item = self.sched.pop(timeout=max(0.0, wait))
            now = self.clock()
            if item is not None:
                # No yield needed for the alerts: the network threads serve them (take_now) and get the
                # GIL within the switch interval (switch_interval_s) however busy this thread is.
                self._process(item, now)
            sweep = now >= next_sweep
            if sweep or len(self.out) or (due is not None and now >= due and now >= next_poll):
                # Fusion's timers (label_wait, batch_age) are served at most every _POLL_EVERY_S: a row
                # due now leaves up to that much later, and this thread wakes once per interval, not per row.
                self.out.flush()
                self.out.send(self.fuser.poll(now))
                next_poll = now + _POLL_EVERY_S
            if sweep:
                self.sched.sweep()
                next_sweep = now + 0.25
                for b in self.handoff.due(now):
                    self.out.resend(b.task, b.payload, b.seq)
                self.notes.tell(self.clients[BULK] if len(self.clients) > BULK else None, now)
                self.label_notes.tell(self.clients[HI] if self.clients else None, now)
                if self.cfg.gc_collect_every_s and now >= next_gc:
                    next_gc = now + self.cfg.gc_collect_every_s
                    t0 = time.perf_counter()
                    found = gc.collect()
                    self.counters.inc("gc.collections")
                    self.counters.inc("gc.unreachable", found)
                    self._gc_pause_ms = round((time.perf_counter() - t0) * 1e3, 2)

    def _process(self, item: Item, now: float) -> None:
        msg, parsed, tok, _ = item.payload
        cls = item.cls
        try:
            if cls == EVENT:
                done = self._do_event(msg, parsed, now)
            elif cls == ESCALATION:
                done = self._do_escalation(item, msg, parsed, tok, now)
                if done is None:  # waiting for the broker: keep the ack token
                    return
            elif cls == LABEL:
                done = self._do_label(msg, parsed, tok, now)
            elif cls == FEATURE:
                done = self._do_feature(msg, parsed, tok, now)
            else:
                done = self._do_telemetry(msg, parsed)
        except (wire.WireError, schemas.SchemaError, codec.CodecError) as exc:
            self._reject(cls, item.device, exc.reason, msg, now)
            done = False
        except Exception:  # a bug on one message must not stop the bridge
            log.exception("bridge: failed on %s", msg.topic)
            self._reject(cls, item.device, "internal_error", msg, now)
            done = False
        if done:
            self._delivered(cls, self.clock() - item.t_in)
        self.acker.release(tok)

    def _delivered(self, cls: int, latency: float) -> None:
        with self._delivered_lock:
            self.delivered[cls] += 1
        self._lat[cls].append(latency)
        if self._latency_hist is not None:
            self._latency_hist.labels(CLASS_NAMES[cls]).observe(latency)

    def _first_time(self, cls: int, key: Key) -> bool:
        """Admit a device message to processing; a copy is counted (and, if in custody, re-announced)."""
        if self.ledger.admit(key) == NEW:
            return True
        name = CLASS_NAMES[cls]
        self.counters.inc(f"duplicate.{name}")
        self.dev_counters.inc(f"duplicate.{name}.{key[0]}")
        return False

    def _do_event(self, msg: Message, parsed, now: float) -> bool:
        ev = wire.decode_parsed(parsed, msg.payload)
        key = (ev.device, ev.boot, ev.seq)
        if not self._first_time(EVENT, key):
            return False
        self.context.note_event(ev.device, now)
        self.ledger.finish(key, now)  # consumed here: its final fate
        return True

    def _do_escalation(self, item: Item, msg: Message, parsed, tok: AckToken | None, now: float) -> bool | None:
        key = item.payload[3]
        if key is None:  # not a retry of an admitted one
            hs = wire.decode_parsed(parsed, msg.payload)
            key = (hs.device, hs.boot, hs.seq)
            if not self._first_time(ESCALATION, key):
                return False
            task = hs.task
        else:
            task = key[3]
            key = key[:3]
        expiry = max(1, math.ceil(item.deadline - now))
        self.acker.hold(tok)
        try:
            self.clients[HI].publish(self.t.hub_infer(task), msg.payload, qos=1,
                                     response_topic=msg.response_topic, correlation_data=msg.correlation_data,
                                     user_properties=msg.user_properties or None, message_expiry=expiry,
                                     on_ack=lambda rc, tok=tok, key=key: self._infer_acked(rc, tok, key))
        except PacketTooLarge:
            # Larger than the broker takes (the forwarded properties pushed it over): it would be refused
            # on every try, so it is dropped and counted, a final fate that its device may forget.
            self.acker.release(tok)
            self.counters.inc("rejected.escalation.too_large")
            self.dev_counters.inc(f"rejected.escalation.{item.device}")
            self.ledger.finish(key, self.clock())
            return None
        except (NotConnected, PublishRefused):
            self.acker.release(tok)
            self.sched.push_front(Item(item.cls, item.device, item.t_in, item.deadline,
                                       (msg, parsed, tok, (*key, task))))
            self.counters.inc("out.infer_retry")
            if threading.current_thread() is self._dispatcher:
                self.stopping.wait(0.05)  # the dispatcher backs off; a network thread never sleeps
            return None
        self.counters.inc("out.infer")
        self._delivered(ESCALATION, self.clock() - item.t_in)
        self.acker.release(tok)
        return None

    def _infer_acked(self, rc: int, tok: AckToken | None, key: Key) -> None:
        if rc >= 0x80:
            self.counters.inc("out.infer_denied")
        # Forwarded and acknowledged (or refused, counted): the escalation's final fate at the hub.
        # Beyond it the escalation lives only until its deadline (message expiry), by design.
        self.ledger.finish(key, self.clock())
        self.acker.release(tok)
        self.acker.flush()

    def _do_label(self, msg: Message, parsed, tok: AckToken | None, now: float) -> bool:
        return self.label_router.route(wire.decode_parsed(parsed, msg.payload), msg, tok, now)

    def _do_feature(self, msg: Message, parsed, tok: AckToken | None, now: float) -> bool:
        fb = wire.decode_parsed(parsed, msg.payload)
        key = (fb.device, fb.boot, fb.seq)
        if not self._first_time(FEATURE, key):
            return False
        self.handoff.expect(key, self.fuser.add_features(fb, now, tok, self.acker.hold, src=key))
        return True

    def _do_telemetry(self, msg: Message, parsed) -> bool:
        try:
            v = wire.decode_parsed(parsed, msg.payload)
        except wire.WireError as exc:
            if exc.reason == "empty":  # a retained model state cleared: nothing to check
                return True
            raise
        if parsed.kind is Kind.TELEMETRY:
            self.context.note_telemetry(v.device, {k: float(getattr(v, k)) for k in _TELEMETRY_KEYS})
            self.devices.telemetry(v.device, v.fps, v.escalation_ratio, v.outbox_depth, v.models)
        return True

    # ---- custody --------------------------------------------------------------------
    def _on_worker_ack(self, msg: Message) -> None:
        """hub/ack/{id}: a worker holds these batches durably (network thread; Handoff is locked)."""
        try:
            ack = schemas.loads(msg.payload, schemas.BatchAck)
        except schemas.SchemaError as exc:
            self.counters.inc(f"rejected.batch_ack.{exc.reason}")
            return
        if ack.bridge != self.cfg.id or ack.boot != self.boot:
            self.counters.inc("custody.ack_other_boot")  # for an earlier run of this bridge: nothing to do
            return
        self.counters.inc("custody.batches_held", self.handoff.worker_acked(ack.ranges))

    def _abandoned(self, batch) -> None:
        """A fused batch given up (no worker took it, memory bound reached): its devices send again."""
        self.counters.inc("custody.batches_abandoned")
        for key in batch.rows:
            self.ledger.abandon(key)
        for t in batch.tickets:
            self.labels.lose(t)
        self.fuser.forget(batch.samples)

    # ---- status -------------------------------------------------------------------
    def _status_loop(self) -> None:
        while not self.stopping.wait(self.cfg.status_interval):
            self.publish_status()

    def publish_status(self) -> None:
        try:
            self.clients[HI].publish(self.t.hub_status(), self._status_payload("online"), qos=1, retain=True)
        except MqttError as exc:
            self.counters.inc(f"status.publish_failed.{exc.reason}")

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        """Counters and gauges as published in hub/status."""
        with self._status_lock:
            counters = self.counters.snapshot()
            for c, name in enumerate(CLASS_NAMES):
                counters[f"in.{name}"] = self.sched.put_count[c]
                counters[f"delivered.{name}"] = self.delivered[c]
                for what in ("dropped", "expired", "duplicate"):
                    counters.setdefault(f"{what}.{name}", 0)
            counters["dedup.duplicates"] = self.ledger.duplicates
            counters["custody.finished"] = self.ledger.finished
            counters["label_custody.finished"] = self.labels.ledger.finished
            counters["label_custody.lost"] = self.labels.lost
            counters["custody.batches_republished"] = self.handoff.republished
            counters["acks.sent"] = self.acker.acked
            counters["acks.stale"] = self.acker.stale
            for c in self.clients:
                for k, v in c.counters.snapshot().items():
                    counters[k] = counters.get(k, 0) + v
            per_dev = self.dev_counters.snapshot()
            totals: dict[str, int] = {}
            for k, v in per_dev.items():
                if k.startswith(("dropped.", "expired.", "rejected.")):
                    dev = k.rsplit(".", 1)[1]
                    totals[dev] = totals.get(dev, 0) + v
            top = set(sorted(totals, key=totals.get, reverse=True)[: self.cfg.status_top_devices])
            for k, v in per_dev.items():
                if k.rsplit(".", 1)[1] in top:
                    counters[f"device.{k}"] = v
            now = self.clock()
            gauges: dict[str, float] = {"devices_online": float(len(self.devices_online))}
            for c, (d, age) in enumerate(zip(self.sched.depths(), self.sched.oldest_age(), strict=True)):
                name = CLASS_NAMES[c]
                gauges[f"queue.{name}"] = float(d)
                gauges[f"lag_s.{name}"] = round(age, 4)
                lat = list(self._lat[c])
                if lat:
                    p50, p99 = np.percentile(np.asarray(lat), [50, 99])
                    gauges[f"latency_ms_p50.{name}"] = round(float(p50) * 1e3, 3)
                    gauges[f"latency_ms_p99.{name}"] = round(float(p99) * 1e3, 3)
            ins = list(self.sched.put_count)
            if self._rate_prev is not None and now > self._rate_prev[0]:
                dt = now - self._rate_prev[0]
                for c, name in enumerate(CLASS_NAMES):
                    gauges[f"rate_in.{name}"] = round((ins[c] - self._rate_prev[1][c]) / dt, 2)
            self._rate_prev = (now, ins)
            gauges.update(self.fuser.gauges())
            gauges.update(self.ledger.gauges())
            gauges["custody.unacked_batches"] = float(len(self.handoff))
            gauges["out.outbox"] = float(len(self.out))
            gauges["gc.last_pause_ms"] = self._gc_pause_ms
            return counters, gauges

    def _status_payload(self, state: str) -> bytes:
        counters, gauges = self.snapshot()
        return schemas.dumps(schemas.ServiceStatus(service="bridge", id=self.cfg.id, state=state, ts=time.time(),
                                                   counters=counters, gauges=gauges))
