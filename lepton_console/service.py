"""ConsoleService: the console's MQTT client, its label custody and its web server, as one Service.

Threads: the MQTT network thread (intake into ConsoleState), ``labels`` (resends labels the bridge
has not taken custody of), and ``web`` (uvicorn serving the Starlette app). SIGTERM stops all three:
the web server first, so no action arrives while the client closes.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from lepton_console.app import build_app
from lepton_console.auth import Sessions
from lepton_console.config import ConsoleConfig
from lepton_console.state import ConsoleState
from shared.process.counters import Counters
from shared.process.service import Service
from shared.protocol import schemas
from shared.protocol.topics import Kind, Topics
from shared.protocol.wire import Receiver
from shared.stores.label_journal import LabelJournal
from shared.stores.label_outbox import LabelOutbox, LabelSender
from shared.transport.mqtt import MqttClient

log = logging.getLogger(__name__)

# What the console reads (shared/security/acl.py grants the console role exactly these, and its own custody topic).
READS = (Kind.HARD, Kind.PRED, Kind.REPLY, Kind.STATUS, Kind.TELEMETRY, Kind.MODEL_STATE, Kind.EVENT,
         Kind.SNAPSHOT)


class ConsoleService(Service):
    name = "console"

    def __init__(self, cfg: ConsoleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.topics = Topics(cfg.root)
        self.counters = Counters()
        self.state = ConsoleState(max_items=cfg.max_items, max_history=cfg.max_history,
                                  max_sample_bytes=cfg.max_sample_bytes)
        self.sessions = Sessions(cfg.token)
        self.client = MqttClient(cfg.mqtt, client_id=f"lepton-{cfg.name}".replace("_", "-"), counters=self.counters)
        self.journal = LabelJournal(cfg.outbox, self.counters).open() if cfg.outbox else None
        self.sender = LabelSender(self.client, self.topics,
                                  LabelOutbox(cfg.name, timeout_s=cfg.custody_timeout_s,
                                              timeout_max_s=cfg.custody_timeout_max_s, counters=self.counters,
                                              journal=self.journal))
        if self.counters.get("labels.recovered"):
            log.info("%d labels kept in %s from the last run are sent again", self.counters.get("labels.recovered"),
                     cfg.outbox)
        receive = Receiver(self.topics, self.state.on_value, self.counters)
        t = self.topics
        for kind in READS:
            self.client.subscribe(t.edge_kind(kind), 1 if kind in (Kind.HARD, Kind.STATUS) else 0, receive)
        for flt in (t.labels(), t.hub_status(), t.manifests(), t.cloud_statuses(), t.releases(), t.rollout_events(),
                    t.of_kind(Kind.MODEL_VERSION)):
            self.client.subscribe(flt, 1, receive)
        self.port: int | None = None
        self.metrics = None  # the /metrics endpoint, when cfg.metrics.enabled
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None

    # ---- Actions (the web app's hands on the broker) ------------------------------------
    def label(self, lb: schemas.Labels) -> schemas.Labels:
        return self.sender.send(lb)

    def command(self, device: str, cmd: schemas.Command) -> None:
        self.client.publish(self.topics.cmd(device, cmd.name), schemas.dumps(cmd), qos=1)
        self.counters.inc(f"commands.{cmd.name}")

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.cfg.host if self.cfg.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def login_url(self) -> str:
        return f"{self.url}/login?token={self.sessions.token}"

    def _start(self) -> None:
        if self.cfg.metrics.enabled:  # first: a port already taken fails the start before anything connects
            from lepton_console.metrics import console_endpoint

            self.metrics = console_endpoint(self).start()
        self.client.start()
        fam = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        self._sock = socket.socket(fam, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.cfg.host, self.cfg.port))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        actions = _Actions(self)
        app = build_app(self.state, actions, self.sessions, registry=self.cfg.registry,
                        push_every_s=self.cfg.push_every_s, stopping=self.stopping.is_set)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                     timeout_graceful_shutdown=2, lifespan="on"))
        self.spawn(lambda: self._server.run(sockets=[self._sock]), "web")
        self.spawn(self._pump, "labels")

    def wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.started:
                return True
            time.sleep(0.05)
        return False

    def _pump(self) -> None:
        while not self.stopping.wait(0.5):
            self.sender.pump()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(5)
        if self._sock is not None:
            self._sock.close()
        self.client.stop()
        if self.metrics is not None:
            self.metrics.stop()
        waiting = len(self.sender.outbox)
        if self.journal is not None:
            self.journal.close()
            if waiting:
                log.info("%d label messages not yet in the bridge's custody are kept in %s for the next start",
                         waiting, self.cfg.outbox)
        elif waiting:
            self.counters.inc("labels.lost_at_stop", waiting)
            log.warning("%d label messages not yet in the bridge's custody are lost (set outbox = FILE to keep "
                        "them across restarts)", waiting)


class _Actions:
    def __init__(self, svc: ConsoleService) -> None:
        self._svc = svc
        self.name = svc.cfg.name

    def label(self, lb: schemas.Labels) -> schemas.Labels:
        return self._svc.label(lb)

    def command(self, device: str, cmd: schemas.Command) -> None:
        self._svc.command(device, cmd)
