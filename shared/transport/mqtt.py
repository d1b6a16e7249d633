"""A small MQTT 5 client over paho-mqtt 2.x with the habits every Lepton service needs.

- MQTT v5 only; TCP_NODELAY on every (re)connect (without it a QoS 1 round trip on
  loopback costs ~88 ms of Nagle/delayed-ACK stalls instead of ~0.5 ms).
- Its own network thread: connect, loop, and on loss reconnect with exponential backoff
  and full jitter, until ``stop()``. Subscriptions are re-sent on every connect.
- Birth (retained) on every connect, LWT for death, an explicit death on clean stop.
- Publish refusals are exceptions, never silence: paho returns ``MQTT_ERR_QUEUE_SIZE``
  instead of raising, and a broker's PUBACK reason code (0x87 not authorized) arrives
  later, so both are surfaced: the first raises, the second reaches ``on_ack`` and a counter.
- Acks are matched to the packet that was acknowledged (``shared/transport/ack_matcher.py``: paho reuses
  packet ids, and an ack can arrive before ``publish()`` returns). Every packet, the birth
  included, is registered, and parked acks are dropped on disconnect.
- Handler exceptions are counted and the latest kept (``callback_errors``), never swallowed silently.
- A client that cannot connect says so: where, the reason (refused, unresolvable, TLS, credentials) and
  when it retries, at a rate the backoff limits (``shared/transport/connect_report.py``; ``report.status``).
- A publish larger than the broker's Maximum Packet Size (from its CONNACK) raises ``PacketTooLarge``
  instead of being sent: mosquitto would drop the connection, and paho would send the same QoS 1
  packet again on every reconnect, forever.
- Handlers run on the network thread; ``subscribe_queue`` gives a bounded incoming queue
  instead, for consumers that do slow work.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field

from shared.process.bounded import DropOldestQueue
from shared.process.counters import Counters
from shared.protocol.topics import Filter, Topic
from shared.transport.ack_matcher import NOT_FOUND, AckMatcher
from shared.transport.connect_report import EARLY_CLOSE, ConnectReport, connack_reason, socket_reason
from shared.transport.message import Message

log = logging.getLogger(__name__)


class MqttError(RuntimeError):
    reason = "mqtt_error"


class NotConnected(MqttError):
    reason = "not_connected"


class PublishRefused(MqttError):
    """paho would not take the message (its queue is full or the packet is invalid)."""

    reason = "publish_refused"


class PacketTooLarge(PublishRefused):
    """The packet would exceed the Maximum Packet Size the broker announced; it was not sent."""

    reason = "too_large"


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path = Field(description="CA certificate that signed the broker's certificate.")
    cert: Path | None = Field(None, description="Client certificate (for certificate auth).")
    key: Path | None = Field(None, description="Client private key.")


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field("", max_length=64, description="Client id; empty means derived from the service id.")
    username: str | None = Field(None, description="Username (the device id for agents).")
    password: str | None = Field(None, description="Password.")
    keepalive: int = Field(30, ge=5, le=600, description="Keepalive seconds.")
    clean_start: bool = Field(True, description="False plus session_expiry makes a durable session.")
    session_expiry: int = Field(0, ge=0, description="Seconds the broker keeps the session after disconnect.")
    connect_timeout: float = Field(5.0, gt=0, description="TCP connect timeout, seconds.")
    backoff_min: float = Field(0.2, gt=0, description="First reconnect delay, seconds.")
    backoff_max: float = Field(10.0, gt=0, description="Largest reconnect delay, seconds.")
    max_inflight: int = Field(100, ge=1, description="QoS 1 messages in flight before paho queues.")
    max_queued: int = Field(10000, ge=0, description="Messages paho may queue; beyond that publish raises.")
    tls: TlsSettings | None = Field(None, description="TLS settings; None for plain TCP.")
    manual_ack: bool = Field(False, description="QoS 1 PUBACKs are sent by MqttClient.ack(msg), not on receipt.")
    receive_maximum: int | None = Field(None, ge=1, le=65535,
                                        description="MQTT 5 Receive Maximum: unacked QoS 1 messages the broker may send us.")
    read_pause_s: float = Field(0.0, ge=0, le=0.1, description=(
        "After a read that delivered messages, pause this long before the next one, so a stream at a "
        "moderate rate is taken in bursts: fewer wake-ups (CPU), at most this much added latency."))
    fast_receive: bool = Field(True, description="Read packets in 64 KiB chunks and parse QoS 0/1 PUBLISH without "
                                                 "paho's per-packet objects (shared.transport.mqtt_fast); False: plain paho.")


@dataclass(frozen=True, slots=True)
class Will:
    topic: Topic
    payload: bytes
    qos: int = 1
    retain: bool = True


Handler = Callable[[Message], None]
_TOPIC_CACHE_MAX = 100_000
REPEAT_S = 10.0  # a failing connection is reported at most this often (or per backoff_max, if longer)
PACKET_TOO_LARGE = 0x95  # MQTT 5 reason code, in a DISCONNECT from a broker that sends one


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_packet_size(topic: str, payload_len: int, qos: int, props: object | None) -> int:
    """Bytes of the PUBLISH packet paho will write: what a broker's Maximum Packet Size limits."""
    plen = len(props.pack()) if props is not None else 1  # type: ignore[attr-defined]  # length prefix included
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + plen + payload_len
    return 1 + _varint_len(remaining) + remaining


def _fast_client_type() -> type:
    """shared.transport.mqtt_fast.FastClient where this paho has the internals it relies on, else paho.Client."""
    from shared.transport import mqtt_fast

    return mqtt_fast.FastClient if mqtt_fast.supported() else paho.Client
AckCallback = Callable[[int], None]  # receives the PUBACK reason code value (0 = success)


def _props(response_topic: str | None, correlation_data: bytes | None,
           user_properties: list[tuple[str, str]] | tuple[tuple[str, str], ...] | None,
           message_expiry: int | None) -> Properties | None:
    if response_topic is None and correlation_data is None and not user_properties and message_expiry is None:
        return None
    if _fast_client_type() is not paho.Client:
        from shared.transport import mqtt_fast

        # paho's Properties builds two dicts per instance and searches them per attribute (~40 us);
        # paho only ever calls .pack() on what publish() is given, so the packed bytes will do.
        return mqtt_fast.PackedProperties.publish(response_topic, correlation_data, user_properties,
                                                  message_expiry)  # type: ignore[return-value]
    p = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        p.ResponseTopic = str(response_topic)
    if correlation_data is not None:
        p.CorrelationData = bytes(correlation_data)
    if user_properties:
        p.UserProperty = list(user_properties)
    if message_expiry is not None:
        p.MessageExpiryInterval = int(message_expiry)
    return p


def message_from_paho(m: paho.MQTTMessage) -> Message:
    props = getattr(m, "properties", None)
    rt = getattr(props, "ResponseTopic", None) if props else None
    cd = getattr(props, "CorrelationData", None) if props else None
    up = getattr(props, "UserProperty", None) if props else None
    me = getattr(props, "MessageExpiryInterval", None) if props else None
    return Message(m.topic, bytes(m.payload), m.qos, bool(m.retain), rt, cd, tuple(tuple(x) for x in up or ()), me,
                   m.mid)


class MqttClient:
    """Lifecycle: construct (no I/O), ``subscribe``/``on`` to register, ``start()``, ``stop()``."""

    def __init__(self, settings: MqttSettings, *, client_id: str, will: Will | None = None,
                 birth: Callable[[], tuple[Topic, bytes]] | None = None,
                 counters: Counters | None = None) -> None:
        self.settings = settings
        self.client_id = settings.client_id or client_id
        self.counters = counters or Counters()
        self._will = will
        self._birth = birth
        self._subs: dict[str, tuple[Filter, int, Handler | None]] = {}
        self._handlers: list[tuple[Filter, Handler]] = []
        self._by_topic: dict[str, list[Handler]] = {}  # topic -> matching handlers (cleared on any change)
        self._lock = threading.Lock()
        self._acks = AckMatcher(self.counters)
        self._burst = False  # the last loop delivered messages (for read_pause_s)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self.callback_errors: deque[BaseException] = deque(maxlen=100)
        self.last_connect_error: str | None = None
        self.report = ConnectReport(self.client_id, settings.host, settings.port, tls=settings.tls is not None,
                                    repeat_s=max(settings.backoff_max, REPEAT_S))
        self.broker_max_packet: int | None = None  # the broker's Maximum Packet Size, from its last CONNACK
        self._refusal: str | None = None  # why the current attempt failed after the TCP connect
        self._session_up = False  # the current attempt got a successful CONNACK
        self.on_connect_hooks: list[Callable[[bool], None]] = []  # arg: session_present
        self.on_disconnect_hooks: list[Callable[[], None]] = []
        # Called on the network thread after each socket read that delivered messages (after their
        # handlers): where a consumer of a burst can act once per burst instead of once per message.
        self.on_read_hooks: list[Callable[[], None]] = []

    # ---- registration ---------------------------------------------------
    def subscribe(self, flt: Filter, qos: int = 1, handler: Handler | None = None) -> None:
        """Register a subscription (sent now if connected, and again on every reconnect)."""
        with self._lock:
            self._subs[flt.value] = (flt, qos, handler)
            if handler is not None:
                self._handlers.append((flt, handler))
                self._by_topic = {}
        if self._connected.is_set() and self._client is not None:
            self._subscribe_now(self._client, flt, qos)

    def subscribe_and_wait(self, flt: Filter, qos: int = 1, handler: Handler | None = None,
                           timeout: float = 5.0) -> list[int]:
        """Subscribe now and return the SUBACK reason codes (>= 0x80 means refused)."""
        if not self._connected.is_set() or self._client is None:
            raise NotConnected("subscribe_and_wait needs a connected client")
        with self._lock:
            self._subs[flt.value] = (flt, qos, handler)
            if handler is not None:
                self._handlers.append((flt, handler))
                self._by_topic = {}
        ev, codes = threading.Event(), []
        start = self._acks.begin()
        rc, mid = self._client.subscribe(flt.value, qos=qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise NotConnected(f"subscribe failed: {paho.error_string(rc)}")
        early = self._acks.expect_suback(mid, start, (ev, codes))
        if early is not NOT_FOUND:
            codes.extend(early)  # type: ignore[arg-type]
            ev.set()
        try:
            if not ev.wait(timeout):
                raise TimeoutError(f"no SUBACK for {flt.value} within {timeout}s")
        finally:
            self._acks.forget_suback(mid, (ev, codes))
        return codes

    def _subscribe_now(self, client: paho.Client, flt: Filter, qos: int) -> None:
        """SUBSCRIBE without waiting; its SUBACK is still matched, so it can never pose as another's."""
        start = self._acks.begin()
        rc, mid = client.subscribe(flt.value, qos=qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            return
        self._acks.expect_suback(mid, start, None)

    def subscribe_queue(self, flt: Filter, qos: int = 1, maxsize: int = 10_000,
                        wait: float | None = None) -> DropOldestQueue[Message]:
        """Subscribe into a bounded queue the caller drains at its own pace (``queue.get(timeout)``).

        The network thread never blocks on a slow consumer: past ``maxsize`` the oldest
        message is dropped and counted (``mqtt.inbox_dropped``). Size it for your burst, or
        shed by priority yourself (as the hub bridge does) when every message matters.
        ``wait`` (seconds) waits for the SUBACK when connected.
        """
        q: DropOldestQueue[Message] = DropOldestQueue(maxsize)

        def put(m: Message) -> None:
            if q.put(m) is not None:
                self.counters.inc("mqtt.inbox_dropped")

        if wait is not None:
            self.subscribe_and_wait(flt, qos, put, timeout=wait)
        else:
            self.subscribe(flt, qos, put)
        return q

    def unsubscribe(self, flt: Filter) -> None:
        with self._lock:
            self._subs.pop(flt.value, None)
            self._handlers = [(f, h) for f, h in self._handlers if f.value != flt.value]
            self._by_topic = {}
        if self._client is not None and self._connected.is_set():
            self._client.unsubscribe(flt.value)

    # ---- lifecycle ------------------------------------------------------
    def start(self) -> MqttClient:
        if self._thread is not None:
            raise RuntimeError("client already started")
        self._client = self._make_client()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, death: tuple[Topic, bytes] | None = None, timeout: float = 5.0) -> None:
        """Publish an optional death message (retained, QoS 1, waited for), disconnect, join."""
        c = self._client
        if c is not None and self._connected.is_set():
            if death is not None:
                done = threading.Event()
                try:
                    self.publish(death[0], death[1], qos=1, retain=True, on_ack=lambda rc: done.set())
                    if not done.wait(min(timeout, 2.0)):
                        self.counters.inc("mqtt.death_unacked")
                except MqttError:
                    # Connection lost just now: the broker will publish the LWT instead.
                    self.counters.inc("mqtt.death_unsent")
            self._stop.set()
            c.disconnect()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._connected.clear()

    def __enter__(self) -> MqttClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- publish --------------------------------------------------------
    def publish(self, topic: Topic, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                response_topic: Topic | str | None = None, correlation_data: bytes | None = None,
                user_properties: list[tuple[str, str]] | tuple[tuple[str, str], ...] | None = None,
                message_expiry: int | None = None, on_ack: AckCallback | None = None) -> int:
        """Queue a message; returns its mid. ``on_ack(reason)`` runs on the network thread
        when the broker acknowledges it (QoS 1) or it is written (QoS 0); keep it short."""
        if not isinstance(topic, Topic):
            raise TypeError("publish takes a shared.protocol.topics.Topic; build it with shared.protocol.topics.Topics")
        c = self._client
        if c is None or not self._connected.is_set():
            self.counters.inc("mqtt.publish_not_connected")
            raise NotConnected(f"not connected; cannot publish to {topic}")
        props = _props(response_topic and str(response_topic), correlation_data, user_properties, message_expiry)
        limit = self.broker_max_packet
        if limit is not None:
            n = len(payload.encode()) if isinstance(payload, str) else len(payload)
            if n + len(topic.value) * 4 + 16 > limit // 2:  # cheap bound first: most messages are far below
                size = publish_packet_size(topic.value, n, qos, props)
                if size > limit:
                    self.counters.inc("mqtt.publish_too_large")
                    raise PacketTooLarge(f"publish to {topic} is a {size} B packet; the broker accepts at most "
                                         f"{limit} B (its max_packet_size) and would disconnect us")
        start = self._acks.begin()
        info = c.publish(topic.value, payload, qos=qos, retain=retain, properties=props)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            self.counters.inc("mqtt.publish_queue_full")
            raise PublishRefused(f"paho queue full ({self.settings.max_queued}); apply back-pressure")
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self.counters.inc("mqtt.publish_refused")
            raise PublishRefused(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        if info.rc == paho.MQTT_ERR_NO_CONN and qos == 0:
            self.counters.inc("mqtt.publish_not_connected")
            raise NotConnected(f"connection lost while publishing to {topic}")
        # paho may call on_publish before publish() returns: the matcher reconciles (its lock is never
        # held while calling into paho, whose callbacks hold paho's own mutexes).
        early = self._acks.expect_puback(info.mid, start, on_ack)
        if early is not NOT_FOUND and on_ack is not None:
            self._safe_call(on_ack, early)
        self.counters.inc("mqtt.published")
        return info.mid

    def ack(self, msg: Message) -> None:
        """Acknowledge a QoS 1 message received with ``manual_ack`` (no-op otherwise or for QoS 0)."""
        c = self._client
        if c is not None and msg.qos > 0 and self.settings.manual_ack:
            c.ack(msg.mid, msg.qos)

    def ack_many(self, msgs: list[Message]) -> None:
        """:meth:`ack` for many messages, in one write where the fast path is on."""
        c = self._client
        if c is None or not self.settings.manual_ack:
            return
        fast = getattr(c, "ack_many", None)
        if fast is not None:
            fast([m.mid for m in msgs if m.qos == 1])
        else:
            for m in msgs:
                if m.qos > 0:
                    c.ack(m.mid, m.qos)

    def publish_many_qos0(self, msgs: list[tuple[Topic, bytes]]) -> int:
        """QoS 0 messages without properties, in one write where the fast path is on; returns how many
        were queued. Nothing to acknowledge, so nothing is registered."""
        c = self._client
        if c is None or not self._connected.is_set():
            self.counters.inc("mqtt.publish_not_connected")
            raise NotConnected("not connected")
        fast = getattr(c, "publish_many_qos0", None)
        if fast is not None:
            n = fast([(t.value, p) for t, p in msgs])
        else:
            n = 0
            for t, p in msgs:
                info = c.publish(t.value, p, qos=0)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    break
                n += 1
        self.counters.inc("mqtt.published", n)
        return n

    # ---- internals ------------------------------------------------------
    def _make_client(self) -> paho.Client:
        s = self.settings
        kw = dict(client_id=self.client_id, protocol=paho.MQTTv5, reconnect_on_failure=False, manual_ack=s.manual_ack)
        fast = _fast_client_type()
        if s.fast_receive and fast is not paho.Client:
            c = fast(paho.CallbackAPIVersion.VERSION2, on_fast_message=self._on_fast_message,
                     on_read=self._on_read, **kw)
        else:
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, **kw)
        c.connect_timeout = s.connect_timeout
        c.max_inflight_messages_set(s.max_inflight)
        c.max_queued_messages_set(s.max_queued)
        if s.username is not None:
            c.username_pw_set(s.username, s.password)
        if s.tls is not None:
            c.tls_set(ca_certs=str(s.tls.ca), certfile=str(s.tls.cert) if s.tls.cert else None,
                      keyfile=str(s.tls.key) if s.tls.key else None, cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self._will is not None:
            c.will_set(self._will.topic.value, self._will.payload, qos=self._will.qos, retain=self._will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        return c

    def _connect_props(self) -> Properties | None:
        if self.settings.session_expiry <= 0 and self.settings.receive_maximum is None:
            return None
        p = Properties(PacketTypes.CONNECT)
        if self.settings.session_expiry > 0:
            p.SessionExpiryInterval = self.settings.session_expiry
        if self.settings.receive_maximum is not None:
            p.ReceiveMaximum = self.settings.receive_maximum
        return p

    def _set_nodelay(self) -> None:
        sock = self._client.socket() if self._client else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _run(self) -> None:
        c = self._client
        assert c is not None
        # Tell paho a network thread exists, so publish() from other threads only queues
        # and wakes our select(); otherwise paho writes to the socket from the caller's
        # thread, racing this one on partial writes.
        c._thread = threading.current_thread()
        s = self.settings
        delay = s.backoff_min
        first = True
        while not self._stop.is_set():
            self.report.connecting()
            self._refusal, self._session_up = None, False
            try:
                if first:
                    c.connect(s.host, s.port, s.keepalive, clean_start=s.clean_start, properties=self._connect_props())
                    first = False
                else:
                    c.reconnect()
                self._set_nodelay()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.last_connect_error = f"{type(exc).__name__}: {exc}"
                self.counters.inc("mqtt.connect_failures")
                # Full jitter: many agents that lost the same broker must not return in lockstep.
                wait = random.uniform(0, delay)
                self.report.failed(socket_reason(exc, s.host, s.connect_timeout, tls=s.tls is not None), wait)
                self._stop.wait(wait)
                delay = min(delay * 2, s.backoff_max)
                continue
            t0 = time.monotonic()
            pause = s.read_pause_s
            while not self._stop.is_set():
                rc = c.loop(timeout=0.2)
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
                if pause and self._burst:
                    self._burst = False
                    self._stop.wait(pause)
            if self._stop.is_set():
                # Flush a DISCONNECT queued by stop().
                for _ in range(10):
                    if c.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                        break
                break
            self._connected.clear()
            if time.monotonic() - t0 > 5:
                delay = s.backoff_min
            wait = random.uniform(0, delay)
            if not self._session_up:  # the TCP (and TLS) connect worked, the MQTT session never came up
                if self._refusal is None:
                    self.counters.inc("mqtt.connect_failures")  # (a refusal was counted as connect_refused)
                self.report.failed(self._refusal or EARLY_CLOSE, wait)
            self._stop.wait(wait)
            delay = min(delay * 2, s.backoff_max)
        self._connected.clear()

    def _safe_call(self, fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a handler's bug must not kill the network thread
            self.callback_errors.append(exc)
            self.counters.inc("mqtt.callback_errors")
            log.exception("MQTT callback %r failed", fn)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_connect_error = str(reason_code)
            self._refusal = connack_reason(reason_code.value, str(reason_code))  # reported when the attempt ends
            self.counters.inc("mqtt.connect_refused")
            return
        self._set_nodelay()
        self.last_connect_error = None
        self.broker_max_packet = getattr(properties, "MaximumPacketSize", None) if properties else None
        self.counters.inc("mqtt.connects")
        self._session_up = True
        self.report.connected()
        with self._lock:
            subs = list(self._subs.values())
        for flt, qos, _ in subs:
            self._subscribe_now(client, flt, qos)
        self._connected.set()
        if self._birth is not None:
            self._safe_call(self._publish_birth, client)
        for hook in list(self.on_connect_hooks):
            self._safe_call(hook, bool(flags.session_present))

    def _publish_birth(self, client: paho.Client) -> None:
        assert self._birth is not None
        topic, payload = self._birth()
        try:
            self.publish(topic, payload, qos=1, retain=True)  # registered like any packet: its PUBACK is matched
        except MqttError:
            self.counters.inc("mqtt.birth_unsent")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        # Parked acks and unanswered SUBSCRIBEs belong to the lost connection (a waiter times out;
        # _on_connect subscribes again). Pending PUBLISHes stay: paho sends them again.
        self._acks.connection_lost()
        value = getattr(reason_code, "value", None)
        if value == PACKET_TOO_LARGE:  # a broker that says why (mosquitto 2.0 only closes the socket)
            self.counters.inc("mqtt.disconnected_too_large")
        if was:
            self.counters.inc("mqtt.disconnects")
            if not self._stop.is_set():
                log.warning("%s disconnected: %s", self.client_id, reason_code)
                self.report.lost(str(reason_code))
        for hook in list(self.on_disconnect_hooks):
            self._safe_call(hook)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        value = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        if value >= 0x80:
            self.counters.inc(f"mqtt.publish_denied.{value:#x}")
            log.warning("broker refused publish mid=%s: %s", mid, reason_code)
        cb = self._acks.puback(mid, value)
        if cb is not NOT_FOUND and cb is not None:
            self._safe_call(cb, value)

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        codes = [rc.value for rc in reason_code_list]
        entry = self._acks.suback(mid, codes)
        for v in codes:
            if v >= 0x80:
                self.counters.inc(f"mqtt.subscribe_denied.{v:#x}")
                log.warning("broker refused a subscription of %s: %#x", self.client_id, v)
        if entry is not None:
            entry[1].extend(codes)
            entry[0].set()

    def _on_message(self, client, userdata, m: paho.MQTTMessage) -> None:
        self._on_fast_message(message_from_paho(m))
        self._on_read(1)

    def _on_fast_message(self, msg: Message) -> None:
        # Counted before the handlers run, so the count never lags what a handler has seen.
        self.counters.inc("mqtt.received")
        handlers = self._by_topic.get(msg.topic)
        if handlers is None:
            with self._lock:
                handlers = [h for f, h in self._handlers if f.matches(msg.topic)]
                if len(self._by_topic) >= _TOPIC_CACHE_MAX:
                    self._by_topic = {}
                self._by_topic[msg.topic] = handlers
        for h in handlers:
            try:
                h(msg)
            except Exception as exc:  # a handler's bug must not kill the network thread
                self.callback_errors.append(exc)
                self.counters.inc("mqtt.callback_errors")
                log.exception("MQTT handler %r failed", h)

    def _on_read(self, n: int) -> None:
        self._burst = True
        self.counters.inc("mqtt.reads")
        for hook in self.on_read_hooks:
            self._safe_call(hook)
