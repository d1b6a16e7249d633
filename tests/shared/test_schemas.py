import json

import pytest

from shared.protocol import schemas
from shared.protocol.topics import Topics

from .samples import json_samples

T = Topics()


@pytest.mark.parametrize("topic,msg", json_samples(T), ids=lambda x: type(x).__name__)
def test_round_trip(topic, msg):
    wire = schemas.dumps(msg)
    obj = json.loads(wire)
    assert obj["schema"] == 1 and obj["kind"] == msg.kind
    assert schemas.loads(wire, type(msg)) == msg
    assert schemas.loads_any(wire) == msg


def _status_obj():
    return json.loads(schemas.dumps(json_samples(T)[0][1]))


def test_unknown_schema_version_is_typed():
    obj = _status_obj()
    obj["schema"] = 2
    with pytest.raises(schemas.UnknownSchemaVersion) as e:
        schemas.loads(json.dumps(obj), schemas.Status)
    assert e.value.reason == "unknown_schema_version"
    del obj["schema"]
    with pytest.raises(schemas.UnknownSchemaVersion):
        schemas.loads(json.dumps(obj), schemas.Status)


def test_extra_fields_are_rejected():
    obj = _status_obj()
    obj["surprise"] = 1
    with pytest.raises(schemas.InvalidPayload, match="surprise"):
        schemas.loads(json.dumps(obj), schemas.Status)


def test_wrong_kind_is_rejected():
    with pytest.raises(schemas.WrongKind):
        schemas.loads(schemas.dumps(json_samples(T)[0][1]), schemas.Telemetry)


@pytest.mark.parametrize("payload,err", [(b"", schemas.NotJson), (b"{", schemas.NotJson), (b"\xff\xfe", schemas.NotJson),
                                         (b"[1]", schemas.InvalidPayload), (b"null", schemas.InvalidPayload),
                                         (b"1" * (schemas.MAX_JSON_BYTES + 1), schemas.PayloadTooLarge)])
def test_garbage(payload, err):
    with pytest.raises(err):
        schemas.loads_any(payload)


def test_nan_and_out_of_range_values_rejected():
    obj = json.loads(schemas.dumps(json_samples(T)[2][1]))
    obj["confidence"] = 1.5
    with pytest.raises(schemas.InvalidPayload, match="confidence"):
        schemas.loads(json.dumps(obj), schemas.Prediction)
    obj["confidence"] = float("nan")  # json.dumps writes the non-JSON literal NaN: refused while parsing
    with pytest.raises(schemas.NotJson):
        schemas.loads(json.dumps(obj), schemas.Prediction)


def test_device_in_payload_is_validated():
    obj = _status_obj()
    obj["device"] = "a/b"
    with pytest.raises(schemas.InvalidPayload):
        schemas.loads(json.dumps(obj), schemas.Status)


def test_manifest_expiry_must_follow_creation():
    m = json.loads(schemas.dumps(json_samples(T)[-1][1]))
    m["expires"] = m["created"] - 1
    with pytest.raises(schemas.InvalidPayload, match="expires"):
        schemas.loads(json.dumps(m), schemas.Manifest)
