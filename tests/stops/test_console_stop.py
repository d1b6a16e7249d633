"""`lepton console` stops with every core busy, while a person labels, within half of `lepton up`'s kill
timeout, exits 0, and keeps every label it took: no bridge gives custody here, so each label the web API
accepted is in its outbox file after the stop (and goes out again at the next start)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import sys
import urllib.request

import pytest

from tests.hub.helpers import hard, wait_until

from .conftest import BOUND_S, reap, sigterm, spawn, within_bound

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROUNDS = 3
TOKEN = "stop-test-token-0123456789"


class Browser:
    """A logged-in session on the console's web API (cookie and CSRF token), as its pages use it."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.http.open(f"{self.url}/login?token={TOKEN}", timeout=10).read().decode()
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def get(self, path: str) -> dict:
        return json.loads(self.http.open(f"{self.url}{path}", timeout=10).read())

    def post(self, path: str, body: dict) -> int:
        req = urllib.request.Request(f"{self.url}{path}", json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "x-csrf-token": self.csrf})
        return self.http.open(req, timeout=10).status


def test_the_console_stopped_under_load_while_labelling_exits_0_in_time_and_keeps_its_labels(
        broker, topics, mqtt_factory, tmp_path, hog):
    outbox = tmp_path / "labels.sqlite"
    conf = tmp_path / "console.toml"
    conf.write_text(f'root = "{topics.root}"\nport = 0\ntoken = "{TOKEN}"\noutbox = "{outbox}"\n'
                    f'[mqtt]\nport = {broker.port}\n')
    dev = mqtt_factory()
    took, labelled = [], 0
    for rnd in range(ROUNDS):
        log = tmp_path / f"console-{rnd}.log"
        proc = spawn([sys.executable, "-m", "lepton_cli.main", "console", "--config", str(conf)], log)
        try:
            found = wait_until(lambda log=log: re.search(r"lepton console: (http://\S+)", log.read_text()), 60)
            assert found, log.read_text()[-2000:]
            web = Browser(found.group(1))
            for i in range(6):  # escalations reach the queue
                dev.publish(topics.hard("cam-1", "front"), hard("cam-1", rnd * 100 + i, boot=rnd + 1), qos=1)
            assert wait_until(lambda web=web: len(web.get("/api/queue")["items"]) >= 6, 30)
            hog.start()
            for it in web.get("/api/queue")["items"][:4]:
                assert web.post("/api/label", {"key": it["key"], "label": 1}) == 200
                labelled += 1
            assert hog.busy()
            stopped = sigterm(proc, log)
        finally:
            hog.stop()
            reap(proc)
        within_bound(stopped, took)
        with sqlite3.connect(outbox) as db:
            kept = db.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
        assert kept == labelled, (kept, labelled, stopped.output)
    print(f"console: stop took {took} s (bound {BOUND_S} s); {labelled} labels kept")
