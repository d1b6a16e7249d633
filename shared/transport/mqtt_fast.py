"""paho's receive and acknowledge paths, made cheap for services that take thousands of messages a second.

paho reads every packet with at least three ``recv()`` calls (command byte, length bytes, body),
parses each PUBLISH into an ``MQTTMessage`` with a generic ``Properties`` object, and writes each
PUBACK with its own ``send()`` plus a wake-up byte. Measured on the 2-core box that is most of a
receiving service's CPU time (docs/BRIDGE.md, profile). :class:`FastClient` keeps paho for
everything else (connect, keepalive, TLS, will, subscribe, publish, reconnect) and replaces:

- ``_packet_read``: one ``recv()`` of up to 64 KiB, then every complete packet in the buffer is
  handled; a partial packet waits in the buffer for the next read. QoS 0/1 PUBLISH packets are
  parsed here (topic, packet id, the MQTT 5 properties Lepton uses) straight into a
  :class:`~shared.transport.message.Message`; anything unusual (QoS 2, a topic alias, an unknown property,
  bytes that do not parse) goes to paho's own handler, byte for byte as paho would have read it,
  so its behaviour (and its protocol errors) are unchanged.
- PUBACKs of our own QoS 1 publishes: the packet id and reason code are read here and handed to
  paho's bookkeeping (``_do_on_publish``) without its per-packet ReasonCode/Properties objects.
- :meth:`ack_many`: the PUBACKs of many messages as one write.
- :meth:`publish_many_qos0`: QoS 0 messages without properties (custody notes) as one write:
  QoS 0 has no packet id and no acknowledgement, so paho has nothing to track for them.
- :class:`PackedProperties`: PUBLISH properties packed once, for paho's ``publish()``, instead of
  paho's ``Properties`` (two dictionaries built per instance, searched per attribute).

Only paho internals that exist in every paho-mqtt 2.x (``_sock_recv``, ``_in_packet``,
``_packet_handle``, ``_packet_queue``) are used; :func:`supported` checks them, and
:class:`~shared.transport.mqtt.MqttClient` falls back to plain paho where they are missing.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as paho

from shared.transport.message import Message

READ_CHUNK = 65536
_PUBLISH, _PUBACK = 0x30, 0x40
_PUBACK_PACK = struct.Struct("!BBH").pack
_RAW = 0  # command recorded for pre-built blobs: paho's writer gives them no special handling
_UTF8 = "utf-8"
_MALFORMED = getattr(paho, "MalformedPacket", ValueError)
_NO_PROPS = None  # a PUBACK's properties, when it has none (nothing Lepton reads from them)
_now = getattr(paho, "time_func", time.monotonic)


class _Fallback(Exception):
    """This PUBLISH is for paho's own parser."""


def supported() -> bool:
    c = paho.Client
    return all(hasattr(c, name) for name in ("_sock_recv", "_packet_handle", "_packet_queue", "_packet_read",
                                              "_do_on_publish"))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = mult = 0
    for i in range(4):
        b = buf[pos + i]
        value += (b & 127) << mult
        if not b & 128:
            return value, pos + i + 1
        mult += 7
    raise _Fallback("variable byte integer longer than 4 bytes")


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 127, n >> 7
        out.append(b | 128 if n else b)
        if not n:
            return bytes(out)


def parse_publish(cmd: int, data: bytes, start: int, end: int) -> Message:
    """The MQTT 5 PUBLISH (QoS 0 or 1) in ``data[start:end]`` into a Message; raises :class:`_Fallback`
    (or IndexError, UnicodeDecodeError) for anything paho should look at itself."""
    qos = (cmd >> 1) & 3
    if qos > 1:
        raise _Fallback("QoS 2")
    p = start + 2 + ((data[start] << 8) | data[start + 1])
    topic = data[start + 2:p].decode(_UTF8)
    mid = 0
    if qos:
        mid = (data[p] << 8) | data[p + 1]
        p += 2
    plen, p = _varint(data, p)
    pend = p + plen
    if pend > end:
        raise _Fallback("properties run past the packet")
    rt = cd = me = None
    up: list[tuple[str, str]] = []
    while p < pend:
        pid = data[p]
        p += 1
        if pid == 0x02:  # message expiry interval
            me = int.from_bytes(data[p:p + 4], "big")
            p += 4
        elif pid == 0x08:  # response topic
            n = (data[p] << 8) | data[p + 1]
            rt = data[p + 2:p + 2 + n].decode(_UTF8)
            p += 2 + n
        elif pid == 0x09:  # correlation data
            n = (data[p] << 8) | data[p + 1]
            cd = data[p + 2:p + 2 + n]
            p += 2 + n
        elif pid == 0x26:  # user property: two strings
            n = (data[p] << 8) | data[p + 1]
            k = data[p + 2:p + 2 + n].decode(_UTF8)
            p += 2 + n
            n = (data[p] << 8) | data[p + 1]
            v = data[p + 2:p + 2 + n].decode(_UTF8)
            p += 2 + n
            up.append((k, v))
        elif pid == 0x01:  # payload format indicator
            p += 1
        elif pid == 0x03:  # content type
            p += 2 + ((data[p] << 8) | data[p + 1])
        elif pid == 0x0B:  # subscription identifier
            _, p = _varint(data, p)
        else:  # topic alias (never granted: we send no Topic Alias Maximum) or not a PUBLISH property
            raise _Fallback(f"property {pid:#x}")
    if p != pend:
        raise _Fallback("properties do not add up")
    return Message(topic, data[pend:end], qos, bool(cmd & 1), rt, cd, tuple(up), me, mid)


def _str16(s: str) -> bytes:
    b = s.encode(_UTF8)
    if len(b) > 65535:
        raise ValueError("string longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


class PackedProperties:
    """MQTT 5 PUBLISH properties already packed: what paho's publish() needs of a Properties object
    (it calls ``pack()``, for the first send and for a resend after a reconnect)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def publish(cls, response_topic: str | None, correlation_data: bytes | None,
                user_properties: Iterable[tuple[str, str]] | None, message_expiry: int | None) -> PackedProperties:
        parts = []
        if message_expiry is not None:
            parts.append(b"\x02" + int(message_expiry).to_bytes(4, "big"))
        if response_topic is not None:
            parts.append(b"\x08" + _str16(str(response_topic)))
        if correlation_data is not None:
            cd = bytes(correlation_data)
            if len(cd) > 65535:
                raise ValueError("correlation data longer than 65535 bytes")
            parts.append(b"\x09" + len(cd).to_bytes(2, "big") + cd)
        for k, v in user_properties or ():
            parts.append(b"\x26" + _str16(k) + _str16(v))
        body = b"".join(parts)
        return cls(_encode_varint(len(body)) + body)

    def pack(self) -> bytes:
        return self.raw

    def __repr__(self) -> str:
        return f"PackedProperties({self.raw!r})"


class _Reason:
    """What paho's on_publish gets as the PUBACK reason code: ``.value``, ``.is_failure`` and a name."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    @property
    def is_failure(self) -> bool:
        return self.value >= 0x80

    def __eq__(self, other: object) -> bool:
        return self.value == getattr(other, "value", other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return f"reason code {self.value:#x}"


class FastClient(paho.Client):
    """A paho client whose PUBLISH receive path calls ``on_fast_message(Message)`` directly.

    ``on_fast_message`` runs on the network thread like paho's ``on_message`` (which is not
    called for the messages it takes); ``on_read(n)`` after each read that delivered n messages.
    """

    def __init__(self, *args, on_fast_message: Callable[[Message], None],
                 on_read: Callable[[int], None] | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self._parts: list[bytes] = []  # bytes read that do not yet make a whole packet
        self._have = 0
        self._need = 0  # bytes the partial packet needs in all, once its length is known
        self._on_fast_message = on_fast_message
        self._on_read = on_read
        self.fallbacks = 0
        self.reads = 0  # reads that delivered messages (messages / reads = the burst size)

    def reconnect(self):  # noqa: ANN201 - paho's signature
        # Bytes of the old connection must never be read as the new one's.
        self._parts, self._have, self._need = [], 0, 0
        return super().reconnect()

    def _packet_read(self):  # noqa: ANN202
        try:
            data = self._sock_recv(READ_CHUNK)
        except BlockingIOError:
            return paho.MQTT_ERR_AGAIN
        except OSError:  # TimeoutError included; paho reports the loss the same way
            return paho.MQTT_ERR_CONN_LOST
        if not data:
            return paho.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = _now()
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return paho.MQTT_ERR_SUCCESS  # a large packet still arriving: join once, when whole
            data = b"".join(self._parts)
            self._parts, self._have, self._need = [], 0, 0
        n, pos, delivered, rc = len(data), 0, 0, paho.MQTT_ERR_SUCCESS
        while n - pos >= 2:
            cmd = data[pos]
            rl = shift = 0
            i = pos + 1
            whole = False
            while i < n:
                b = data[i]
                i += 1
                rl |= (b & 127) << shift
                if not b & 128:
                    whole = True
                    break
                shift += 7
                if shift > 21:
                    return paho.MQTT_ERR_PROTOCOL  # as paho: more than 4 remaining-length bytes
            end = i + rl
            if not whole or end > n:
                if whole:
                    self._need = end - pos
                break
            if cmd & 0xF0 == _PUBLISH:
                try:
                    msg = parse_publish(cmd, data, i, end)
                except (_Fallback, IndexError, UnicodeDecodeError):
                    self.fallbacks += 1
                    rc = self._paho_handle(cmd, rl, data[i:end])
                else:
                    delivered += 1
                    self._on_fast_message(msg)
                    if msg.qos == 1 and not self._manual_ack:
                        rc = self._send_puback(msg.mid)
            elif cmd == _PUBACK and (rl == 2 or rl == 3 or (rl == 4 and data[i + 3] == 0)):
                # A PUBACK for one of our QoS 1 publishes (no properties): paho's bookkeeping, without
                # its generic decoder's ReasonCode and Properties objects per packet.
                mid = (data[i] << 8) | data[i + 1]
                with self._out_message_mutex:
                    if mid in self._out_messages:
                        rc = self._do_on_publish(mid, _Reason(data[i + 2] if rl >= 3 else 0), _NO_PROPS)
            else:
                rc = self._paho_handle(cmd, rl, data[i:end])
            pos = end
            if rc or self._sock is None:
                break
        if pos < n and not rc:
            rest = data[pos:]
            self._parts, self._have = [rest], len(rest)
        if delivered and self._on_read is not None:
            self._on_read(delivered)
        if delivered:
            self.reads += 1
        return rc

    def _paho_handle(self, cmd: int, rl: int, body: bytes):  # noqa: ANN202
        """Hand one whole packet to paho exactly as its own reader would have."""
        self._in_packet = {"command": cmd, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": rl, "packet": bytearray(body), "to_process": 0, "pos": 0}
        try:
            rc = self._packet_handle()
        except _MALFORMED:
            rc = paho.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        return rc

    # ---- batched writes -------------------------------------------------------------
    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK (success) for these QoS 1 packet ids, in one write."""
        blob = b"".join([_PUBACK_PACK(_PUBACK, 2, mid) for mid in mids])
        if blob:
            self._packet_queue(_RAW, blob, 0, 0)

    def publish_many_qos0(self, msgs: Iterable[tuple[str, bytes]]) -> int:
        """QoS 0 PUBLISH packets (no properties, not retained), in one write; returns how many."""
        parts = []
        for topic, payload in msgs:
            t = topic.encode(_UTF8)
            rl = 2 + len(t) + 1 + len(payload)
            parts += (bytes((_PUBLISH,)), _encode_varint(rl), len(t).to_bytes(2, "big"), t, b"\x00", payload)
        if parts:
            self._packet_queue(_RAW, b"".join(parts), 0, 0)
        return len(parts) // 6
