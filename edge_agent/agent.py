"""The edge agent: capture -> preprocess -> ONNX -> decide -> publish, with store and forward and hot swap.

Threads (each with one job, none blocking another):

- capture: pulls samples from the source into a bounded queue (drop-oldest or lossless);
- infer: preprocess, inference, decision, feature batching, pending escalations' deadlines;
- sender: drains the SQLite outbox to the broker, rows deleted on PUBACK;
- models: verifies manifests, fetches artifacts, builds and checks sessions, swaps;
- telemetry: periodic metrics;
- the MQTT network thread runs the small handlers (replies, commands, manifest hand-off).

The model in use is one reference (``self.active``) read once per sample, so a swap lands
between two samples and never interrupts one.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import deque

import numpy as np

from edge_agent import sources
from edge_agent.batching import FeatureBatcher, Rows
from edge_agent.capture import EOF_MARK, FrameQueue
from edge_agent.config import AgentConfig
from edge_agent.escalations import Escalations, Pending
from edge_agent.lifecycle import ModelLifecycle
from edge_agent.meter import Meter
from edge_agent.model import LoadedModel
from edge_agent.outbox import Outbox, Row
from edge_agent.rawuplink import RawUplink
from edge_agent.sender import OutboxSender
from edge_agent.settings import DecisionControl
from edge_agent.snapshots import Snapshots, is_frame
from edge_agent.store import ModelStore
from shared.model.model_contract import sample_id
from shared.process.counters import Counters
from shared.process.sdnotify import SdNotifier
from shared.process.service import Service
from shared.protocol import homeassistant as ha
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch, HardSample
from shared.protocol.rawsample import RawRows
from shared.protocol.schemas import Command, Custody, ModelState, Prediction, Status, Telemetry
from shared.protocol.topics import Topics
from shared.protocol.wire import Decoded, Receiver
from shared.security.signing import load_public
from shared.transport.mqtt import Message, MqttClient, MqttError, Will

log = logging.getLogger(__name__)

CAPTURE_JOIN_S = 1.0  # how long stop() waits for a capture thread that may be stuck inside OpenCV


def _versions() -> dict[str, str]:
    import onnxruntime

    from edge_agent import __version__

    return {"lepton": __version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


class Agent(Service):
    name = "edge-agent"

    def __init__(self, cfg: AgentConfig, *, counters: Counters | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.topics = Topics(cfg.root)
        self.counters = counters or Counters()
        self.notifier = SdNotifier.from_env()
        d = cfg.decision
        self.decisions = DecisionControl(d)
        self.escalations = Escalations(d, cfg.task, self.counters, self._finalize, self._classes)
        self.meter = Meter(cfg.telemetry)
        self.batcher = FeatureBatcher(cfg.features.batch_size, cfg.features.max_age_s)
        self.raw_uplink = RawUplink(self.counters)
        # Alerts and escalations beyond one in-flight window are waiting for the link: snapshots wait
        # for none of them (the event a snapshot belongs to is itself in the outbox, so "any" is too strict).
        self.snapshots = Snapshots(cfg.snapshots, self.counters, self._publish_snapshot,
                                   backlog=lambda: max(0, self.outbox.unsent(("event", "hard")) - cfg.outbox.inflight))
        self._current: tuple[int, np.ndarray] | None = None  # the sample process() is deciding, for its snapshot
        self.models = ModelLifecycle(cfg, self.topics, self.counters, self.stopping, probe=lambda: self._last_raw,
                                     on_swap=self._on_swap, report=self._publish_model_state)
        self.outbox = Outbox(cfg.outbox_path, max_bytes=cfg.outbox.max_bytes, ttl_s=dict(cfg.outbox.ttl_s),
                             counters=self.counters)
        self.frames_q = FrameQueue(cfg.capture.queue_size, cfg.capture.mode == "lossless", self.stopping)
        self.client: MqttClient | None = None
        self.sender: OutboxSender | None = None
        self.boot = 0
        self.source_done = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        self._last_raw: np.ndarray | None = None
        self._model_state: bytes | None = None
        self._stale_reported: int | None = None

    # ---- lifecycle --------------------------------------------------------------
    def _start(self) -> None:
        cfg = self.cfg
        public_key = load_public(cfg.model.public_key) if cfg.model.public_key is not None else None
        sources.check_source(cfg.source)  # a missing folder or file: one line and a non-zero exit
        self.models.store.open()  # fail before opening anything else
        self.boot = self.models.store.next_boot(int(time.time()))
        self.outbox.open()
        t = self.topics
        will = Will(t.status(cfg.device), self._status_payload("offline"))
        self.client = MqttClient(cfg.mqtt, client_id=cfg.device, will=will, birth=self._birth,
                                 counters=self.counters)
        ob = cfg.outbox
        self.sender = OutboxSender(self.outbox, self.client, inflight=ob.inflight, counters=self.counters,
                                   on_sent=self._on_sent, custody=ob.custody, custody_timeout_s=ob.custody_timeout_s,
                                   custody_timeout_max_s=ob.custody_timeout_max_s)
        self.client.on_connect_hooks.append(self._on_connect)
        # `systemctl status lepton-agent` shows whether and why the broker is out of reach.
        self.client.report.hooks.append(lambda line: self.notifier.status(f"broker: {line}"))
        self.client.on_disconnect_hooks.append(self.sender.connection_changed)
        self.models.open(self.client, public_key)
        # The release first: a retained manifest that arrives after it is judged by it.
        self.client.subscribe(t.release(cfg.task), 1, self.models.offer_release)
        self.client.subscribe(t.manifest(cfg.task), 1, self.models.offer)
        self.client.subscribe(t.reply(cfg.device), 1, Receiver(t, self.escalations.on_reply, self.counters))
        self.client.subscribe(t.cmds(cfg.device), 1, Receiver(t, self._on_cmd, self.counters))
        self.client.subscribe(t.custody(cfg.device), 0, Receiver(t, self._on_custody, self.counters))
        if public_key is None:  # the config allows it only with model.allow_unsigned = true
            log.warning("model.allow_unsigned = true: this agent runs ANY model published on %s, signed or not; "
                        "set model.public_key for a real device", t.manifest(cfg.task))
        self.client.start()
        self.notifier.ready()  # state opened, config valid: what follows is ordinary running
        self.spawn(self.sender.run, "sender")
        self.spawn(self.models.run, "models")
        self.spawn(self._infer_loop, "infer")
        self.spawn(self._capture_loop, "capture")
        self.spawn(self._telemetry_loop, "telemetry")

    def _stop(self) -> None:
        self.notifier.stopping()
        for th in list(self._threads):
            if th.name.endswith("capture"):
                # OpenCV may be blocked in open/read (a silent stream, up to its timeouts): the
                # thread holds nothing to flush, so stop without it (a daemon, it ends with us).
                th.join(CAPTURE_JOIN_S)
                if th.is_alive():
                    log.warning("capture is blocked in the source; stopping without it")
                    self._threads.remove(th)
            elif th.name.endswith(("infer", "models", "telemetry")):
                th.join(10)
        if self.sender is None or self.client is None:  # start() failed before connecting
            self.outbox.close()
            return
        # Give what is queued and not yet sent a moment to leave; whatever does not stays on disk for next
        # time. Rows already sent and awaiting custody stay anyway: waiting for them cost every stop 2 s.
        deadline = time.monotonic() + 2.0
        while (self.client.connected and self.outbox.depth() > self.outbox.awaiting_custody()
               and time.monotonic() < deadline):
            self.sender.notify()
            time.sleep(0.02)
        self.sender.stop()
        for th in self._threads:
            if th.name.endswith("sender"):
                th.join(10)
        self.client.stop(death=(self.topics.status(self.cfg.device), self._status_payload("offline")))
        self.outbox.close()

    # ---- capture ----------------------------------------------------------------
    def _capture_loop(self) -> None:
        if self.cfg.capture.start_after_model:
            while not self.model_ready.wait(0.1):
                if self.stopping.is_set():
                    return
        try:
            for s in sources.open_source(self.cfg.source, self.cfg.task, self.stopping, self.counters):
                if not self.frames_q.put(s):
                    return
        except sources.SourceUnavailable as exc:  # can never work: stop the agent, exit non-zero
            self.counters.inc("capture.unavailable")
            log.error("source unavailable: %s", exc)
            self.errors.append(exc)
            self.stopping.set()
            return
        except Exception:  # a broken camera or file must not take the agent (and its outbox) down
            self.counters.inc("capture.errors")
            log.exception("source failed")
        if not self.stopping.is_set():
            self.frames_q.put_eof()

    # ---- inference ---------------------------------------------------------------
    def _infer_loop(self) -> None:
        while not self.stopping.is_set():
            # The systemd watchdog is fed from the loop that does the work: a wedged inference
            # (not a lost broker, which the outbox rides out) gets the agent restarted.
            self.notifier.ping()
            timeout = 0.1
            nd = self.escalations.next_deadline()
            if nd is not None:
                timeout = max(0.0, min(timeout, nd - time.time()))
            item = self.frames_q.get(timeout)
            if item is EOF_MARK:
                self._flush_features()
                self.source_done.set()
                if self.cfg.capture.exit_on_eof:
                    # Let pending escalations run to their deadline first.
                    while len(self.escalations) and not self.stopping.wait(0.05):
                        self.escalations.expire(time.time())
                    self.stopping.set()
            elif item is not None:
                self.process(item)  # type: ignore[arg-type]
            now = time.time()
            self.escalations.expire(now)
            rows = self.batcher.due(now)
            if rows is not None:
                self._send_features(rows)
        self._flush_features()
        self.escalations.at_stop()

    def process(self, s: sources.Sample) -> None:
        """One sample through the pipeline (the infer thread's body; public for benchmarks)."""
        model = self.active  # read once: a swap lands between two samples
        sid = sample_id(self.boot, self.meter.sample(s.raw))
        self._last_raw = s.raw
        if model is None:
            self.counters.inc("frames.no_model")
            return
        try:
            x = model.pipeline(s.raw)
        except Exception as exc:  # any frame the steps cannot handle (wrong shape, dtype, NaN)
            self.counters.inc("frames.bad_input")
            log.debug("bad input %s: %s", s.ref, exc)
            return
        t0 = time.perf_counter()
        try:
            feat, probs = model.run(x)
        except Exception as exc:  # onnxruntime errors: count, keep serving
            self.counters.inc("frames.inference_error")
            log.warning("inference failed on %s: %s", s.ref, str(exc)[:200])
            return
        self.meter.inference(time.perf_counter() - t0)
        p = np.asarray(probs[0], dtype=np.float32)
        f = np.asarray(feat[0], dtype=np.float32)
        dec = self.decisions.decider.decide(p)
        self.counters.inc(f"decision.{dec.reason}")
        cloud = model.manifest.cloud
        if self.cfg.features.enabled:
            raw_row = self.raw_uplink.feature_row(cloud, s.raw)
            for rows in self.batcher.add(sid, f, p, s.ts, model.version, time.time(), raw=raw_row):
                self._send_features(rows)
        info = Pending(sid, dec.label, dec.confidence, model.version, s.ref[:256], s.ts, dec.escalate)
        if dec.escalate and self._escalate(info, s.raw, x, f, p, model.manifest.cloud):
            return
        info.escalated = False
        self._current = (sid, s.raw)
        try:
            self._finalize(info, "edge", dec.label, dec.confidence)
        finally:
            self._current = None

    @property
    def seq_issued(self) -> int:
        """How many (boot, seq) keys this boot has handed out: one per QoS 1 message (event, hard, feat)."""
        with self._lock:
            return self._seq

    def _next_seq(self) -> int:
        with self._lock:
            s = self._seq
            self._seq += 1
            return s

    def _escalate(self, info: Pending, sample: np.ndarray, x: np.ndarray, feat: np.ndarray, probs: np.ndarray,
                  cloud) -> bool:
        cfg = self.cfg
        seq = self._next_seq()
        # The sample is the heavy part (a frame is tens of KB): one escalation in raw_every carries it,
        # for the cloud to answer at full resolution and learn from; it answers the others from features.
        raw: RawRows | None = None
        carries = self.decisions.carries_input()
        if not carries:
            self.counters.inc("escalation.features_only")
        elif cloud is not None:  # the serving manifest's contract says how the sample travels
            raw = self.raw_uplink.escalation(cloud, sample)
        if carries and cloud is None:  # a manifest without a cloud contract: the edge's input, as before
            x = x.astype(np.float16) if cfg.features.float16 else x
        else:
            x = np.zeros((1, 0), np.float16)
        hs = HardSample(cfg.device, cfg.stream, cfg.task, self.boot, seq, info.model_version,
                        np.array([info.sample], np.int64), x, feat[None], probs[None], np.array([info.ts]), raw)
        self.escalations.register(info)
        if raw is not None and raw.encoding == "jpeg" and is_frame(sample):
            self.snapshots.keep(info.sample, raw.item(0).tobytes())
        ok = self.outbox.put("hard", str(self.topics.hard(cfg.device, cfg.stream)), hs.encode(), qos=1,
                             boot=self.boot, seq=seq, response_topic=str(self.topics.reply(cfg.device)),
                             correlation=str(info.sample).encode())
        if not ok:
            self.escalations.cancel(info.sample)
            self.snapshots.forget(info.sample)
            return False
        self.meter.escalation()
        self.sender.notify()  # type: ignore[union-attr]
        return True

    def _finalize(self, info: Pending, source: str, label: int, confidence: float) -> None:
        """Publish the one prediction of a sample, and its event if it is an alert."""
        cfg = self.cfg
        conf = min(1.0, max(0.0, float(confidence)))
        pred = Prediction(device=cfg.device, stream=cfg.stream, task=cfg.task, sample=info.sample, label=label,
                          confidence=conf, source=source, escalated=info.escalated,  # type: ignore[arg-type]
                          model_version=info.model_version, ref=info.ref, ts=info.ts)
        self._publish_direct(self.topics.pred(cfg.device, cfg.stream), schemas.dumps(pred), "pred")
        model = self.active
        classes = model.classes if model is not None else ()
        alerts = cfg.events.alert_classes if cfg.events.alert_classes is not None else (
            model.alert_classes if model is not None else ())
        if label < len(classes) and classes[label] in alerts and conf >= cfg.events.min_confidence:
            seq = self._next_seq()
            ev = schemas.Event(device=cfg.device, stream=cfg.stream, task=cfg.task, sample=info.sample, label=label,
                               name=classes[label], confidence=conf, boot=self.boot, seq=seq, ts=info.ts)
            if self.outbox.put("event", str(self.topics.event(cfg.device, cfg.stream)), schemas.dumps(ev), qos=1,
                               boot=self.boot, seq=seq):
                self.sender.notify()  # type: ignore[union-attr]
            cur = self._current
            frame = cur[1] if cur is not None and cur[0] == info.sample else None
            self.snapshots.on_event(ha.class_slugs(tuple(classes))[classes[label]], info.sample, frame)
        else:
            self.snapshots.forget(info.sample)

    def _publish_snapshot(self, cls: str, jpeg: bytes) -> bool:
        cfg = self.cfg
        return self._publish_direct(self.topics.snapshot(cfg.device, cfg.stream, cls), jpeg, "snapshot", qos=0,
                                    retain=True)

    def _publish_direct(self, topic, payload: bytes, what: str, qos: int = 0, retain: bool = False) -> bool:
        try:
            self.client.publish(topic, payload, qos=qos, retain=retain)  # type: ignore[union-attr]
        except MqttError as exc:
            self.counters.inc(f"{what}.not_sent.{exc.reason}")
            return False
        self.meter.uplink(len(payload))
        self.counters.inc(f"{what}.sent")
        self.counters.inc(f"uplink_bytes.{what}", len(payload))
        return True

    def _on_sent(self, row: Row) -> None:
        self.meter.uplink(len(row.payload))
        self.counters.inc(f"uplink_bytes.{row.cls}", len(row.payload))

    def _send_features(self, rows: Rows) -> None:
        cfg = self.cfg
        seq = self._next_seq()
        fb = FeatureBatch(cfg.device, cfg.stream, cfg.task, self.boot, seq, rows.model_version, rows.sample,
                          rows.feat, rows.scores, rows.ts, None if rows.raw is None else RawRows.tensor(rows.raw))
        if self.outbox.put("feat", str(self.topics.feat(cfg.device, cfg.stream)),
                           fb.encode(float16=cfg.features.float16), qos=1, boot=self.boot, seq=seq):
            self.sender.notify()  # type: ignore[union-attr]

    def _flush_features(self) -> None:
        rows = self.batcher.flush()
        if rows is not None:
            self._send_features(rows)

    # ---- custody and commands (network thread: keep short) --------------------------
    def _on_custody(self, d: Decoded, msg: Message) -> None:
        c: Custody = d.value
        if not isinstance(c, Custody):
            self.counters.inc("custody.rejected.wrong_kind")
            return
        self.counters.inc("custody.received")
        self.sender.release(c.boot, list(c.ranges))  # type: ignore[union-attr]

    def _on_cmd(self, d: Decoded, msg: Message) -> None:
        cmd: Command = d.value
        if not isinstance(cmd, Command) or d.topic.name != cmd.name:
            self.counters.inc("cmd.rejected.name_mismatch")
            return
        self.counters.inc(f"cmd.{cmd.name}")
        if cmd.name == "rebirth":
            self._republish()
        elif cmd.name == "rollback":
            self.models.request_rollback()
        elif cmd.name == "thresholds":
            try:
                self.decisions.command(cmd.args)
            except (ValueError, TypeError) as exc:
                self.counters.inc("cmd.rejected.bad_args")
                log.warning("thresholds command refused: %s", exc)

    # ---- status ----------------------------------------------------------------------
    def _status_payload(self, state: str) -> bytes:
        m = self.active
        return schemas.dumps(Status(device=self.cfg.device, state=state, boot=self.boot,  # type: ignore[arg-type]
                                    versions=_versions(), models={self.cfg.task: m.version} if m else {},
                                    groups=list(self.cfg.groups), ring=round(self.models.gate.ring, 4),
                                    ts=time.time()))

    def _birth(self):
        return self.topics.status(self.cfg.device), self._status_payload("online")

    def _on_connect(self, session_present: bool) -> None:
        self.sender.connection_changed()  # type: ignore[union-attr]
        self._announce_home_assistant()  # a broker that lost its retained store gets them back
        if self._model_state is not None:
            self._publish_direct(self.topics.model_state(self.cfg.device), self._model_state, "model_state", qos=1,
                                 retain=True)

    def _republish(self) -> None:
        self._publish_direct(self.topics.status(self.cfg.device), self._status_payload("online"), "status", qos=1,
                             retain=True)
        if self._model_state is not None:
            self._publish_direct(self.topics.model_state(self.cfg.device), self._model_state, "model_state", qos=1,
                                 retain=True)

    def _on_swap(self, model: LoadedModel) -> None:
        self.decisions.from_manifest(model.manifest.decision)
        self.meter.new_model()  # latency in telemetry is the serving model's (a staged rollout compares them)
        # The retained status names the model in use; keep it true.
        self._publish_direct(self.topics.status(self.cfg.device), self._status_payload("online"), "status", qos=1,
                             retain=True)
        self._announce_home_assistant()  # classes, alert classes and sw_version come with the model

    def _home_assistant_entities(self) -> ha.DeviceEntities | None:
        cfg, m = self.cfg, self.active
        if not cfg.home_assistant.enabled or m is None:
            return None
        alerts = cfg.events.alert_classes if cfg.events.alert_classes is not None else m.alert_classes
        image = m.manifest.cloud is not None and m.manifest.cloud.encoding == "jpeg"
        h = cfg.home_assistant
        return ha.DeviceEntities(cfg.device, cfg.task, cfg.stream, tuple(m.classes), tuple(alerts), m.version,
                                 image=image and cfg.snapshots.enabled, hold_s=h.hold_s, prefix=h.prefix)

    def _announce_home_assistant(self) -> None:
        e = self._home_assistant_entities()
        if e is None:
            return
        for topic, payload in ha.discovery(e, self.topics):
            self._publish_direct(topic, payload, "home_assistant", qos=1, retain=True)

    def _publish_model_state(self, state: str, offered: int | None = None, reason: str = "") -> None:
        m = self.active
        payload = schemas.dumps(ModelState(device=self.cfg.device, task=self.cfg.task, state=state,  # type: ignore
                                           version=m.version if m else 0, offered=offered, reason=reason[:512],
                                           ts=time.time()))
        self._model_state = payload
        self._publish_direct(self.topics.model_state(self.cfg.device), payload, "model_state", qos=1, retain=True)

    # ---- telemetry ----------------------------------------------------------------------
    def telemetry(self) -> Telemetry:
        r = self.meter.read()
        return Telemetry(device=self.cfg.device, boot=self.boot, ts=time.time(), fps=r.fps,
                         latency_ms_p50=r.latency_ms_p50, latency_ms_p99=r.latency_ms_p99,
                         uplink_bytes=r.uplink_bytes, raw_bytes=r.raw_bytes, outbox_depth=self.outbox.depth(),
                         escalation_ratio=r.escalation_ratio, frames=r.frames,
                         dropped_frames=self.frames_q.dropped, counters=self.counters.snapshot(),
                         models={self.cfg.task: m.version} if (m := self.active) is not None else {})

    def _telemetry_loop(self) -> None:
        while not self.stopping.wait(self.cfg.telemetry.interval_s):
            payload = schemas.dumps(self.telemetry())
            topic = self.topics.telemetry(self.cfg.device)
            if not self._publish_direct(topic, payload, "telemetry"):
                # Offline: keep it (lowest priority, dropped first when the outbox is full). Telemetry
                # takes no seq: the QoS 1 classes' seqs stay gap-free, so a gap downstream means loss.
                self.outbox.put("telemetry", str(topic), payload, qos=0, boot=self.boot, seq=-1)
            self._check_stale()

    def _check_stale(self) -> None:
        m = self.active
        if m is not None and m.manifest.expires <= time.time() and self._stale_reported != m.version:
            self._stale_reported = m.version
            self.counters.inc("model.stale")
            log.warning("model v%d: manifest expired; serving it until a newer one arrives", m.version)
            self._publish_model_state("stale", reason="serving model's manifest has expired")

    # ---- helpers for CLIs and tests -------------------------------------------------------
    def _classes(self) -> tuple[str, ...]:
        m = self.active
        return m.classes if m is not None else ()

    @property
    def decider(self):
        return self.decisions.decider

    @property
    def active(self) -> LoadedModel | None:
        return self.models.active

    @property
    def swaps(self) -> deque[tuple[float, int]]:
        return self.models.swaps

    @property
    def store(self) -> ModelStore:
        return self.models.store

    @property
    def model_ready(self) -> threading.Event:
        return self.models.ready

    def wait_model(self, timeout: float) -> bool:
        return self.models.ready.wait(timeout)

