"""`lepton topics`: filters for the readable topics that mosquitto_sub takes as they are."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lepton_cli.hints import command
from lepton_cli.main import main as lepton
from shared.protocol.schemas import ServiceStatus, dumps
from shared.protocol.topics import TOPIC_SPECS
from shared.transport.mqtt import MqttClient


def test_json_filters_are_one_line_of_t_options_per_json_kind(capsys):
    assert lepton(["topics", "--json-filters", "--root", "site/a"]) == 0
    words = capsys.readouterr().out.split()
    assert words[::2] == ["-t"] * (len(words) // 2)
    assert len(words) // 2 == sum(s.encoding == "json" for s in TOPIC_SPECS)
    assert all(w.startswith("site/a/") for w in words[1::2]) and "site/a/hub/status" in words


def test_the_table_says_which_kinds_are_binary(capsys):
    assert lepton(["topics"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"lepton/v1/model/\+/artifact/\+ +binary \(onnx\)", out) and "lepton/v1/edge/+/pred/+" in out
    assert re.search(r"lepton/v1/edge/\+/snapshot/\+/\+ +binary \(jpeg\)", out)
    assert lepton(["topics", "--root", "Bad Root"]) == 2


def test_mosquitto_sub_with_the_filters_prints_json_and_no_binary(broker, topics, mqtt_factory, tmp_path):
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        pytest.skip("mosquitto_sub is not installed (apt-get install mosquitto-clients)")
    c: MqttClient = mqtt_factory()

    def put(topic, payload: bytes) -> None:
        done = threading.Event()
        c.publish(topic, payload, qos=1, retain=True, on_ack=lambda rc: done.set())
        assert done.wait(5)

    status = dumps(ServiceStatus(service="bridge", id="b1", state="online", ts=1.0))
    put(topics.hub_status(), status)
    put(topics.artifact("digits", 1), b"\x08\x07onnx-bytes\xff\x00")
    # The filters as a shell expands `$(lepton topics --json-filters --root ROOT)`.
    filters = subprocess.run([sys.executable, "-m", "lepton_cli.main", "topics", "--json-filters", "--root",
                              topics.root], capture_output=True, text=True, check=True).stdout
    t0 = time.monotonic()
    out = subprocess.run(f"{sub} -v -p {broker.port} -W 2 {filters}", shell=True, capture_output=True,
                         timeout=20).stdout
    assert time.monotonic() - t0 < 15
    assert f"{topics.hub_status()} ".encode() + status in out
    assert b"artifact" not in out and b"onnx-bytes" not in out
    put(topics.hub_status(), b"")  # retained messages cleared for the session broker's other tests
    put(topics.artifact("digits", 1), b"")


def test_a_hint_names_the_script_of_this_install_when_path_does_not_find_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    bindir = Path(sys.executable).parent
    if not (bindir / "lepton").exists():
        pytest.skip("not run from an install with console scripts")
    monkeypatch.chdir(bindir.parent.parent)
    assert command("lepton") == f"{bindir.parent.name}/bin/lepton"
    monkeypatch.chdir(tmp_path)
    assert command("lepton") == str((bindir / "lepton").absolute())
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert command("lepton") == "lepton"
