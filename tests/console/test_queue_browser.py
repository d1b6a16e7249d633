"""The label queue in a real browser, on a real broker: escalations in, labels out by keyboard, hostile
strings stay text, odd samples become placeholders, and a sample labelled on one console leaves the other."""

from __future__ import annotations

import numpy as np
import pytest

from shared.protocol import schemas
from shared.protocol.rawsample import RawRows

from .conftest import DOCS, hard, jpeg_frame, login, manifest, new_page, wait_until

pytestmark = pytest.mark.broker

CAMERA = ["empty", "person", "pet", "vehicle"]


def _labels_on_broker(mqtt_factory, topics) -> list[schemas.Labels]:
    got: list[schemas.Labels] = []
    c = mqtt_factory()
    c.subscribe_and_wait(topics.labels(), 1, lambda m: got.append(schemas.loads(m.payload, schemas.Labels)))
    return got


def test_queue_ranks_labels_by_keyboard_and_undo_retracts(browser, consoles, pub, topics, mqtt_factory):
    # Prepare: a camera task with four escalated frames (JPEG at capture resolution), one very uncertain
    svc = consoles(topics)
    got = _labels_on_broker(mqtt_factory, topics)
    pub.publish(topics.manifest("camera"), manifest("camera", CAMERA), qos=1, retain=True)
    scores = [[0.5, 0.3, 0.1, 0.1], [0.26, 0.25, 0.25, 0.24], [0.7, 0.1, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]]
    for i, s in enumerate(scores):
        pub.publish(topics.hard("cam-1", "cam"), hard("cam-1", 100 + i, s, task="camera",
                                                      raw=RawRows.jpeg([jpeg_frame(i)])), qos=1)
    assert wait_until(lambda: len(svc.state.items) == 4)
    page = new_page(browser)

    # Execute: open the queue, label the first item with key 2 (person), skip one, label, undo
    login(page, svc)
    first = page.locator("#i-device").inner_text(), page.evaluate("document.querySelector('#sample-img').src")
    natural = page.evaluate("new Promise(r => { const i = document.querySelector('#sample-img');"
                            " i.complete ? r([i.naturalWidth, i.naturalHeight]) : i.onload = () => r([i.naturalWidth, i.naturalHeight]); })")
    page.screenshot(path=str(DOCS / "console-queue.png"))
    page.keyboard.press("2")
    assert wait_until(lambda: len(got) == 1)
    page.wait_for_function("document.querySelector('#s-total').textContent === '1'")
    page.keyboard.press("s")
    page.keyboard.press("4")
    assert wait_until(lambda: len(got) == 2)
    page.keyboard.press("u")
    assert wait_until(lambda: len(got) == 3)

    # Assert: the most uncertain frame came first, shown at capture resolution; labels on the broker
    # under custody, with the console's name; the undo is a retraction that supersedes
    assert first[0] == "cam-1" and first[1].endswith("/sample/cam-1%3A101")
    assert natural == [160, 120]
    assert (got[0].items[0].sample, got[0].items[0].label) == (101, 1)
    assert got[0].publisher == "console_1" and got[0].seq == 0 and got[0].source == "console:console_1"
    assert got[2].supersedes and got[2].items[0].label == -1 and got[2].items[0].sample == got[1].items[0].sample
    page.wait_for_function("document.querySelector('#s-total').textContent === '1'")
    assert page.locator("#keys kbd").all_inner_texts() == ["1", "2", "3", "4"]


def test_hostile_strings_stay_text_and_odd_samples_show_why(browser, consoles, pub, topics):
    # Prepare: class names, an error and a worker id that are markup; a frame that is not a JPEG, an
    # oversized one, a window, and an escalation of features only
    svc = consoles(topics, max_sample_bytes=64 * 1024)
    evil = ["<script>window.pwned=1</script>", "<img src=x onerror=window.pwned=2>", "b", "c"]
    pub.publish(topics.manifest("camera"), manifest("camera", evil), qos=1, retain=True)
    pub.publish(topics.model_state("cam-9"), schemas.dumps(schemas.ModelState(
        device="cam-9", task="camera", state="rejected", version=1, offered=2,
        reason="<script>window.pwned=3</script>", ts=1e9)), qos=1)
    pub.publish(topics.status("cam-9"), schemas.dumps(schemas.Status(device="cam-9", state="online", boot=1,
                                                                     ts=1e9)), qos=1)
    samples = {
        1: RawRows.jpeg([b"\xff\xd8" + b"<script>window.pwned=4</script>" * 10]),
        2: RawRows.jpeg([b"\xff\xd8\xff\xe0" + bytes(100_000)]),
        3: RawRows.tensor(np.sin(np.linspace(0, 9, 3 * 64)).reshape(1, 3, 64).astype(np.float16)),
        4: None,
    }
    for s, raw in samples.items():
        pub.publish(topics.hard("cam-9", "cam"), hard("cam-9", s, [0.3, 0.3, 0.2, 0.2], task="camera", raw=raw),
                    qos=1)
    assert wait_until(lambda: len(svc.state.items) == 4)
    page = new_page(browser)

    # Execute: walk the queue with skip, reading what each sample shows; then the fleet page
    login(page, svc)
    seen = {}
    for _ in range(4):
        key = page.evaluate("document.querySelector('#i-device').textContent") + ":" + \
            page.locator("#sample-note").inner_text()
        seen[key] = page.locator("#sample-none").is_visible()
        keys_text = page.locator("#keys").inner_text()
        page.keyboard.press("s")
        page.wait_for_timeout(300)
    login(page, svc, "/fleet")
    page.wait_for_selector("tr[data-device='cam-9']")
    fleet_err = page.locator("tr[data-device='cam-9'] td.err").inner_text()

    # Assert: nothing ran, the markup is shown as text, each odd sample says why
    assert page.evaluate("window.pwned") is None
    assert "<script>window.pwned=1</script>" in keys_text
    assert fleet_err == "<script>window.pwned=3</script>"
    notes = " | ".join(seen)
    assert "not a frame that can be shown" in notes
    assert "larger than the console shows" in notes
    assert "window: 3 channel(s) x 64 steps" in notes
    assert "features only" in notes
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0


def test_a_sample_labelled_on_one_console_leaves_the_other(browser, consoles, pub, topics):
    # Prepare: two console processes' worth (two services, two browsers' pages) on one broker
    a, b = consoles(topics, name="console_a"), consoles(topics, name="console_b")
    pub.publish(topics.manifest("camera"), manifest("camera", CAMERA), qos=1, retain=True)
    for i in range(3):
        pub.publish(topics.hard("cam-2", "cam"), hard("cam-2", 200 + i, [0.4, 0.3, 0.2, 0.1], task="camera",
                                                      raw=RawRows.jpeg([jpeg_frame(i)])), qos=1)
    assert wait_until(lambda: len(a.state.items) == 3 and len(b.state.items) == 3)
    pa, pb = new_page(browser), new_page(browser)
    login(pa, a)
    login(pb, b)
    shown_b = pb.locator("#i-device").inner_text(), pb.evaluate("document.querySelector('#sample-img').src")

    # Execute: label on A what B shows first
    pa.keyboard.press("1")

    # Assert: B's screen moves on by itself (live event), within a second or two
    pb.wait_for_function(f"document.querySelector('#sample-img').src !== {shown_b[1]!r}", timeout=5000)
    assert wait_until(lambda: len(b.state.items) == 2, 5)


HOLD_QUEUE_READS = """
window.__hold = false; window.__held = [];
const plainFetch = window.fetch.bind(window);
window.fetch = async (url, opts) => {
  const r = await plainFetch(url, opts);
  if (window.__hold && String(url).includes("/api/queue")) await new Promise(go => window.__held.push(go));
  return r;
};
"""


def test_a_queue_read_begun_before_a_label_never_brings_that_sample_back(browser, consoles, pub, topics, mqtt_factory):
    # Prepare: four escalated frames, the first the most uncertain; the page's queue reads can be held back,
    # as a loaded server or network does: a read begun before a label lands answers after it
    svc = consoles(topics)
    got = _labels_on_broker(mqtt_factory, topics)
    pub.publish(topics.manifest("camera"), manifest("camera", CAMERA), qos=1, retain=True)
    scores = [[0.26, 0.25, 0.25, 0.24], [0.3, 0.3, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1], [0.5, 0.3, 0.1, 0.1]]
    for i, s in enumerate(scores):
        pub.publish(topics.hard("cam-3", "cam"), hard("cam-3", 300 + i, s, task="camera",
                                                      raw=RawRows.jpeg([jpeg_frame(i)])), qos=1)
    assert wait_until(lambda: len(svc.state.items) == 4)
    page = new_page(browser)
    page.add_init_script(HOLD_QUEUE_READS)
    login(page, svc)
    src = "document.querySelector('#sample-img').src"
    page.wait_for_timeout(500)  # the reads the arrivals caused have answered
    first = page.evaluate(src)

    # Execute: a new arrival starts a queue read, held; label the sample on screen; the held read answers
    # (holding the sample just labelled); label the next one
    page.evaluate("window.__hold = true")
    pub.publish(topics.hard("cam-3", "cam"), hard("cam-3", 399, [0.97, 0.01, 0.01, 0.01], task="camera",
                                                  raw=RawRows.jpeg([jpeg_frame(9)])), qos=1)
    page.wait_for_function("window.__held.length >= 1")
    page.keyboard.press("1")
    assert wait_until(lambda: len(got) == 1)
    page.wait_for_function("window.__held.length >= 2")  # the read chained after the label is held as well
    page.evaluate("window.__held[0]()")
    page.wait_for_timeout(300)
    second = page.evaluate(src)
    page.keyboard.press("2")  # leaves the screen at once; its request waits for the held read chained before it
    third = page.evaluate(src)
    page.evaluate("window.__hold = false; window.__held.forEach(go => go())")
    assert wait_until(lambda: len(got) == 2)
    page.wait_for_function("document.querySelector('#s-total').textContent === '2'")

    # Assert: the stale read was dropped: each sample shown once, in rank order, each labelled once
    assert first.endswith("cam-3%3A300") and second.endswith("cam-3%3A301"), (first, second)
    assert third.endswith("cam-3%3A302"), third
    assert [(g.items[0].sample, g.items[0].label) for g in got] == [(300, 0), (301, 1)]
