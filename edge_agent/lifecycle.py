"""The model lifecycle of one agent: accept a manifest, verify it, fetch the artifact, build, swap, roll back.

Runs on its own thread (``run``), fed by the MQTT handlers through a small drop-oldest job
queue, so verifying and building never stalls inference or the network thread. The model in
use is one reference (``active``) that the inference thread reads once per sample.

What is remembered about a failed offer depends on what failed:

- **the manifest** (signature, schema, task, version, declared size, expiry) is re-checked on
  every delivery; checking is cheap and a retained manifest is redelivered on every reconnect;
- **the artifact** (it never came, it is larger than declared, its sha256 is not the signed one)
  is a failure of a separately published file, not of the signed manifest: the agent keeps
  watching the artifact topic and tries again when *different* bytes arrive there, up to
  ``model.artifact_attempts`` times per version (``model.artifact_retry`` counts them), so
  nobody who can publish a bad artifact can pin a fleet to an old model;
- **the model itself** (its bytes match the signed sha256 but the ONNX guard, onnxruntime, the
  contract or the reference outputs refuse it) is permanent for that (version, sha256): the
  signed manifest vouches for exactly those bytes, and loading them again would fail again.

Under a staged rollout (:mod:`edge_agent.rollout`) the signed release names the version this
device runs: a manifest it does not permit is ignored (``model.ignored.not_in_stage``), and the
target comes from disk when it is kept there (a canary going back to control) or from its own
retained manifest on ``model/{task}/version/{N}`` otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_agent.config import AgentConfig
from edge_agent.model import LoadedModel, ModelRejected, load_model
from edge_agent.rollout import ReleaseGate
from edge_agent.store import ModelStore
from edge_agent.verify import Rejection, check_artifact, parse_manifest
from shared.process.bounded import DropOldestQueue
from shared.process.counters import Counters
from shared.protocol.schemas import Manifest
from shared.protocol.topics import Filter, Topics
from shared.transport.mqtt import Message, MqttClient

log = logging.getLogger(__name__)

# Failures of the separately fetched file, not of what the signature vouches for.
ARTIFACT_FAILURES = {"fetch_timeout", "oversized", "bad_hash"}
# Failures of bytes whose sha256 the signed manifest vouches for: loading them again cannot help.
MODEL_FAILURES = {"load_failed", "onnx_rejected", "onnx_malformed", "onnx_external_data", "contract", "bad_preprocess",
                  "bad_reference", "inference_failed", "reference_mismatch"}

Report = Callable[[str, int | None, str], None]  # (state, offered version, reason) -> a ModelState


def _lower_priority(nice: int) -> None:
    """Make the calling thread nicer (Linux schedules threads individually); best effort."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


@dataclass
class _ArtifactWatch:
    """One artifact topic the agent listens on, with the newest bytes seen there."""

    manifest_raw: bytes
    version: int
    bad: set[str] = field(default_factory=set)  # sha256 of bytes that failed
    attempts: int = 0
    armed: bool = False  # new bytes queue a retry
    latest: bytes | None = None
    latest_sha: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)


class ModelLifecycle:
    def __init__(self, cfg: AgentConfig, topics: Topics, counters: Counters, stopping: threading.Event, *,
                 probe: Callable[[], np.ndarray | None], on_swap: Callable[[LoadedModel], None],
                 report: Report) -> None:
        self.cfg = cfg
        self.topics = topics
        self.counters = counters
        self.stopping = stopping
        self.store = ModelStore(cfg.model_dir, keep=cfg.model.keep_versions)
        self.gate = ReleaseGate(cfg.task, cfg.device, cfg.groups, cfg.model_dir / "release.json", counters)
        self.active: LoadedModel | None = None
        self.ready = threading.Event()
        self.swaps: deque[tuple[float, int]] = deque(maxlen=1000)  # (monotonic time, version), recent
        self.client: MqttClient | None = None
        self.public_key = None
        self._probe = probe
        self._on_swap = on_swap
        self._report = report
        self._jobs: DropOldestQueue[tuple[str, bytes | None]] = DropOldestQueue(16)
        self._bad_models: dict[tuple[int, str], str] = {}
        self._artifacts: dict[str, _ArtifactWatch] = {}  # by artifact topic
        self._version_watch: Filter | None = None  # model/{task}/version/{target}, while the target is missing
        self._lock = threading.Lock()

    # ---- inputs (any thread) ---------------------------------------------------
    def open(self, client: MqttClient, public_key) -> None:
        self.client = client
        self.public_key = public_key
        self.store.open()
        self.gate.open(public_key)
        self._jobs.put(("boot", None))

    def offer(self, msg: Message) -> None:
        """Handler for the retained manifest topic (network thread: only queues)."""
        self._jobs.put(("manifest", msg.payload))

    def offer_release(self, msg: Message) -> None:
        """Handler for the retained release topic (network thread: only queues)."""
        self._jobs.put(("release", msg.payload))

    def request_rollback(self) -> None:
        self._jobs.put(("rollback", None))

    # ---- the lifecycle thread ------------------------------------------------------
    def run(self) -> None:
        _lower_priority(10)  # building a session must not steal the one core from inference
        while not self.stopping.is_set():
            job = self._jobs.get(0.2)
            if job is None:
                continue
            kind, arg = job
            try:
                if kind == "boot":
                    self._load_at_boot()
                    self._apply_target()
                elif kind == "release":
                    self._on_release(arg)  # type: ignore[arg-type]
                elif kind in ("manifest", "retry"):
                    self._accept(arg, self._fetch)  # type: ignore[arg-type]
                elif kind == "rollback":
                    self._rollback()
            except Exception:  # never let one bad model take the updater down
                self.counters.inc("model.errors")
                log.exception("model job %s failed", kind)
        for topic in list(self._artifacts):
            self._unwatch(topic)
        self._watch_version(None)

    def _swap(self, model: LoadedModel) -> None:
        self.active = model
        self.swaps.append((time.monotonic(), model.version))
        self.counters.inc("model.swaps")
        self.ready.set()
        self._on_swap(model)

    def _build(self, data: bytes, m: Manifest, raw: bytes) -> LoadedModel:
        # The input shape comes from the signed manifest: the agent needs no task table of its own.
        shape = tuple(d for d in m.input.tensor.shape[1:] if isinstance(d, int))
        expect = shape if len(shape) == len(m.input.tensor.shape) - 1 else None
        return load_model(data, m, raw, threads=self.cfg.model.intra_op_threads, expect_shape=expect,
                          probe=self._probe())

    def _load_at_boot(self) -> None:
        st = self.store.state
        for version in (st.current, st.previous):
            if version is None:
                continue
            try:
                data, raw = self.store.read(version)
                m = self._trusted(raw)
                check_artifact(data, m)
                model = self._build(data, m, raw)
            except (OSError, Rejection, ModelRejected) as exc:
                self.counters.inc("model.boot_load_failed")
                log.error("stored model v%s unusable: %s", version, exc)
                continue
            if version != st.current:
                self.store.state.current, self.store.state.previous = version, None
                self.store.save()
            self._swap(model)
            self._report("loaded", None, "from disk")
            log.info("serving stored model v%d", version)
            return
        ic = self.cfg.model
        if ic.initial_model is not None and ic.initial_manifest is not None:
            try:
                raw = ic.initial_manifest.read_bytes()
                data = ic.initial_model.read_bytes()
            except OSError as exc:
                self.counters.inc("model.rejected.initial_unreadable")
                log.error("initial model unreadable: %s", exc)
                return
            self._accept(raw, lambda m: data)

    def _trusted(self, raw: bytes) -> Manifest:
        """A stored manifest: re-verified (signature, task), but neither 'newer' nor expiry apply."""
        return parse_manifest(raw, task=self.cfg.task, highest=0, public_key=self.public_key, topics=self.topics,
                              now=0.0, max_artifact_bytes=self.cfg.model.max_artifact_bytes)

    def _accept(self, raw: bytes, get_artifact: Callable[[Manifest], bytes]) -> None:
        cur = self.active
        m: Manifest | None = None
        data: bytes | None = None
        try:
            m = parse_manifest(raw, task=self.cfg.task, highest=self.store.state.highest, public_key=self.public_key,
                               topics=self.topics, now=time.time(),
                               max_artifact_bytes=self.cfg.model.max_artifact_bytes, allowed=self.gate.target)
            if cur is not None and m.version == cur.version:
                self.counters.inc("model.manifest.current")  # the release let it past "not newer": it serves
                return
            if not self.gate.permits(m.version):
                self.counters.inc("model.ignored.not_in_stage")
                log.debug("manifest v%d is not for this device's stage (%s runs v%s)", m.version,
                          self.gate.describe(), self.gate.target)
                return
            known = self._bad_models.get((m.version, m.sha256))
            if known is not None:
                self.counters.inc("model.ignored.known_bad")
                log.debug("model v%d was rejected before (%s); ignored", m.version, known)
                return
            data = get_artifact(m)
            check_artifact(data, m)
            model = self._build(data, m, raw)
        except (Rejection, ModelRejected) as exc:
            version = getattr(exc, "version", None)
            if version is None and m is not None:
                version = m.version
            self._rejected(exc.reason, exc.detail, version, cur)
            if m is not None:
                if exc.reason in ARTIFACT_FAILURES:
                    self._note_bad_artifact(m, raw, data)
                else:
                    if exc.reason in MODEL_FAILURES:
                        self._bad_models[(m.version, m.sha256)] = exc.reason
                    self._unwatch(m.artifact)
            return
        # Persist files, then the new highest/current version, then switch: a crash at any
        # point leaves either the old state or the new one, never an older model accepted later.
        self.store.write(m.version, data, raw)
        self.store.state.highest = max(self.store.state.highest, m.version)
        self.store.switch(m.version)
        for topic in [t for t, w in self._artifacts.items() if w.version <= m.version]:
            self._unwatch(topic)
        if m.version == self.gate.target:
            self._watch_version(None)
        self._swap(model)
        self.counters.inc("model.loaded")
        log.info("model v%d loaded (was v%s)", m.version, cur.version if cur else None)
        self._report("loaded", None, self.gate.describe() if m.version == self.gate.target else "")

    def _rejected(self, reason: str, detail: str, version: int | None, cur: LoadedModel | None) -> None:
        if reason == "not_newer" and cur is not None and version == cur.version:
            self.counters.inc("model.manifest.current")  # the retained manifest of what we already run
            log.debug("manifest v%s is the one in use", version)
            return
        if reason == "not_newer" and cur is not None and version == self.store.state.highest:
            # The retained manifest of the version rolled back from, redelivered on every reconnect: the
            # retained state keeps saying "rolled_back" rather than turning into a rejection of it.
            self.counters.inc("model.manifest.rolled_back_from")
            log.debug("manifest v%s is the one rolled back from", version)
            return
        self.counters.inc(f"model.rejected.{reason}")
        log.warning("model manifest v%s ignored: %s: %s", version, reason, detail)
        # Every rejection becomes the retained ModelState, so that it shows the latest one: a replayed
        # older version, another task's manifest, a cleared topic or garbage as much as a bad model.
        if reason == "expired":
            self.counters.inc("model.stale")
            self._report("stale", version, detail)
        else:
            self._report("rejected", version, f"{reason}: {detail}")

    # ---- artifacts: fetch, and watch for a replacement after a bad one ------------------
    def _slot(self, m: Manifest) -> _ArtifactWatch:
        with self._lock:
            w = self._artifacts.get(m.artifact)
            new = w is None
            if new:
                w = self._artifacts[m.artifact] = _ArtifactWatch(b"", m.version)
        if new:
            assert self.client is not None
            self.client.subscribe(Filter(m.artifact), 1, lambda msg, t=m.artifact: self._on_artifact(t, msg))
        return w  # type: ignore[return-value]

    def _on_artifact(self, topic: str, msg: Message) -> None:
        """Network thread: keep the newest bytes; queue a retry when they replace bad ones."""
        if msg.topic != topic or not msg.payload:
            return
        digest = hashlib.sha256(msg.payload).hexdigest()
        with self._lock:
            w = self._artifacts.get(topic)
            if w is None:
                return
            w.latest, w.latest_sha = msg.payload, digest
            w.arrived.set()
            retry = w.armed and digest not in w.bad
            if retry:
                w.armed = False  # one retry per arrival; the retry decides whether to watch again
        if retry:
            self._jobs.put(("retry", w.manifest_raw))

    def _fetch(self, m: Manifest) -> bytes:
        """The newest artifact bytes not known to be bad; the subscription stays until _accept decides."""
        w = self._slot(m)
        deadline = time.monotonic() + self.cfg.model.fetch_timeout_s
        while True:
            with self._lock:
                if w.latest is not None and w.latest_sha not in w.bad:
                    return w.latest
                w.arrived.clear()
            if self.stopping.is_set() or time.monotonic() >= deadline:
                raise Rejection("fetch_timeout", f"no retained artifact on {m.artifact} within "
                                                 f"{self.cfg.model.fetch_timeout_s}s", m.version)
            w.arrived.wait(0.1)

    def _note_bad_artifact(self, m: Manifest, raw: bytes, data: bytes | None) -> None:
        """Watch the artifact topic for other bytes, a bounded number of times per version."""
        w = self._slot(m)
        with self._lock:
            w.manifest_raw = raw
            w.attempts += 1
            if data is not None:
                w.bad.add(hashlib.sha256(data).hexdigest())
            w.armed = w.attempts < self.cfg.model.artifact_attempts
            # Other bytes may have arrived while this attempt ran: try them now.
            now = w.armed and w.latest is not None and w.latest_sha not in w.bad
            if now:
                w.armed = False
        if w.attempts > 1:
            self.counters.inc("model.artifact_retry")
        if now:
            self._jobs.put(("retry", raw))
        elif not w.armed:
            self.counters.inc("model.artifact_gave_up")
            log.warning("model v%d: %d bad artifacts; not trying again until restart", m.version, w.attempts)
            self._unwatch(m.artifact)

    def _unwatch(self, topic: str) -> None:
        with self._lock:
            w = self._artifacts.pop(topic, None)
        if w is not None and self.client is not None:
            self.client.unsubscribe(Filter(topic))

    # ---- staged rollout: the release names this device's version ---------------------------
    def _on_release(self, raw: bytes) -> None:
        try:
            new = self.gate.offer(raw)
        except Rejection as exc:
            if exc.reason == "empty":
                self.counters.inc("release.cleared")
                return
            self.counters.inc(f"release.rejected.{exc.reason}")
            log.warning("release ignored: %s: %s", exc.reason, exc.detail)
            return
        if new:
            self._apply_target()

    def _apply_target(self) -> None:
        """Run the version the release assigns: already serving, kept on disk, or fetched from its own topic."""
        target = self.gate.target
        cur = self.active
        if target is None or (cur is not None and cur.version == target):
            self._watch_version(None)
            return
        if self.store.has(target):
            try:
                model = self._load_stored(target)
            except (OSError, Rejection, ModelRejected) as exc:
                self.counters.inc("release.stored_target_failed")
                log.error("stored model v%d unusable: %s; fetching it", target, exc)
            else:
                self.store.switch(target)
                self._watch_version(None)
                self._swap(model)
                self.counters.inc("model.release_switch")
                log.warning("%s: switched from v%s to v%d (kept on disk)", self.gate.describe(),
                            cur.version if cur else None, target)
                self._report("loaded", None, f"{self.gate.describe()}: from v{cur.version if cur else 0}")
                return
        self._watch_version(target)

    def _watch_version(self, version: int | None) -> None:
        """Listen on the one version topic the release's target needs (None: on none)."""
        assert self.client is not None or version is None
        topic = Filter(str(self.topics.model_version(self.cfg.task, version))) if version is not None else None
        with self._lock:
            old, self._version_watch = self._version_watch, topic
        if old is not None and old != topic and self.client is not None:
            self.client.unsubscribe(old)
        if topic is not None and topic != old:
            self.client.subscribe(topic, 1, self.offer)  # type: ignore[union-attr]

    def _load_stored(self, version: int) -> LoadedModel:
        data, raw = self.store.read(version)
        m = self._trusted(raw)
        check_artifact(data, m)
        return self._build(data, m, raw)

    # ---- rollback ------------------------------------------------------------------------
    def _rollback(self) -> None:
        st = self.store.state
        cur = self.active
        if st.previous is None:
            self.counters.inc("cmd.rollback.no_previous")
            self._report("rejected", None, "rollback: no previous model on disk")
            return
        try:
            model = self._load_stored(st.previous)
        except (OSError, Rejection, ModelRejected) as exc:
            self.counters.inc("cmd.rollback.failed")
            self._report("rejected", st.previous, f"rollback failed: {exc}")
            return
        self.store.rolled_back()
        self._swap(model)
        self.counters.inc("model.rolled_back")
        log.warning("rolled back from v%s to v%d", cur.version if cur else None, model.version)
        self._report("rolled_back", None, f"rolled back from v{cur.version if cur else 0}")
