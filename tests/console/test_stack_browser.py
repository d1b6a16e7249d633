"""The console on a real stack (broker, bridge, worker, two replaying agents; tests/e2e/faultstack.py), in a
real browser: a person labels 20 escalations by keyboard and the worker learns them; an undo and a
correction supersede at the worker; a killed agent shows offline on the fleet page within its keepalive."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import numpy as np
import pytest

from lepton_console.config import ConsoleConfig
from lepton_console.service import ConsoleService
from lepton_tasks import load_task
from shared.protocol import schemas
from shared.transport.mqtt import MqttClient, MqttSettings

from ..e2e.faultstack import FaultStack
from .conftest import DOCS, TOKEN, login, new_page, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]
KEEPALIVE = 5


def _truth(console: ConsoleService, key: str) -> int | None:
    it = console.state.get(key)
    task, _, idx = (it.ref if it else "").partition(":")
    return int(load_task("digits").dataset().y[int(idx)]) if idx.isdigit() else None


def test_a_person_labels_by_keyboard_corrects_and_watches_the_fleet(tmp_path, browser):
    # Prepare: the stack, no simulated labeller; the console in this process with the worker's registry
    stack = FaultStack(tmp_path / "stack", agents=2, fps=10, label_fraction=0.0,
                       agent={"mqtt": {"keepalive": KEEPALIVE}},
                       worker={"triggers": {"min_new_labels": 100000}, "status_interval_s": 0.5}).start()
    worker_status: dict = {}
    probe = MqttClient(MqttSettings(port=stack.broker.port), client_id="console-test-probe")
    labels: list[schemas.Labels] = []
    probe.subscribe(stack.topics.cloud_status("worker-1"), 1,
                    lambda m: worker_status.update(schemas.loads(m.payload, schemas.ServiceStatus).counters))
    probe.subscribe(stack.topics.labels(), 1, lambda m: labels.append(schemas.loads(m.payload, schemas.Labels)))
    probe.start()
    console = ConsoleService(ConsoleConfig(mqtt=MqttSettings(port=stack.broker.port), name="console_1", port=0,
                                           token=TOKEN, registry=stack.dir / "registry", push_every_s=0.5))
    console.start()
    try:
        assert console.wait_ready(10) and probe.wait_connected(10)
        assert wait_until(lambda: len(console.state.items) >= 24, 60), "escalations did not reach the queue"
        assert wait_until(lambda: worker_status, 10)
        before = worker_status.get("learn.rows.labelled", 0)
        page = new_page(browser)
        login(page, console)

        # Execute 1: label 20 samples, one keystroke each, the key of the class the person sees
        done: list[tuple[str, int]] = []
        for _ in range(20):
            src = page.get_attribute("#sample-img", "src") or ""
            key = urllib.request.unquote(src.rsplit("/sample/", 1)[-1])
            assert key not in dict(done), f"{key} came back to the screen after it was labelled"
            wait_until(lambda k=key: _truth(console, k) is not None, 3)
            y = _truth(console, key)
            if y is None:
                y = int(np.argmax(console.state.get(key).scores))
            page.keyboard.press(str(y))
            done.append((key, y))
            page.wait_for_function(f"!(document.querySelector('#sample-img').src || '').endsWith({json.dumps(src.rsplit('/', 1)[-1])})",
                                   timeout=5000)
        page.wait_for_function("document.querySelector('#s-total').textContent === '20'", timeout=10_000)
        page.screenshot(path=str(DOCS / "console-queue-digits.png"))
        learned = wait_until(lambda: worker_status.get("learn.rows.labelled", 0) - before >= 20, 45)

        # Execute 2: undo the last label; correct the first from the review page
        page.keyboard.press("u")
        undone_key = done[-1][0]
        corrected_key, old = done[0]
        new = (old + 1) % 10
        login(page, console, "/review")
        page.click(f".card[data-key='{corrected_key}']")
        page.click(f"#c-classes button[data-label='{new}']")
        relabelled = wait_until(lambda: worker_status.get("learn.relabel.applied", 0) >= 1
                                and worker_status.get("learn.relabel.retracted", 0) >= 1, 20)
        time.sleep(3)  # the worker saves its buffer every ack interval (2 s)
        buf = np.load(stack.dir / "registry" / "digits" / "buffer.npz")
        rows = {(str(d), int(s)): int(y) for d, s, y in zip(buf["f_device"], buf["f_sample"], buf["f_label"],
                                                              strict=True)}
        ledger = {(str(d), int(s)): int(y) for d, s, y in zip(buf["learned_device"], buf["learned_sample"],
                                                               buf["learned_label"], strict=True)}

        # Execute 3: kill an agent; the fleet page shows it offline within its keepalive
        login(page, console, "/fleet")
        page.wait_for_selector("tr[data-device='cam-2'].state-online", timeout=10_000)
        t0 = time.monotonic()
        stack.procs["agent-2"].signal(signal.SIGKILL, 5)
        page.wait_for_selector("tr[data-device='cam-2'].state-offline", timeout=int(3 * KEEPALIVE * 1000))
        offline_after = time.monotonic() - t0
        page.screenshot(path=str(DOCS / "console-fleet.png"))
    finally:
        console.stop()
        probe.stop()
        stack.kill_all()

    # Assert: 20 labels (then the undo's retraction and the correction) on the broker, from the console, under
    # custody; the worker learned 20 labelled rows; after the correction the worker holds the new label, not
    # the old, in its store and its learned-once ledger; the undone label is gone from the store
    firsts: dict[int, schemas.Labels] = {}
    for lb in labels:
        if lb.publisher == "console_1":  # a label not in custody within 30 s goes out again: the same seq
            firsts.setdefault(lb.seq, lb)
    mine = [firsts[seq] for seq in sorted(firsts)]
    assert sorted(firsts) == list(range(len(firsts))), "a label message never reached the broker"
    assert [(lb.items[0].sample, lb.items[0].label) for lb in mine[:20]] == \
        [(int(k.split(":")[1]), y) for k, y in done]
    assert mine[20].supersedes and mine[20].items[0].label == -1
    assert mine[21].supersedes and mine[21].items[0].label == new
    assert learned, f"worker learned {worker_status.get('learn.rows.labelled', 0) - before} labelled rows"
    assert relabelled, worker_status
    dev, sample = corrected_key.split(":")
    assert rows.get((dev, int(sample))) == new and ledger.get((dev, int(sample))) == new
    udev, usample = undone_key.split(":")
    assert (udev, int(usample)) not in rows and ledger.get((udev, int(usample))) == -1
    assert offline_after < 2 * KEEPALIVE + 3, offline_after
