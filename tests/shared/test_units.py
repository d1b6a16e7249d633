"""Small pure pieces: config loading, dedup, signing, preprocessing, bounded queue, wire dispatch."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from lepton_tasks import available, load_task
from lepton_tasks.packs.digits import render_digit
from shared.model import preprocess
from shared.process.bounded import DropOldestQueue
from shared.process.config import ConfigError, load_config
from shared.protocol import schemas, wire
from shared.protocol.dedup import Deduper, SeqSet
from shared.protocol.topics import Topics
from shared.security import signing
from shared.transport.mqtt import MqttSettings

from .samples import feature_batch, json_samples


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field("d1", description="id")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="broker")


def test_config_file_then_env(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('device = "cam-7"\n[mqtt]\nport = 1999\nhost = "10.0.0.1"\n')
    cfg = load_config(Cfg, f, environ={"LEPTON_MQTT__PORT": "2000", "OTHER": "x"})
    assert (cfg.device, cfg.mqtt.host, cfg.mqtt.port) == ("cam-7", "10.0.0.1", 2000)


@pytest.mark.parametrize("text,needle", [('devise = "x"', "devise"), ("[mqtt]\nport = 0", "mqtt.port"),
                                         ("not toml =", "not valid TOML")])
def test_config_errors_name_the_key(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(Cfg, f, environ={})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "nope.toml", environ={})


@given(st.lists(st.integers(0, 200), max_size=300))
def test_seqset_is_a_set(xs):
    s, ref = SeqSet(), set()
    for x in xs:
        assert s.add(x) == (x not in ref)
        ref.add(x)
    assert all((x in s) == (x in ref) for x in range(-1, 202))
    # intervals stay minimal: one per maximal run
    runs = sum(1 for x in ref if x - 1 not in ref)
    assert s.intervals == runs


def test_deduper_accepts_out_of_order_replay_and_drops_repeats():
    d = Deduper()
    live = list(range(100, 200))
    replay = list(range(0, 100))
    order = live[:50] + replay + live[50:]
    assert all(d.first_time("cam-1", 7, s) for s in order)
    assert not d.first_time("cam-1", 7, 5)
    assert d.first_time("cam-1", 8, 5)  # a new boot is a new stream
    assert d.duplicates == 1


def test_signing_round_trip_and_tamper(tmp_path):
    kid = signing.generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    priv, pub = signing.load_private(tmp_path / "k"), signing.load_public(tmp_path / "k.pub")
    manifest = json_samples(Topics())[-1][1]
    wire_bytes = signing.sign_manifest(manifest, priv)
    obj = json.loads(wire_bytes)
    assert obj["key_id"] == kid
    signing.verify_manifest_obj(obj, pub)
    assert schemas.loads(wire_bytes, schemas.Manifest).version == manifest.version
    for field, value in [("version", 99), ("sha256", "b" * 64), ("expires", obj["expires"] + 1)]:
        bad = dict(obj, **{field: value})
        with pytest.raises(signing.SignatureError):
            signing.verify_manifest_obj(bad, pub)
    with pytest.raises(signing.SignatureError, match="not signed"):
        signing.verify_manifest_obj({k: v for k, v in obj.items() if k != "signature"}, pub)
    signing.generate_keypair(tmp_path / "k2", tmp_path / "k2.pub")
    with pytest.raises(signing.SignatureError, match="trusted key"):
        signing.verify_manifest_obj(obj, signing.load_public(tmp_path / "k2.pub"))
    with pytest.raises(FileExistsError):
        signing.generate_keypair(tmp_path / "k", tmp_path / "k.pub")


def test_preprocess_digits_recovers_the_8x8_image():
    task = load_task("digits")
    from sklearn.datasets import load_digits

    img = load_digits().images[0]
    x = task.pipeline()(render_digit(img))
    assert x.shape == (1, 1, 8, 8) and x.dtype == np.float32
    assert np.corrcoef(x.ravel(), img.ravel())[0, 1] > 0.95


def test_preprocess_rejects_bad_steps_and_inputs():
    with pytest.raises(preprocess.PreprocessError, match="unknown op"):
        preprocess.build([{"op": "magic"}])
    with pytest.raises(preprocess.PreprocessError):
        preprocess.build([{"op": "znorm"}])(np.zeros((2, 3, 4)))
    with pytest.raises(preprocess.PreprocessError, match="NaN"):
        preprocess.build([{"op": "batch"}])(np.array([[np.nan, 1.0]]))


def test_letterbox_keeps_aspect():
    out = preprocess.build([{"op": "letterbox", "size": [32, 32]}])(np.full((10, 20, 3), 255, np.uint8))
    assert out.shape == (32, 32, 3)
    assert out[0, 0, 0] == 0 and out[16, 16, 0] == 255


@pytest.mark.parametrize("name", [f.name for f in available()])
def test_every_task_loads_offline_and_splits_disjointly(name, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError(f"task {name} tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    task = load_task(name)
    d = task.dataset()
    assert len(d.raw) == len(d.y)
    s, h, r = set(d.seed), set(d.holdout), set(d.stream)
    assert not (s & h or s & r or h & r) and len(s | h | r) <= len(d.y)
    assert set(d.y[d.seed]) == set(range(len(task.classes)))  # v1 sees every class
    x = task.preprocess_all(d.raw[:3])
    assert x.shape == (3, *task.input_shape)
    assert task.input_spec().tensor.shape[1:] == list(task.input_shape)


def test_drop_oldest_queue_counts():
    q: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2 and q.drain() == [2, 3, 4]
    assert q.get(timeout=0.01) is None


def test_wire_decode_dispatches_and_rejects():
    t = Topics()
    for topic, msg in json_samples(t):
        assert wire.decode(t, str(topic), schemas.dumps(msg)).value == msg
    fb = feature_batch()
    assert wire.decode(t, str(t.feat("cam-1", "front")), fb.encode()).topic.device == "cam-1"
    cases = [
        (str(t.feat("cam-2", "front")), fb.encode(), "topic_mismatch"),   # a device speaking for another
        (str(t.feat("cam-1", "front")), b"garbage", "truncated"),
        ("lepton/v1/edge/cam-1/wat", b"{}", "bad_topic"),
        (str(t.manifest("digits")), b"", "empty"),
        (str(t.status("cam-1")), b'{"schema": 9}', "unknown_schema_version"),
    ]
    for topic, payload, reason in cases:
        with pytest.raises(wire.WireError) as e:
            wire.decode(t, topic, payload)
        assert e.value.reason == reason
        if reason != "bad_topic":  # the same verdict for a consumer that parsed (and cached) the topic itself
            with pytest.raises(wire.WireError) as e:
                wire.decode_parsed(t.parse(topic), payload)
            assert e.value.reason == reason
    assert wire.decode_parsed(t.parse(str(t.feat("cam-1", "front"))), fb.encode()).seq == fb.seq



def test_receiver_counts_cleared_retained_topics_apart_from_rejections():
    from shared.process.counters import Counters
    from shared.transport.mqtt import Message

    t = Topics()
    counters, got = Counters(), []
    r = wire.Receiver(t, lambda d, m: got.append(d), counters)
    r(Message(str(t.artifact("digits", 1)), b"", 1, True))
    r(Message(str(t.manifest("digits")), b"", 1, True))
    r(Message(str(t.manifest("digits")), b"{", 1, True))
    assert counters.snapshot() == {"cleared.artifact": 1, "cleared.manifest": 1, "rejected.manifest.not_json": 1}
    assert got == []


def test_redacted_masks_every_secret():
    from shared.process.config import redacted

    class Svc(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mqtt: MqttSettings = Field(description="broker")
        bulk_password: str | None = Field(None, description="second identity")

    out = redacted(Svc(mqtt=MqttSettings(username="u", password="hunter2"), bulk_password="s3cret"))
    assert out["mqtt"]["password"] == "***" and out["bulk_password"] == "***" and out["mqtt"]["username"] == "u"
    assert "hunter2" not in json.dumps(out) and "s3cret" not in json.dumps(out)
