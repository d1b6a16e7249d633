"""A load generator's MQTT 5 publisher on a plain socket: pre-built PUBLISH packets, written in bulk,
PUBACKs counted, the broker's Receive Maximum respected.

paho's ``publish()`` costs some 50-100 µs of Python per message and only queues: on a 2 vCPU box
a paho generator offered ~8-10k QoS 1 messages a second, so the bench measured the generator, not
the subject (and a paced loop of ``publish()`` calls looked on time while the wire fell behind).
This one builds each packet from cached parts (a few µs) and writes a batch per ``send()``, so the
subject and the broker are what a trial measures. Publishing only: no subscriptions, no QoS 2, no
TLS; for benches on a loopback broker.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence

_PUBACK, _CONNACK, _DISCONNECT = 0x40, 0x20, 0xE0


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def props(response_topic: str | None = None, correlation: bytes | None = None,
          user: Sequence[tuple[str, str]] = ()) -> bytes:
    """The PUBLISH properties Lepton's devices use, encoded (without the length prefix)."""
    out = b""
    if response_topic is not None:
        out += b"\x08" + utf8(response_topic)
    if correlation is not None:
        out += b"\x09" + utf8(correlation)
    for k, v in user:
        out += b"\x26" + utf8(k) + utf8(v)
    return out


class RawPublisher:
    """One connection; ``publish()`` queues a packet, ``flush()`` writes, acks are read as they come."""

    def __init__(self, port: int, client_id: str, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        var = b"\x00\x04MQTT\x05\x02\x00\x00" + b"\x00"  # v5, clean start, keepalive 0, no properties
        body = var + utf8(client_id)
        self.sock.sendall(b"\x10" + varint(len(body)) + body)
        self.receive_max = 65535
        self._buf = b""
        head = self._read_packet(timeout)
        if head is None or head[0] != _CONNACK or head[1][1] != 0:
            raise ConnectionError(f"CONNACK refused: {head!r}")
        self._connack_props(head[1])
        self.sock.setblocking(False)
        self._next_id = 0
        self.inflight = 0
        self.acked = 0
        self.sent = 0
        self._out: list[bytes] = []

    def _connack_props(self, body: bytes) -> None:
        pos, n, mult = 2, 0, 1
        while True:  # properties length
            b = body[pos]
            pos += 1
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        end = pos + n
        while pos < end:
            pid = body[pos]
            pos += 1
            if pid == 0x21:  # Receive Maximum
                self.receive_max = struct.unpack_from("!H", body, pos)[0]
                pos += 2
            elif pid in (0x24, 0x25, 0x28, 0x29, 0x2A):  # one-byte properties
                pos += 1
            elif pid == 0x13:  # server keep alive
                pos += 2
            elif pid in (0x11, 0x27, 0x22):  # four/two-byte integers
                pos += 4 if pid in (0x11, 0x27) else 2
            elif pid in (0x12, 0x1A, 0x1C, 0x1F, 0x15, 0x16):  # strings, binary
                pos += 2 + struct.unpack_from("!H", body, pos)[0]
            elif pid == 0x26:  # user property: two strings
                for _ in range(2):
                    pos += 2 + struct.unpack_from("!H", body, pos)[0]
            else:
                break  # unknown: the Receive Maximum, if any, came first in mosquitto's CONNACK

    def _read_packet(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._take()
            if pkt is not None:
                return pkt
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self._buf += chunk

    def _take(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        n, mult, pos = 0, 1, 1
        while True:
            if pos >= len(buf):
                return None
            b = buf[pos]
            pos += 1
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        if len(buf) < pos + n:
            return None
        self._buf = buf[pos + n:]
        return buf[0] & 0xF0, buf[pos:pos + n]

    def poll(self) -> None:
        """Read whatever arrived (non-blocking) and count the PUBACKs."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                self._buf += chunk
                if len(chunk) < 65536:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        while (pkt := self._take()) is not None:
            if pkt[0] == _PUBACK:
                self.inflight -= 1
                self.acked += 1
            elif pkt[0] == _DISCONNECT:
                raise ConnectionError(f"the broker disconnected us: {pkt[1][:1].hex()}")

    def publish(self, topic: bytes, payload: bytes, qos: int = 1, properties: bytes = b"") -> None:
        """Queue one PUBLISH (``topic`` already length-prefixed, from :func:`utf8`); waits for room in
        the broker's Receive Maximum first."""
        if qos:
            while self.inflight >= self.receive_max:
                self.flush()
                self._wait_readable(1.0)
                self.poll()
            self._next_id = self._next_id % 65535 + 1
            self.inflight += 1
            var = topic + struct.pack("!H", self._next_id) + varint(len(properties)) + properties
            first = b"\x32"
        else:
            var = topic + varint(len(properties)) + properties
            first = b"\x30"
        self._out.append(first + varint(len(var) + len(payload)) + var + payload)
        self.sent += 1

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                self.poll()  # the broker is busy answering: take its acks while we wait
                self._wait_writable(1.0)

    def _wait_readable(self, timeout: float) -> None:
        import select

        select.select([self.sock], [], [], timeout)

    def _wait_writable(self, timeout: float) -> None:
        import select

        select.select([], [self.sock], [], timeout)

    def wait_acked(self, timeout: float) -> bool:
        """Until every QoS 1 message sent has its PUBACK (or ``timeout``)."""
        self.flush()
        deadline = time.monotonic() + timeout
        while self.inflight > 0 and time.monotonic() < deadline:
            self._wait_readable(min(0.05, max(0.0, deadline - time.monotonic())))
            self.poll()
        return self.inflight <= 0

    def close(self) -> None:
        try:
            self.flush()
            self.sock.setblocking(True)
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


def paced(pub: RawPublisher, msgs: Iterable[tuple[bytes, bytes, int, bytes]], rate: float,
          batch_s: float = 0.002) -> float:
    """Send (topic, payload, qos, properties) at ``rate`` per second, never more than ``batch_s``
    early, several to a write; returns the seconds the sending took."""
    t0 = time.perf_counter()
    for i, (topic, payload, qos, prop) in enumerate(msgs):
        lag = t0 + i / rate - time.perf_counter()
        if lag > batch_s:
            pub.flush()
            pub.poll()
            time.sleep(lag)
        pub.publish(topic, payload, qos, prop)
        if len(pub._out) >= 256:
            pub.flush()
            pub.poll()
    pub.flush()
    return time.perf_counter() - t0
