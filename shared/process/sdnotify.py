"""systemd's notify protocol (READY / STATUS / WATCHDOG / STOPPING) without libsystemd.

Under a unit with ``Type=notify`` and ``WatchdogSec=``, systemd sets ``NOTIFY_SOCKET`` and
``WATCHDOG_USEC``; a service that stops pinging is killed and restarted. Outside systemd
every call is a cheap no-op, so services call it unconditionally. ``STATUS=`` is the line
``systemctl status`` shows under the unit (the agent puts its broker connection there).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping


class SdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self.address = address or None
        # Ping at half the interval systemd allows, as sd_watchdog_enabled(3) advises.
        self.interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._last = 0.0
        self._stopping = False
        self._lock = threading.Lock()  # a ping racing STOPPING either goes first or not at all
        self.sent = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SdNotifier:
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is for; a child must not ping for it.
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(env.get("NOTIFY_SOCKET"), watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, state: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.settimeout(1.0)
                s.sendto(state.encode(), self.address)
        except OSError:
            return False  # systemd gone or socket unreachable: nothing useful to do about it
        self.sent += 1
        return True

    def ready(self) -> bool:
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """STATUS=text: one line for ``systemctl status`` (newlines would end the field); none after STOPPING."""
        with self._lock:
            if self._stopping:
                return False
            return self.send("STATUS=" + " ".join(text.split())[:400])

    def stopping(self) -> bool:
        # After STOPPING no more WATCHDOG: a loop still finishing its last turn must not ping after it.
        with self._lock:
            self._stopping = True
            return self.send("STOPPING=1")

    def ping(self, now: float | None = None) -> bool:
        """WATCHDOG=1, at most once per half watchdog interval; call it from the loop that proves liveness."""
        if self.interval is None:
            return False
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._stopping or now - self._last < self.interval:
                return False
            self._last = now
            return self.send("WATCHDOG=1")
