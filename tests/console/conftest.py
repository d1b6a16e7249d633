"""The console against a real mosquitto, looked at through a real browser (Playwright driving Debian's
Chromium at /usr/bin/chromium through ``executable_path``; `playwright install` is never run)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from lepton_console.config import ConsoleConfig
from lepton_console.service import ConsoleService
from shared.protocol import schemas
from shared.protocol.containers import HardSample
from shared.protocol.rawsample import RawRows
from shared.protocol.topics import Topics
from shared.transport.mqtt import MqttClient, MqttSettings

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "test-token-0123456789abcdef"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless Chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (dev extra) is missing")
    # Playwright gives each browser a new, empty profile of its own (a temporary --user-data-dir).
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        yield b
        b.close()


def wait_until(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


@pytest.fixture
def consoles(broker) -> Iterator[Callable[..., ConsoleService]]:
    made: list[ConsoleService] = []

    def make(topics: Topics, name: str = "console_1", **kw: object) -> ConsoleService:
        cfg = ConsoleConfig(mqtt=MqttSettings(host="127.0.0.1", port=broker.port, backoff_max=0.5),
                            root=topics.root, name=name, port=0, token=TOKEN, push_every_s=0.5, **kw)
        svc = ConsoleService(cfg)
        svc.start()
        made.append(svc)
        assert svc.wait_ready(10) and svc.client.wait_connected(10)
        time.sleep(0.3)  # subscriptions granted
        return svc

    yield make
    for s in made:
        s.stop()
    errors = [e for s in made for e in (*s.errors, *s.client.callback_errors)]
    assert not errors, errors


def new_page(browser, **kw):
    """A page with the console's CSP bypassed: the tests' own probes evaluate script, and the hostile-string
    tests must show that escaping alone keeps markup inert (the CSP is a second line, not the first)."""
    return browser.new_page(bypass_csp=True, viewport=kw.pop("viewport", {"width": 1280, "height": 860}), **kw)


def login(page, svc: ConsoleService, path: str = "/") -> None:
    page.goto(f"{svc.url}/login?token={TOKEN}")
    if path != "/":
        page.goto(svc.url + path)
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)


def manifest(task: str, classes: list[str], version: int = 1, **metrics: float) -> bytes:
    m = schemas.Manifest(task=task, version=version, sha256="0" * 64, size=1, artifact=f"x/{version}",
                         input=schemas.InputSpec(tensor=schemas.TensorSpec(name="x", dtype="float32",
                                                                           shape=["batch", 1, 8, 8]),
                                                 layout="NCHW", preprocess={}, classes=classes),
                         outputs=[], metrics={"accuracy": 0.9, **metrics}, reference="", created=time.time(),
                         expires=time.time() + 3600)
    return schemas.dumps(m)


def jpeg_frame(seed: int, w: int = 160, h: int = 120) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(40, 200, 3)
    cv2.circle(img, (int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))), 18, (255, 255, 255), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def hard(device: str, sample: int, scores: list[float], *, raw: RawRows | None = None, x: np.ndarray | None = None,
         task: str = "digits", stream: str = "cam", seq: int | None = None) -> bytes:
    xs = np.zeros((1, 0), np.float32) if x is None else x[None].astype(np.float32)
    return HardSample(device, stream, task, 1, sample if seq is None else seq, 1, np.array([sample], np.int64), xs,
                      np.zeros((1, 4), np.float32), np.array([scores], np.float32), np.array([time.time()]),
                      raw).encode()


@pytest.fixture
def pub(mqtt_factory) -> MqttClient:
    return mqtt_factory(client_id=f"dev-{uuid.uuid4().hex[:6]}")
