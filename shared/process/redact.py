"""Masking secrets before text leaves the process: config dumps, log lines, sample refs.

Stream URLs carry credentials (``rtsp://user:pass@cam/stream``, ``...?token=abc``), and a
URL gets copied into many places; every one of them goes through :func:`redact_url` (or
:func:`redact_text` for free text that may contain URLs).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Config keys whose values are secrets (not "key": key *paths* like model.public_key are useful to see).
SECRET_KEYS = ("password", "passwd", "secret", "token")
# URL query parameters whose values are secrets (?token=, ?api_key=, ?auth=, ?sig=, ...).
SECRET_PARAMS = (*SECRET_KEYS, "pwd", "key", "auth", "sig", "credential")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def is_secret_key(name: str) -> bool:
    """A config key whose value must never be printed."""
    n = name.lower()
    return any(w in n for w in SECRET_KEYS)


def _is_secret_param(name: str) -> bool:
    n = name.lower()
    return any(w in n for w in SECRET_PARAMS)


def redact_url(url: str) -> str:
    """``url`` with the password (or a lone user token) and secret query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: say nothing rather than leak
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, _ = userinfo.partition(":")
        # user:pass -> user:***; a lone userinfo (often a token) -> ***
        netloc = f"{user}:{MASK}@{host}" if sep else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _is_secret_param(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted; the rest unchanged."""
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


def url_label(url: str, limit: int = 120) -> str:
    """A short, credential-free name for a URL (host and path, no query): for logs and refs."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        label = f"{host}{parts.path}" if host else parts.path
    except ValueError:
        label = "stream"
    return label[-limit:] or "stream"
