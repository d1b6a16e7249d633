"""Bootstrap and the models CLI against a real mosquitto: what an agent would receive."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from cloud_worker.cli import main
from lepton_tasks import load_task
from shared.model import model_contract as mc
from shared.model import preprocess
from shared.protocol.schemas import Manifest
from shared.security.signing import load_public, verify_manifest_obj

from .helpers import Collector

pytestmark = pytest.mark.broker


def write_config(tmp_path, keydir, broker, topics, registry=None) -> str:
    f = tmp_path / "worker.toml"
    f.write_text(f'root = "{topics.root}"\nregistry = "{registry or tmp_path / "registry"}"\n'
                 f'signing_key = "{keydir / "signing.key"}"\npublic_key = "{keydir / "signing.pub"}"\n'
                 f'[mqtt]\nport = {broker.port}\n[training]\nbootstrap_epochs = 60\ncloud_epochs = 40\n')
    return str(f)


def test_bootstrap_publishes_a_signed_v1_that_plain_onnxruntime_runs(tmp_path, keydir, broker, topics,
                                                                      mqtt_factory, monkeypatch):
    monkeypatch.delenv("LEPTON_CONFIG", raising=False)
    cfg = write_config(tmp_path, keydir, broker, topics)
    sub = mqtt_factory()
    got = Collector()
    sub.subscribe_and_wait(topics.manifests("digits"), 1, got)
    sub.subscribe_and_wait(topics.artifacts("digits"), 1, got)

    rc = main(["bootstrap", "--task", "digits", "--config", cfg])

    assert rc == 0
    assert got.wait_for(lambda items: len(items) >= 2, 20)
    kinds = [topics.parse(m.topic).kind.value for m in got.items[:2]]
    assert kinds == ["artifact", "manifest"]  # artifact first, so the manifest never points at nothing
    art, man = got.items[0], got.items[1]
    obj = json.loads(man.payload)
    verify_manifest_obj(obj, load_public(keydir / "signing.pub"))
    m = Manifest.model_validate(obj)
    assert (m.task, m.version, m.parent) == ("digits", 1, None)
    assert m.artifact == art.topic == str(topics.artifact("digits", 1))
    assert hashlib.sha256(art.payload).hexdigest() == m.sha256 and len(art.payload) == m.size
    assert 0.7 < m.metrics["accuracy"] <= 1.0 and m.expires > m.created
    assert [o.name for o in m.outputs] == ["feat", "probs"]
    # An outsider with only the manifest: build the preprocessing, feed the model, compare.
    sess = ort.InferenceSession(art.payload, providers=["CPUExecutionProvider"])
    ref = mc.decode_reference(m.reference)
    feat, probs = sess.run(["feat", "probs"], {m.input.tensor.name: np.array(ref["x"])})
    assert np.abs(feat - ref["feat"]).max() <= m.tolerance and np.abs(probs - ref["probs"]).max() <= m.tolerance
    t = load_task("digits")
    d = t.dataset()
    run = preprocess.build(m.input.preprocess["steps"])
    x = np.concatenate([run(r) for r in d.raw[d.holdout[:50]]])
    assert list(x.shape[1:]) == m.input.tensor.shape[1:]
    acc = float((sess.run(["probs"], {"x": x})[0].argmax(1) == d.y[d.holdout[:50]]).mean())
    assert acc > 0.6

    # Rerun: no retraining, the same v1 republished (retained) — what docker-compose relies on.
    assert main(["bootstrap", "--task", "digits", "--config", cfg]) == 0
    assert json.loads((tmp_path / "registry" / "digits" / "v1.json").read_text())["sha256"] == m.sha256
    assert not (tmp_path / "registry" / "digits" / "v2.json").exists()


def test_promote_and_rollback_publish_new_versions_and_clear_old_artifacts(tmp_path, keydir, broker, topics,
                                                                           mqtt_factory, registry_copy,
                                                                           monkeypatch, capsys):
    monkeypatch.delenv("LEPTON_CONFIG", raising=False)
    reg = registry_copy()
    cfg = write_config(tmp_path, keydir, broker, topics, registry=reg)
    assert main(["bootstrap", "--task", "digits", "--config", cfg]) == 0  # publishes v1 under this root

    assert main(["models", "promote", "--task", "digits", "--version", "1", "--config", cfg]) == 0
    assert main(["models", "rollback", "--task", "digits", "--to", "1", "--config", cfg]) == 0

    sub = mqtt_factory()
    got = Collector()
    sub.subscribe_and_wait(topics.manifests("digits"), 1, got)
    sub.subscribe_and_wait(topics.artifacts("digits"), 1, got)
    assert got.wait_for(lambda items: sum("/manifest" in m.topic for m in items) >= 1
                        and sum("/artifact/" in m.topic for m in items) >= 2, 10)
    manifest = Manifest.model_validate_json(next(m.payload for m in got.items if m.topic.endswith("/manifest")))
    retained_artifacts = sorted(int(m.topic.rsplit("/", 1)[1]) for m in got.items if "/artifact/" in m.topic)
    assert manifest.version == 3 and manifest.parent == 1
    assert retained_artifacts == [2, 3]  # v1's retained artifact was cleared (keep the last two)
    v1 = json.loads((reg / "digits" / "v1.json").read_text())
    assert manifest.sha256 == v1["sha256"] and v1["artifact_cleared"] is True

    capsys.readouterr()
    assert main(["models", "list", "--config", cfg]) == 0
    listing = capsys.readouterr().out
    assert "promote" in listing and "rollback" in listing
    assert main(["models", "show", "--task", "digits", "--version", "3", "--decisions", "5", "--config", cfg]) == 0
    shown = capsys.readouterr().out
    assert '"source_version": 1' in shown and "operator rollback" in shown


def test_cli_errors_are_exit_codes_not_tracebacks(tmp_path, keydir, broker, topics, monkeypatch, capsys):
    monkeypatch.delenv("LEPTON_CONFIG", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense_key = 1\n")
    cfg = write_config(tmp_path, keydir, broker, topics)

    assert main(["run", "--config", str(bad), "--validate-config"]) == 2
    assert main(["run", "--config", cfg, "--validate-config"]) == 0
    assert main(["models", "show", "--task", "digits", "--config", cfg]) == 1  # empty registry
    assert main(["models", "rollback", "--task", "digits", "--config", cfg]) == 1
    err = capsys.readouterr().err
    assert "nonsense_key" in err and "no versions" in err
    import torch

    if not torch.cuda.is_available():
        monkeypatch.setenv("LEPTON_TORCH_DEVICE", "cuda")
        assert main(["bootstrap", "--task", "digits", "--no-publish", "--config", cfg]) == 69
        assert "no CUDA device" in capsys.readouterr().err
