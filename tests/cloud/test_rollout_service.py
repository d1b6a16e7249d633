"""The worker's staged rollout on a real mosquitto: a new version goes out as a release, not to the fleet, and
operators command it with `lepton-worker rollout ...` through the signed path."""

from __future__ import annotations

import json
import time

import pytest

from cloud_worker import cli
from lepton_cli import tomlgen
from lepton_tasks import load_task
from shared.model import groups
from shared.protocol import schemas
from shared.protocol.schemas import Release, RolloutCommand, RolloutEvent, Status
from shared.security.signing import sign_msg

from .helpers import Collector, fused_batch
from .test_service_broker import services, start_worker, wait_until  # noqa: F401 - the fixture is used

pytestmark = pytest.mark.broker
DEVICES = [f"cam-{i}" for i in range(1, 6)]


def of(items, cls) -> list:
    return [schemas.loads(m.payload, cls) for m in items if m.payload]


def test_a_new_version_is_released_to_a_stage_and_operators_command_it(
        tmp_path, keydir, broker, topics, mqtt_factory, registry_copy, services, capsys):  # noqa: F811
    registry_copy()
    w = start_worker(services, tmp_path, keydir, broker, topics, "w1", triggers={"min_new_labels": 300, "cooldown_s": 0},
                     rollout={"enabled": True, "stages": ["20%", "100%"], "min_stage_s": 3600})
    sub, hub = mqtt_factory(), mqtt_factory()
    releases, events, fleet, version2 = Collector(), Collector(), Collector(), Collector()
    sub.subscribe_and_wait(topics.release("digits"), 1, releases)
    sub.subscribe_and_wait(topics.rollout_event("digits"), 1, events)
    sub.subscribe_and_wait(topics.manifests("digits"), 1, fleet)
    sub.subscribe_and_wait(topics.model_version("digits", 2), 1, version2)
    for d in DEVICES:  # births: the fleet the worker turns "20 %" into a ring threshold over
        hub.publish(topics.status(d), schemas.dumps(Status(device=d, state="online", boot=1, models={"digits": 1},
                                                           ts=time.time())), qos=1, retain=True)
    time.sleep(0.5)
    stream = load_task("digits").dataset().stream
    v1 = w.registry.get("digits", 1).onnx
    # Execute: labelled rows enough to retrain
    for seq, i in enumerate(range(0, 400, 100)):
        hub.publish(topics.hub_batch("digits"), fused_batch("digits", v1, 1, stream[i:i + 100], seq=seq).encode(), qos=1)
    # Assert: v2 is a release on stage 0 (one device of five), on its own topic; the fleet keeps v1
    assert events.wait_for(lambda items: any(e.action == "start" for e in of(items, RolloutEvent)), 60), \
        w.registry.decisions("digits")
    assert releases.wait_for(lambda items: bool(of(items, Release)), 10)
    rel = of(releases.items, Release)[-1]
    assert (rel.state, rel.candidate, rel.control, rel.stage) == ("running", 2, 1, 0)
    assert sum(groups.target_version(rel, d, ()) == 2 for d in DEVICES) == 1
    assert version2.wait_for(lambda items: any(m.payload for m in items), 10)
    assert schemas.loads(version2.items[-1].payload, schemas.Manifest).version == 2
    assert all(json.loads(m.payload)["version"] == 1 for m in fleet.items if m.payload)
    assert w.rollouts is not None and w.rollouts.holds("digits")  # no new candidate while it is judged

    conf = tmp_path / "worker.toml"
    conf.write_text(tomlgen.dumps({"root": topics.root, "registry": str(tmp_path / "registry"),
                                   "signing_key": str(keydir / "signing.key"),
                                   "mqtt": {"host": "127.0.0.1", "port": broker.port}}))

    def rollout(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = cli.main(["rollout", *argv, "--task", "digits", "--config", str(conf)])
        return rc, capsys.readouterr().out

    # pause: answered with an event that carries the command id
    rc, out = rollout("pause", "--timeout", "20")
    assert rc == 0 and json.loads(out)["action"] == "pause"
    assert releases.wait_for(lambda items: of(items, Release)[-1].state == "paused", 10)
    # an unsigned command and one signed by another key are refused and counted, and change nothing
    unsigned = RolloutCommand(task="digits", id="forged-1", action="abort", ts=time.time())
    hub.publish(topics.rollout_cmd("digits"), schemas.dumps(unsigned), qos=1)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    hub.publish(topics.rollout_cmd("digits"), sign_msg(unsigned, Ed25519PrivateKey.generate()), qos=1)
    assert wait_until(lambda: w.counters.get("rollout.cmd.rejected.bad_signature") == 2, 10)
    # a pin to a version the registry does not have is refused (exit 1)
    rc, out = rollout("pin", "--group", "site:garage", "--version", "9", "--timeout", "20")
    assert rc == 1 and json.loads(out)["action"] == "refused" and "not in the registry" in out
    # abort: back to v1's weights as v3, for everyone
    rc, out = rollout("abort", "--timeout", "30")
    assert rc == 0 and json.loads(out)["action"] == "abort"
    assert releases.wait_for(lambda items: of(items, Release)[-1].state == "aborted", 10)
    final = of(releases.items, Release)[-1]
    assert final.restored == 3 and all(groups.target_version(final, d, ()) == 3 for d in DEVICES)
    assert fleet.wait_for(lambda items: json.loads(items[-1].payload)["version"] == 3, 10)
    assert w.registry.get("digits", 3).record["source_version"] == 1
    assert not w.rollouts.holds("digits")
    rc, out = rollout("show", "--events", "5")
    assert rc == 0 and '"state": "aborted"' in out and '"action": "abort"' in out
