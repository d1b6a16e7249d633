"""Headless Chromium (Debian's `chromium` package) for looking at pages the way a person would.

Every run gets a fresh profile and no network services (no QUIC, no background networking,
no component updates, no sync); console messages are read from Chromium's stderr log, where
each one is a line containing ``:CONSOLE``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r":CONSOLE[:(\]]")


def chromium() -> str:
    """The browser binary, or skip the test with the reason and the fix."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless Chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)")
    return found


@dataclass
class Page:
    png: Path
    dom: str
    console: list[str]


def open_page(html: Path, png: Path, width: int = 1300, height: int = 1700, timeout: float = 90) -> Page:
    """Render ``html`` (a local file) to ``png`` and return the rendered DOM and console messages."""
    binary = chromium()
    url = Path(html).resolve().as_uri()
    console: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lepton-chromium-") as profile:
        shot = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}/a", f"--window-size={width},{height}",
                               f"--screenshot={png}", url], capture_output=True, text=True, timeout=timeout)
        console += [ln for ln in shot.stderr.splitlines() if _CONSOLE.search(ln)]
        assert shot.returncode == 0 and png.exists(), f"chromium screenshot failed:\n{shot.stderr[-2000:]}"
        dom = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}/b", "--dump-dom", url],
                             capture_output=True, text=True, timeout=timeout)
        console += [ln for ln in dom.stderr.splitlines() if _CONSOLE.search(ln)]
        assert dom.returncode == 0, f"chromium --dump-dom failed:\n{dom.stderr[-2000:]}"
    return Page(png, dom.stdout, console)
