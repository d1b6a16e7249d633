"""What an MQTT client tells a person about reaching its broker: where, why not, and when it tries again.

A device alone on a shelf has its log and systemd's STATUS line, nothing else: a client that
cannot connect must say so, with the reason the socket, TLS or the broker gave, and keep saying
so while it retries, without flooding the log. Lines go to the ``shared.transport.mqtt.connect`` logger:

- ``connecting to HOST:PORT`` at the first attempt (and after a lost connection);
- ``cannot connect to HOST:PORT: REASON; retrying in N s`` on a failure: the first one, any whose
  reason differs from the last line's, and otherwise one per ``repeat_s`` (the rest at DEBUG),
  with the attempts and seconds since the outage began;
- ``connected to HOST:PORT`` (after how many failed attempts, over how long).

``status`` is the same news in one line (for ``sd_notify`` STATUS), and ``hooks`` hear every change.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

log = logging.getLogger("shared.transport.mqtt.connect")

# CONNACK reason codes a person can act on (MQTT 5 section 3.2.2.2): what to check.
_CONNACK_HINTS = {
    0x85: "check mqtt.client_id",
    0x86: "bad credentials: check mqtt.username and mqtt.password",
    0x87: "bad credentials: check mqtt.username, mqtt.password or the client certificate",
    0x8C: "check the authentication settings",
}
EARLY_CLOSE = ("the broker closed the connection before answering (a TLS port? then [mqtt.tls] is needed)")


def socket_reason(exc: BaseException, host: str, timeout_s: float, *, tls: bool = False) -> str:
    """The reason a TCP/TLS connect failed, in words, with what the socket or TLS said."""
    if tls and isinstance(exc, ConnectionResetError | BrokenPipeError | ssl.SSLEOFError):
        return (f"TLS error: the broker dropped the TLS handshake ({exc.strerror or exc}; "
                "a plain, non-TLS port? or it wants a client certificate)")
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
        return f"TLS error: the broker's certificate was not accepted ({why})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({getattr(exc, 'reason', None) or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, on this port?)"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return f"no answer within {timeout_s:g} s (timed out)"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def connack_reason(code: int, text: str) -> str:
    """A broker's refusal (CONNACK reason code ``code``, paho's ``text`` for it), in words."""
    hint = _CONNACK_HINTS.get(code)
    return f"refused by the broker: {text}" + (f" ({hint})" if hint else "")


class ConnectReport:
    def __init__(self, who: str, host: str, port: int, *, tls: bool, repeat_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.who = who
        self.where = f"{host}:{port}" + (" (TLS)" if tls else "")
        self.repeat_s = repeat_s
        self.status = f"not connected to {self.where}"
        self.hooks: list[Callable[[str], None]] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts = 0  # failed attempts in the current outage
        self._since: float | None = None  # when the current outage began
        self._announced = False  # "connecting to" said for this outage
        self._last_line = float("-inf")
        self._last_reason: str | None = None

    def connecting(self) -> None:
        with self._lock:
            if self._announced:
                return
            self._announced = True
            self._since = self._clock() if self._since is None else self._since
        log.info("%s: connecting to %s", self.who, self.where)
        self._set(f"connecting to {self.where}")

    def failed(self, reason: str, retry_in: float) -> None:
        now = self._clock()
        with self._lock:
            self._attempts += 1
            self._since = now if self._since is None else self._since
            loud = reason != self._last_reason or now - self._last_line >= self.repeat_s
            if loud:
                self._last_line, self._last_reason = now, reason
            n, since = self._attempts, self._since
        tail = f" ({n} attempts over {now - since:.0f} s)" if n > 1 else ""
        log.log(logging.INFO if loud else logging.DEBUG, "%s: cannot connect to %s: %s; retrying in %.1f s%s",
                self.who, self.where, reason, retry_in, tail)
        self._set(f"cannot connect to {self.where}: {reason}; retrying in {retry_in:.1f} s{tail}")

    def connected(self) -> None:
        now = self._clock()
        with self._lock:
            n, since = self._attempts, self._since
            self._attempts, self._since, self._announced = 0, None, False
            self._last_line, self._last_reason = float("-inf"), None
        if n:
            log.info("%s: connected to %s after %d failed attempt%s over %.0f s", self.who, self.where, n,
                     "" if n == 1 else "s", now - (since if since is not None else now))
        else:
            log.info("%s: connected to %s", self.who, self.where)
        self._set(f"connected to {self.where}")

    def lost(self, reason: str) -> None:
        self._set(f"connection to {self.where} lost ({reason}); reconnecting")

    def _set(self, status: str) -> None:
        self.status = status
        for hook in list(self.hooks):
            try:
                hook(status)
            except Exception:  # a listener's bug must not stop the client from reconnecting
                log.exception("connection status hook %r failed", hook)
