"""docs/DEPLOY.md's way to get labels into the compose stack: the documented message is one the bridge
takes (the same decoder), on the topics the compose agents use, with the figures the configs have."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from cloud_worker.config import WorkerConfig
from edge_agent.config import AgentConfig
from hub_bridge.config import BridgeConfig
from shared.process.config import tomllib
from shared.protocol import schemas
from shared.protocol.topics import Kind, Topics
from shared.protocol.wire import decode

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "DEPLOY.md").read_text()


def _command(prog: str, needle: str) -> list[str]:
    line = next(ln for ln in DOC.splitlines() if ln.startswith(prog) and needle in ln)
    return shlex.split(line, comments=True)


def _opt(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def test_the_documented_label_message_is_one_the_bridge_takes():
    words = _command("mosquitto_pub", "/label/")
    d = decode(Topics(), _opt(words, "-t"), _opt(words, "-m").encode())
    assert d.topic.kind is Kind.LABEL and isinstance(d.value, schemas.Labels)
    assert (d.value.device, d.value.stream, d.value.task) == ("cam-1", "cam", "digits")
    assert _opt(words, "-q") == "1"


def test_it_labels_what_the_compose_agents_publish():
    agent = tomllib.loads((REPO / "docker" / "config" / "agent.toml").read_text())
    stream = agent.get("stream", AgentConfig.model_fields["stream"].default)
    pred = _opt(_command("mosquitto_sub", "/pred/"), "-t")
    assert pred == str(Topics().pred("cam-1", stream))
    assert agent["task"] == "digits" and "LEPTON_DEVICE: cam-1" in (REPO / "docker-compose.yml").read_text()


def test_the_figures_it_gives_are_the_defaults():
    text = " ".join(DOC.split("**Labels: how the worker learns here.**", 1)[1].split("\n\n## ", 1)[0].split())
    window = BridgeConfig.model_fields["fusion"].default_factory().window
    triggers = WorkerConfig.model_fields["triggers"].default_factory()
    assert f"`fusion.window` ({window:g} s;" in text and f"within {window:g} s of the prediction" in DOC
    assert f"after {triggers.min_new_labels} new labelled rows" in text
    assert f"or {triggers.interval_s / 60:g} minutes with any" in text
    assert re.search(r"up to ([\d,]+) items", text).group(1).replace(",", "") == str(
        schemas.Labels.model_fields["items"].metadata[1].max_length)
