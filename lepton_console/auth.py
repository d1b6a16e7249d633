"""Login by token, sessions by cookie, CSRF by a per-session token every POST must echo in a header."""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field

COOKIE = "lepton_console"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 1000


@dataclass
class Session:
    sid: str
    csrf: str
    labels: Counter = field(default_factory=Counter)  # class name -> labels given in this session
    skipped: set[str] = field(default_factory=set)
    undo: list[tuple[str, str, int]] = field(default_factory=list)  # (action, key, label)

    @property
    def total(self) -> int:
        return sum(self.labels.values())


class Sessions:
    def __init__(self, token: str | None) -> None:
        self.token = token or secrets.token_urlsafe(18)
        self._s: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, token: str) -> Session | None:
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        s = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        with self._lock:
            if len(self._s) >= MAX_SESSIONS:
                self._s.pop(next(iter(self._s)))
            self._s[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            return self._s.get(sid)

    @staticmethod
    def csrf_ok(s: Session, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(header.encode(), s.csrf.encode())
