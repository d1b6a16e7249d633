"""The worker service: answer escalations, learn from fused batches, publish models, report status.

Threads: the MQTT network thread only enqueues (bounded, drop-oldest, counted); ``answer``
drains the escalation queue and runs one forward per task per drain; ``learn`` consumes
fused batches and answered hard samples, checks the triggers and retrains; ``status``
refreshes the retained ServiceStatus. Training never blocks answering.

Every ``ack_interval_s`` the learner saves its buffer (rows and the set of rows learned from)
and only then acknowledges the fused batches it ingested on hub/ack/{bridge}: the bridge
republishes a batch until some worker holds it on disk (docs/PROTOCOL.md, Delivery guarantee).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cloud_worker.answering import answer as ans
from cloud_worker.config import WorkerConfig
from cloud_worker.learning import relabel
from cloud_worker.learning.learner import Learner, Signer
from cloud_worker.models.train import Interrupted, configure_torch, pick_device
from cloud_worker.registry import Registry
from cloud_worker.releasing.export import ExportError
from cloud_worker.releasing.publisher import Publisher, PublishError
from cloud_worker.rollout.wiring import Rollouts
from lepton_tasks import load_task, require_live
from shared.process.bounded import DropOldestQueue
from shared.process.counters import Counters
from shared.process.service import Service
from shared.protocol.codec import CodecError
from shared.protocol.containers import FusedBatch
from shared.protocol.dedup import SeqSet
from shared.protocol.schemas import MAX_RANGES, BatchAck, ServiceStatus, dumps
from shared.protocol.topics import Kind, Topic, TopicError, Topics
from shared.protocol.wire import WireError, decode
from shared.security.signing import load_private, load_public
from shared.transport.mqtt import Message, MqttClient, MqttError, Will

log = logging.getLogger(__name__)


def load_signer(cfg: WorkerConfig) -> Signer:
    if not cfg.signing_key.exists():
        raise FileNotFoundError(f"signing key {cfg.signing_key} does not exist: create it with `lepton keys init`")
    return Signer(load_private(cfg.signing_key), load_public(cfg.public_key) if cfg.public_key else None)


def _answering(lr: Learner) -> ans.Model:
    """What the answering thread uses of a learner, read once per drain (models are swapped whole)."""
    cloud = lr.cloud
    return ans.Model(cloud.name if cloud else f"{lr.task.name}-features", cloud.predict if cloud else None,
                     lr.prepare, lr.defer, lr.predict_features, lr.defer_features)


class WorkerService(Service):
    name = "worker"

    def __init__(self, cfg: WorkerConfig, *, counters: Counters | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.counters = counters or Counters()
        self.topics = Topics(cfg.root)
        # By the spec's name: a task given by its spec's path is still `name` on every topic.
        self.tasks = {task.name: task for task in (require_live(load_task(ref)) for ref in cfg.tasks)}
        self.registry = Registry(cfg.registry)
        self.learners: dict[str, Learner] = {}
        # (arrival time, message): the answer-latency histogram counts the wait in this queue too
        self.infer_q: DropOldestQueue[tuple[float, Message]] = DropOldestQueue(cfg.infer.queue)
        self.learn_q: DropOldestQueue[tuple[str, Any]] = DropOldestQueue(cfg.batch_queue)
        self.client: MqttClient | None = None
        self.publisher: Publisher | None = None
        self.rollouts: Rollouts | None = None  # staged rollout of new versions (cfg.rollout.enabled)
        self._republish = False
        self.started_at = 0.0
        self._unacked: dict[tuple[str, int, str], SeqSet] = {}  # (bridge, boot, task) -> batch seqs ingested
        self._last_ack = 0.0
        self.metrics = None  # the /metrics endpoint (cfg.metrics.enabled), and its latency histogram:
        self._latency_hist = None

    # ---- lifecycle --------------------------------------------------------------
    def _status(self, state: str) -> bytes:
        gauges: dict[str, float] = {"infer_queue": float(len(self.infer_q)), "learn_queue": float(len(self.learn_q)),
                                    "uptime_s": max(0.0, time.time() - self.started_at)}
        for lr in list(self.learners.values()):
            gauges.update(lr.gauges())
        if self.rollouts is not None:
            gauges.update(self.rollouts.gauges())
        counters = {**self.counters.snapshot(), "infer.dropped": self.infer_q.dropped,
                    "learn.dropped": self.learn_q.dropped}
        return dumps(ServiceStatus(service="worker", id=self.cfg.worker_id, state=state, ts=time.time(),
                                   counters=counters, gauges=gauges))

    def _start(self) -> None:
        cfg = self.cfg
        self.started_at = time.time()
        if cfg.metrics.enabled:  # first: a port already taken fails the start before anything connects
            from cloud_worker.metrics import worker_endpoint

            self.metrics, self._latency_hist = worker_endpoint(self)
            self.metrics.start()
        configure_torch(cfg.training.threads)
        device = pick_device(cfg.torch_device)
        # The private key is needed only where models are made: a pure answering worker on
        # another host runs without it.
        missing = [t for t in self.tasks if not self.registry.versions(t)]
        signer = load_signer(cfg) if cfg.learn or (cfg.bootstrap_missing and missing) else None
        status_topic = self.topics.cloud_status(cfg.worker_id)
        offline = ServiceStatus(service="worker", id=cfg.worker_id, state="offline", ts=0.0)
        self.client = MqttClient(cfg.mqtt, client_id=f"lepton-worker-{cfg.worker_id}",
                                 will=Will(status_topic, dumps(offline)),
                                 birth=lambda: (status_topic, self._status("online")), counters=self.counters)
        self.publisher = Publisher(self.client, self.topics, self.registry, timeout=cfg.export.publish_timeout_s,
                                   keep=cfg.export.keep_artifacts, abort=self.stopping)
        self.client.on_connect_hooks.append(self._on_connect)
        self.client.start()
        if not self.client.wait_connected(cfg.export.publish_timeout_s):
            log.warning("worker: broker not reachable yet (%s); continuing, will publish on connect",
                        self.client.last_connect_error)
        for name, task in self.tasks.items():
            lr = Learner(task, cfg, self.registry, signer, self.topics, device=device, counters=self.counters,
                         publish=self._publish, stop=self.stopping, background=True)
            try:
                loaded = lr.load()
            except Interrupted:  # stopped while loading (its feature head is refitted): nothing changed on disk
                self.counters.inc("learn.interrupted")
                log.info("%s: stopping while loading; nothing changed", name)
                return
            if not loaded:
                if not cfg.bootstrap_missing:
                    raise RuntimeError(f"task {name!r} has no model in {cfg.registry} and bootstrap_missing is off")
                try:
                    lr.bootstrap()
                except Interrupted:  # stopped while training v1: nothing registered, a clean exit
                    self.counters.inc("learn.interrupted")
                    log.info("%s: stopping while training v1; nothing registered", name)
                    return
            self.learners[name] = lr
        if cfg.learn and cfg.rollout.enabled and signer is not None:
            self.rollouts = Rollouts(cfg, list(self.tasks), self.topics, self.registry, self.counters, self.client,
                                     self.publisher, signer,
                                     lambda task, v: self.learners[task].republish_as_new(v, "rollback"))
            self.rollouts.load({name: lr.version for name, lr in self.learners.items()})
            self.rollouts.subscribe()
        self._republish = cfg.republish_on_start
        for name in self.tasks:
            if cfg.answer:
                self.client.subscribe(self.topics.hub_infers(name).shared(cfg.share_group), 1, self._on_infer)
            if cfg.learn:
                self.client.subscribe(self.topics.hub_batches(name).shared(cfg.share_group), 1, self._on_batch)
                # Corrections go to every worker (no $share): any of them may hold the old label.
                self.client.subscribe(self.topics.hub_relabels(name), 1, self._on_relabel)
        self.spawn(self._answer_loop, "answer")
        self.spawn(self._learn_loop, "learn")
        self.spawn(self._status_loop, "status")

    def _stop(self) -> None:
        # The learner saves its buffer and acknowledges what it holds on its way out: let it, so
        # the death message carries final counters and nothing held goes unacknowledged.
        for th in self._threads:
            if th.name.endswith(("answer", "learn")):
                th.join(30)
        for lr in self.learners.values():
            lr.close()
        if self.client is not None:
            self.client.stop(death=(self.topics.cloud_status(self.cfg.worker_id), self._status("offline")))
        if self.metrics is not None:
            self.metrics.stop()

    # ---- network thread: enqueue only -----------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        self._republish = self.cfg.republish_on_start

    def _on_infer(self, msg: Message) -> None:
        if self.infer_q.put((time.monotonic(), msg)) is not None:
            self.counters.inc("infer.dropped_oldest")

    def _on_batch(self, msg: Message) -> None:
        if self.learn_q.put(("fused", msg)) is not None:
            self.counters.inc("learn.dropped_oldest")

    def _on_relabel(self, msg: Message) -> None:
        if self.learn_q.put(("relabel", msg)) is not None:
            self.counters.inc("learn.dropped_oldest")

    def _ingest_relabel(self, msg: Message) -> None:
        """hub/relabel/{task}: a correction, applied on the learner thread (it owns the stores)."""
        try:
            lb = decode(self.topics, msg.topic, msg.payload).value
        except WireError as exc:
            self.counters.inc(f"learn.rejected.relabel.{exc.reason}")
            return
        lr = self.learners.get(lb.task)
        if lr is None or not lb.supersedes:
            self.counters.inc("learn.rejected.relabel.unexpected")
            return
        for item in lb.items:
            if item.label < lr.n_classes:
                relabel.apply(lr, (lb.device, item.sample), item.label)
            else:
                self.counters.inc("learn.rejected.relabel.bad_label")

    # ---- publishing -----------------------------------------------------------
    def _publish(self, entry) -> None:
        assert self.publisher is not None
        if self.rollouts is not None and self.rollouts.route(entry):
            return  # a release: its own topic and stages, not the fleet's manifest
        try:
            self.publisher.publish(entry)
            log.info("published %s v%d", entry.record["task"], entry.version)
            if self.rollouts is not None:
                self.rollouts.on_fleet(entry)
        except PublishError as exc:
            # Registered but not on the broker: republished on the next connect / learner wake.
            self.counters.inc("publish.failed")
            self._republish = True
            log.warning("publishing %s v%d failed: %s", entry.record["task"], entry.version, exc)

    def _republish_latest(self) -> None:
        self._republish = False
        for name in self.tasks:
            latest = self.registry.latest(name)
            fleet = self.rollouts.fleet_version(name) if self.rollouts is not None else 0
            if fleet and latest is not None and fleet != latest.version:
                latest = self.registry.get(name, fleet)  # mid-release the fleet runs control, not the newest
            if latest is not None:
                self._publish(latest)

    # ---- threads --------------------------------------------------------------
    def _answer_loop(self) -> None:
        assert self.client is not None
        c = self.counters
        while not self.stopping.is_set():
            first = self.infer_q.get(timeout=0.2)
            if first is None:
                continue
            arrived, batch = zip(*[first, *self.infer_q.drain()], strict=True)
            batch = list(batch)
            models = {n: _answering(lr) for n, lr in self.learners.items()}
            try:
                out = ans.answer(batch, self.topics, self.tasks, models, self.cfg.worker_id,
                                 max_batch=self.cfg.infer.max_batch)
            except Exception:  # e.g. a model that fails on this batch: count it, keep answering
                c.inc("infer.errors", len(batch))
                log.exception("answering %d escalations failed", len(batch))
                continue
            c.inc("infer.requests", len(batch))
            c.inc("infer.batches")
            for reason, detail in out.rejected:
                c.inc(f"infer.rejected.{reason}")
                log.debug("rejected escalation (%s): %s", reason, detail)
            for r in out.replies:
                try:
                    self.client.publish(r.topic, r.payload, qos=1, correlation_data=r.correlation)
                    c.inc("infer.replies")
                except MqttError as exc:
                    c.inc(f"infer.reply_failed.{exc.reason}")
            if self._latency_hist is not None:
                done = time.monotonic()
                for t in arrived:
                    self._latency_hist.observe(done - t)
            if self.rollouts is not None:
                for a in out.answered:
                    self.rollouts.answered(a)
            if self.cfg.learn:
                for a in out.answered:
                    if self.learn_q.put(("hard", a)) is not None:
                        c.inc("learn.dropped_oldest")

    def _cloud_step(self) -> None:
        """The cloud model trains on its own thread: take a finished fit, start the first one (or a
        refitted classifier after a restart), and a refresh when new labels came."""
        for lr in self.learners.values():
            lr.poll_cloud()
            if lr.ensure_cloud():
                self.counters.inc("learn.cloud_fitted")
            elif self.cfg.learn:
                lr.refresh_cloud()

    def _learn_loop(self) -> None:
        c = self.counters
        while not self.stopping.is_set():
            item = self.learn_q.get(timeout=0.5)
            if self._republish:
                self._republish_latest()
            self._ingest([item, *self.learn_q.drain()] if item is not None else [])
            try:
                self._cloud_step()
            except Interrupted:  # stopping while the feature head refits: what is held is kept
                c.inc("learn.interrupted")
                break
            if not self.cfg.learn:
                continue
            if self.rollouts is not None:
                self.rollouts.step()
            for lr in self.learners.values():
                if lr.sync() and lr.deployed is not None:
                    if not lr.deployed.record.get("published"):
                        self._publish(lr.deployed)  # registered by `models promote --no-publish`
                    elif self.rollouts is not None:
                        self.rollouts.on_fleet(lr.deployed)  # published by `models promote`
                if self.rollouts is not None and self.rollouts.holds(lr.task.name):
                    self._ack_held()
                    continue
                trigger = lr.due()
                if trigger is None:
                    self._ack_held()
                    continue
                c.inc(f"learn.trigger.{trigger}")
                bad = self.rollouts is not None and self.rollouts.next_is_bad(lr.task.name)
                try:
                    lr.retrain(trigger, label_noise=bad, force_release=bad)
                except Interrupted:  # stopping: the half-trained candidate is dropped, what is held is kept
                    c.inc("learn.interrupted")
                    log.info("%s: stopping in the middle of a retrain; nothing published", lr.task.name)
                    break
                except ExportError as exc:
                    # Loud (log, counter, decision log) but not fatal: answering goes on.
                    c.inc("learn.export_failed")
                    log.error("%s: export failed, nothing published: %s", lr.task.name, exc)
                    self.registry.log_decision(lr.task.name, {"event": "export_failed", "trigger": trigger,
                                                              "published": False, "why": str(exc)})
                lr.save_buffer()
            self._ack_held()
        if self.cfg.learn:
            # What already arrived is taken in before the last save and ack, for a bounded time (a long
            # retrain leaves a backlog): a batch not taken in is not acknowledged, and comes again.
            left = self.learn_q.drain()
            deadline = time.monotonic() + self.cfg.stop_ingest_s
            while left and time.monotonic() < deadline:
                self._ingest(left[:8])
                left = left[8:]
            if left:
                c.inc("learn.left_on_stop", len(left))
            for lr in self.learners.values():  # on this thread: it owns the buffers
                lr.save_buffer()
            self._ack_held(force=True)

    def _ingest(self, items: list) -> None:
        for kind, payload in items:
            try:
                if kind == "relabel":
                    self._ingest_relabel(payload)
                    continue
                if kind == "hard":
                    lr = self.learners.get(payload.task)
                    if lr is not None:
                        lr.ingest_answered(payload.keys, payload.versions, payload.labels, payload.conf, payload.raw,
                                           payload.edge_x, payload.cloud_x)
                    continue
                self._ingest_fused(payload)
            except Exception:  # one batch must not stop learning (it is counted and logged)
                self.counters.inc(f"learn.errors.{kind}")
                log.exception("learner: %s item failed", kind)

    def _ack_held(self, force: bool = False) -> None:
        """Save what was ingested, then tell each bridge which of its batches are now held on disk."""
        now = time.monotonic()
        if not self._unacked or (not force and now - self._last_ack < self.cfg.ack_interval_s):
            return
        self._last_ack = now
        try:
            for lr in self.learners.values():
                if lr.dirty:
                    lr.save_buffer()
        except OSError as exc:  # nothing acknowledged: the bridges send those batches again
            self.counters.inc("learn.save_failed")
            log.error("saving the learning buffer failed: %s", exc)
            return
        assert self.client is not None
        pending, self._unacked = self._unacked, {}
        for (bridge, boot, task), seqs in pending.items():
            ranges = seqs.ranges()
            for i in range(0, len(ranges), MAX_RANGES):
                ack = BatchAck(bridge=bridge, boot=boot, task=task, ranges=ranges[i:i + MAX_RANGES],
                               worker=self.cfg.worker_id, ts=time.time())
                try:
                    self.client.publish(self.topics.hub_ack(bridge), dumps(ack), qos=1)
                    self.counters.inc("learn.batches_acked", sum(hi - lo + 1 for lo, hi in ack.ranges))
                except MqttError as exc:  # the bridge republishes; this worker dedups the copy
                    self.counters.inc(f"learn.ack_failed.{exc.reason}")

    def _ingest_fused(self, msg: Message) -> None:
        c = self.counters
        try:
            parsed = self.topics.parse(msg.topic)
            if parsed.kind != Kind.HUB_BATCH:
                raise TopicError(msg.topic)
        except TopicError:
            c.inc("learn.rejected.bad_topic")
            return
        lr = self.learners.get(parsed.task or "")
        if lr is None:
            c.inc("learn.rejected.unknown_task")
            return
        try:
            fb = FusedBatch.decode(msg.payload)
        except CodecError as exc:
            c.inc(f"learn.rejected.codec.{exc.reason}")
            return
        # Decoded: whatever happens next is this batch's final fate here, so it is acknowledged.
        self._unacked.setdefault((fb.bridge, fb.boot, parsed.task or fb.task), SeqSet()).add(fb.seq)
        if fb.task != lr.task.name:
            c.inc("learn.rejected.task_mismatch")
            return
        c.inc("learn.batches")
        if self.rollouts is not None:
            self.rollouts.fused(lr.task.name, fb)
        try:
            lr.ingest_fused(fb)
        except (ValueError, IndexError) as exc:  # decodable but inconsistent: count it, keep serving
            c.inc("learn.rejected.invalid")
            log.warning("fused batch %s/%d rejected: %s", fb.bridge, fb.seq, exc)

    def _status_loop(self) -> None:
        assert self.client is not None
        topic: Topic = self.topics.cloud_status(self.cfg.worker_id)
        while not self.stopping.wait(self.cfg.status_interval_s):
            try:
                self.client.publish(topic, self._status("online"), qos=1, retain=True)
            except MqttError:
                self.counters.inc("status.publish_failed")
