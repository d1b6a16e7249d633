"""Hostile payload families at every decode boundary: each must end in the boundary's typed error.

The families: oversized, truncated, huge numbers (5,000 digits, 1e999), deep nesting (30,000
levels), NaN/Infinity, wrong dtype or shape, unknown schema version, bad signature. They are
spliced into valid payloads of every schema and container at a place hypothesis picks, and fed to
every decoder a service runs on received bytes: ``schemas.loads`` / ``loads_any``, ``codec.decode``,
the three containers, ``wire.decode``, the agent's manifest and release checks, the manifest's reference
and the worker's rollout-command check.
Nothing may escape as a plain ``ValueError``, ``RecursionError`` or anything else.
"""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_worker.rollout.wiring import CommandRejected, verify_command
from edge_agent.rollout import parse_release
from edge_agent.verify import Rejection, parse_manifest
from shared.model.model_contract import decode_reference
from shared.protocol import codec, schemas, strictjson, wire
from shared.protocol.containers import CONTAINERS, FeatureBatch, FusedBatch, HardSample
from shared.protocol.topics import Topics
from shared.security.signing import sign_manifest, sign_msg

from .samples import NOW, feature_batch, fused_batch, hard_sample, json_samples

T = Topics()
SAMPLES = json_samples(T)
CONTAINER_SAMPLES = [(T.feat("cam-1", "front"), feature_batch()), (T.hard("cam-1", "front"), hard_sample()),
                     (T.hub_batch("digits"), fused_batch())]

HUGE_INT = "9" * 5000
DEEP = "[" * 30000 + "]" * 30000
# What hostile JSON values look like once spliced in place of one value.
HOSTILE_VALUES = [HUGE_INT, "-" + HUGE_INT, "1e999", "-1e999", "NaN", "Infinity", "-Infinity", DEEP,
                  '{"a":' * 5000 + "1" + "}" * 5000, '"\\ud800"', "1" * 21, "0." + "1" * 5000]


def _splice(text: str, value: str, where: int) -> str:
    """Replace the value after the where-th ':' (or the first array element) with ``value``."""
    cuts = [i for i, ch in enumerate(text) if ch == ":"]
    if not cuts:
        return value
    i = cuts[where % len(cuts)] + 1
    j = i
    depth = 0
    in_str = False
    while j < len(text):  # skip over one JSON value
        ch = text[j]
        if in_str:
            if ch == "\\":
                j += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        j += 1
    return text[:i] + value + text[j:]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(SAMPLES))), st.sampled_from(HOSTILE_VALUES), st.integers(0, 100))
def test_hostile_json_values_are_typed_rejections_for_every_schema(i, value, where):
    topic, msg = SAMPLES[i]
    payload = _splice(schemas.dumps(msg).decode(), value, where).encode()
    with pytest.raises(schemas.SchemaError):
        schemas.loads(payload, type(msg))
    with pytest.raises(schemas.SchemaError):
        schemas.loads_any(payload)
    with pytest.raises(wire.WireError):
        wire.decode(T, str(topic), payload)


@pytest.mark.parametrize("payload", [HUGE_INT.encode(), DEEP.encode(), b"NaN", b"1e999", b"\xff\xfe",
                                     b'{"schema":1,"kind":"status","a":' + HUGE_INT.encode() + b"}",
                                     b'{"schema":' + HUGE_INT.encode() + b"}",
                                     b'{"schema":1,"kind":"label","items":' + DEEP.encode() + b"}"])
def test_whole_payload_families(payload):
    with pytest.raises(schemas.NotJson) as e:
        schemas.loads_any(payload)
    assert e.value.reason == "not_json"


def test_unknown_schema_version_and_oversized_for_every_schema():
    for topic, msg in SAMPLES:
        obj = json.loads(schemas.dumps(msg))
        obj["schema"] = 2
        with pytest.raises(wire.WireError) as e:
            wire.decode(T, str(topic), json.dumps(obj).encode())
        assert e.value.reason == "unknown_schema_version"
        with pytest.raises(wire.WireError) as e:
            wire.decode(T, str(topic), b" " * (schemas.max_bytes(type(msg)) + 1))
        assert e.value.reason == "oversized"


def _container(header: bytes, body: bytes = b"") -> bytes:
    pre = struct.pack("<3sBI", codec.MAGIC, codec.VERSION, len(header))
    return pre + header + b"\0" * ((-len(pre + header)) % 8) + body


@pytest.mark.parametrize("header", [
    b'{"meta":{},"tensors":' + DEEP.encode() + b"}",
    b'{"meta":{},"tensors":[{"name":"x","dtype":"float32","shape":[' + HUGE_INT.encode() + b"]}]}",
    b'{"meta":{},"tensors":[{"name":"x","dtype":"float32","shape":[1e999]}]}',
    b'{"meta":{},"tensors":[{"name":"x","dtype":"float32","shape":[NaN]}]}',
    b'{"meta":{"a":' + HUGE_INT.encode() + b'},"tensors":[]}',
    b'{"meta":{},"tensors":[{"name":"x","dtype":"object","shape":[1]}]}',
    b'{"meta":{},"tensors":[{"name":"x","dtype":"float32","shape":[-1]}]}',
])
def test_container_header_families_are_codec_errors(header):
    if len(header) > codec.DEFAULT_LIMITS.max_header:
        header = header[: codec.DEFAULT_LIMITS.max_header]
    with pytest.raises(codec.CodecError):
        codec.decode(_container(header))
    for cls in CONTAINERS.values():
        with pytest.raises(codec.CodecError):
            cls.decode(_container(header))


@pytest.mark.parametrize("key,value", [("boot", HUGE_INT[:8000]), ("seq", "1" * 21), ("seq", "-" + "9" * 19),
                                       ("model_version", "1e3"), ("device", "a/b"), ("stream", "+")])
def test_container_meta_families(key, value):
    fb = feature_batch()
    b = codec.decode(fb.encode())
    meta = {**b.meta, key: value}
    payload = codec.encode({k: np.asarray(v) for k, v in b.tensors.items()}, meta)
    with pytest.raises(codec.CodecError):
        FeatureBatch.decode(payload)


def test_fused_meta_lists_are_checked():
    fb = fused_batch()
    b = codec.decode(fb.encode())
    for key, value in [("devices", "[" * 4000 + "]" * 4000), ("devices", '{"a":1}'), ("context", "[" + HUGE_INT + "]"),
                       ("context", "[1]"), ("devices", '["a/b"]')]:
        payload = codec.encode({k: np.asarray(v) for k, v in b.tensors.items()}, {**b.meta, key: value})
        with pytest.raises(codec.CodecError):
            FusedBatch.decode(payload)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(range(len(CONTAINER_SAMPLES))), st.sampled_from(["dtype", "shape", "nan", "truncate"]),
       st.data())
def test_container_tensor_families(i, family, data):
    topic, rec = CONTAINER_SAMPLES[i]
    b = codec.decode(rec.encode())
    tensors = {k: np.array(v) for k, v in b.tensors.items()}
    name = data.draw(st.sampled_from(sorted(tensors)))
    if family == "dtype":
        tensors[name] = tensors[name].astype(np.int16 if tensors[name].dtype.kind == "f" else np.float64)
    elif family == "shape":
        # Rank 4 where the container wants rank 1 or 2; a hard sample's x (any rank >= 2) gets rank 1.
        flat = tensors[name].reshape(-1)
        tensors[name] = flat if name == "x" else flat[:1].reshape(1, 1, 1, 1)
    elif family == "nan" and tensors[name].dtype.kind == "f" and tensors[name].size:
        tensors[name].reshape(-1)[0] = np.nan
    payload = codec.encode(tensors, b.meta)
    if family == "truncate":
        payload = payload[: data.draw(st.integers(0, len(payload) - 1))]
    elif family == "nan" and not (tensors[name].dtype.kind == "f" and tensors[name].size):
        return  # nothing to poison in an integer tensor
    with pytest.raises(codec.CodecError):
        type(rec).decode(payload)
    with pytest.raises(wire.WireError):
        wire.decode(T, str(topic), payload)


def _signed_manifest() -> tuple[bytes, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    m = SAMPLES[-1][1]
    return sign_manifest(m, key), key


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(HOSTILE_VALUES), st.integers(0, 200))
def test_manifest_check_turns_every_family_into_a_rejection(value, where):
    raw, key = _signed_manifest()
    bad = _splice(raw.decode(), value, where).encode()
    with pytest.raises(Rejection) as e:
        parse_manifest(bad, task="digits", highest=0, public_key=key.public_key(), topics=T, now=NOW,
                       max_artifact_bytes=10_000_000)
    assert e.value.reason in {"not_json", "bad_signature", "invalid", "other_task"}


def test_manifest_with_a_bad_signature_or_deep_preprocess_is_rejected():
    raw, key = _signed_manifest()
    obj = json.loads(raw)
    obj["signature"] = base64.b64encode(b"\0" * 64).decode()
    with pytest.raises(Rejection) as e:
        parse_manifest(json.dumps(obj).encode(), task="digits", highest=0, public_key=key.public_key(), topics=T,
                       now=NOW, max_artifact_bytes=10_000_000)
    assert e.value.reason == "bad_signature"
    obj = json.loads(raw)
    obj["input"]["preprocess"]["x"] = json.loads("[" * 40 + "]" * 40)
    with pytest.raises(Rejection) as e:
        parse_manifest(json.dumps(obj).encode(), task="digits", highest=0, public_key=key.public_key(), topics=T,
                       now=NOW, max_artifact_bytes=10_000_000)
    assert e.value.reason == "not_json"


@pytest.mark.parametrize("ref", ["", "!!!", base64.b64encode(b"LPT\x01" + b"\xff" * 8).decode(),
                                 base64.b64encode(_container(b'{"meta":' + DEEP.encode()[:60000] + b"}")).decode()])
def test_reference_families(ref):
    with pytest.raises(codec.CodecError):
        decode_reference(ref)


def test_strictjson_never_raises_anything_but_its_error():
    for payload in [b"", b"\x00", DEEP.encode(), HUGE_INT.encode(), b"[1e999]", b'"\\ud800"', b"-", b"[" * 100]:
        try:
            strictjson.loads(payload)
        except strictjson.JsonError as exc:
            assert exc.reason == "not_json"
    assert strictjson.loads(b'{"a":[1,2.5,{"b":-3}],"c":9223372036854775807}') == {
        "a": [1, 2.5, {"b": -3}], "c": 9223372036854775807}
    assert json.loads(json.dumps(HardSample.__name__)) == "HardSample"


# ---- staged rollout: the agent's release check and the worker's command check -----------------
def _signed_release_and_command() -> tuple[bytes, bytes, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    rel = next(m for _, m in SAMPLES if isinstance(m, schemas.Release))
    cmd = next(m for _, m in SAMPLES if isinstance(m, schemas.RolloutCommand))
    return sign_msg(rel, key), sign_msg(cmd.model_copy(update={"ts": NOW}), key), key


RELEASE_REASONS = {"not_json", "bad_signature", "invalid", "other_task", "wrong_kind", "unknown_schema_version",
                   "oversized", "not_newer"}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(HOSTILE_VALUES), st.integers(0, 200))
def test_release_and_command_checks_turn_every_family_into_a_typed_rejection(value, where):
    rel, cmd, key = _signed_release_and_command()
    with pytest.raises(Rejection) as e:
        parse_release(_splice(rel.decode(), value, where).encode(), task="digits", public_key=key.public_key(), seq=0)
    assert e.value.reason in RELEASE_REASONS
    with pytest.raises(CommandRejected) as c:
        verify_command(_splice(cmd.decode(), value, where).encode(), task="digits", public=key.public_key(), now=NOW)
    assert c.value.reason in RELEASE_REASONS | {"stale"}


def test_release_and_command_checks_name_each_failure():
    rel, cmd, key = _signed_release_and_command()
    rogue = Ed25519PrivateKey.generate().public_key()
    trusted = key.public_key()

    def release_reason(payload: bytes, seq: int = 0, public=trusted) -> str:
        with pytest.raises(Rejection) as e:
            parse_release(payload, task="digits", public_key=public, seq=seq)
        return e.value.reason

    def command_reason(payload: bytes, now: float = NOW, public=trusted) -> str:
        with pytest.raises(CommandRejected) as e:
            verify_command(payload, task="digits", public=public, now=now)
        return e.value.reason

    unsigned = json.loads(rel)
    unsigned.pop("signature")
    assert release_reason(rel, public=rogue) == "bad_signature"
    assert release_reason(json.dumps(unsigned).encode()) == "bad_signature"
    assert release_reason(rel, seq=6) == "not_newer"
    assert release_reason(rel.replace(b'"task":"digits"', b'"task":"health"')) == "other_task"
    assert release_reason(b"") == "empty" and release_reason(b" " * 300_000) == "oversized"
    assert parse_release(rel, task="digits", public_key=key.public_key(), seq=5).seq == 5  # the same one again
    assert command_reason(cmd, public=rogue) == "bad_signature"
    assert command_reason(cmd, now=NOW + 301) == "stale" and command_reason(cmd, now=NOW - 61) == "stale"
    assert command_reason(cmd.replace(b'"action":"pin"', b'"action":"abort"')) == "bad_signature"
    assert command_reason(schemas.dumps(SAMPLES[0][1])) == "wrong_kind"
    assert command_reason(b'{"schema":2,"kind":"rollout_cmd"}') == "unknown_schema_version"
    assert verify_command(cmd, task="digits", public=key.public_key(), now=NOW).action == "pin"
    with pytest.raises(CommandRejected) as e:
        verify_command(cmd, task="health", public=key.public_key(), now=NOW)
    assert e.value.reason == "other_task"
