"""The console keeps each device's newest alert snapshots and links them from the device page."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request

import pytest

from shared.protocol.topics import Topics

from .conftest import TOKEN, jpeg_frame, wait_until

pytestmark = pytest.mark.broker


def _opener():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def test_a_retained_snapshot_is_served_to_a_logged_in_person_and_listed_on_its_device(consoles, topics: Topics, pub):
    svc = consoles(topics)
    jpeg = jpeg_frame(3)
    done = []
    pub.publish(topics.snapshot("cam-7", "cam", "person"), jpeg, qos=1, retain=True, on_ack=done.append)
    wait_until(lambda: done, 10)
    url = f"{svc.url}/snapshot/cam-7/cam/person.jpg"
    with pytest.raises(urllib.error.HTTPError) as ei:  # no session, no picture
        urllib.request.urlopen(url, timeout=5)
    assert ei.value.code == 401
    web = _opener()
    web.open(f"{svc.url}/login?token={TOKEN}", timeout=5).read()
    dev = wait_until(lambda: json.loads(web.open(f"{svc.url}/api/device/cam-7", timeout=5).read())["snapshots"], 10)
    assert dev == [{"stream": "cam", "name": "person", "ts": dev[0]["ts"], "bytes": len(jpeg),
                    "url": "/snapshot/cam-7/cam/person.jpg"}]
    with web.open(url, timeout=5) as r:
        assert r.read() == jpeg and r.headers["Content-Type"] == "image/jpeg"
    with pytest.raises(urllib.error.HTTPError) as ei:
        web.open(f"{svc.url}/snapshot/cam-7/cam/car.jpg", timeout=5)
    assert ei.value.code == 404
    # a hostile one (not a JPEG) is rejected on the wire and counted, and the good one stays
    pub.publish(topics.snapshot("cam-7", "cam", "person"), b"<script>", qos=1, retain=True)
    wait_until(lambda: svc.counters.get("rejected.snapshot.undecodable") == 1, 10)
    with web.open(url, timeout=5) as r:
        assert r.read() == jpeg
