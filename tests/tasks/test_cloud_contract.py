"""The cloud's input contract: defaults per kind, carried (and signed) in every manifest."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lepton_tasks import TaskSpecError, load_task
from lepton_tasks.spec import parse_spec
from shared.protocol import schemas
from shared.security.signing import SignatureError, sign_manifest, verify_manifest_obj

from ..shared.samples import NOW


def _manifest(task) -> schemas.Manifest:
    return schemas.Manifest(task=task.name, version=2, sha256="b" * 64, size=10, artifact="lepton/v1/model/x/artifact/2",
                            input=task.input_spec(), outputs=[], decision=task.decision_defaults(),
                            cloud=task.cloud_input(), reference="TFBU", created=NOW, expires=NOW + 60)


@pytest.mark.parametrize("name", ["camera", "industrial"])
def test_both_input_contracts_round_trip_through_a_signed_manifest(name):
    task = load_task(name)
    key = Ed25519PrivateKey.generate()
    raw = sign_manifest(_manifest(task), key)
    obj = json.loads(raw)
    verify_manifest_obj(obj, key.public_key())
    back = schemas.loads(raw, schemas.Manifest)
    assert back.input == task.input_spec()
    assert back.cloud == task.cloud_input()
    # The cloud contract is signed like the rest: a device never encodes what an attacker asked for.
    obj["cloud"]["quality"] = 5
    with pytest.raises(SignatureError):
        verify_manifest_obj(obj, key.public_key())


def test_defaults_per_kind():
    cam, ind = load_task("camera"), load_task("industrial")
    assert cam.cloud_input().encoding == "jpeg" and cam.cloud_input().uplink == "escalations"
    assert cam.cloud_input_shape == (3, 96, 128)  # twice the edge's 48x64: the cloud sees more than the edge
    assert ind.cloud_input().encoding == "float16" and ind.cloud_input().uplink == "all"
    assert ind.cloud_input_shape == (1, 500)  # the full window; the edge resamples it to 250


SPEC = """
name = "t"
kind = "{kind}"
classes = ["a", "b"]
preprocess = [{{ op = "batch" }}]
[input]
shape = {shape}
layout = "{layout}"
[dataset]
source = "npz"
path = "x.npz"
[split]
seed = 2
holdout = 2
[cloud]
{cloud}
"""


@pytest.mark.parametrize("kind,cloud,msg", [
    ("window", 'encoding = "jpeg"', "cloud.encoding 'jpeg' is for image tasks"),
    ("image", 'uplink = "all"', "cloud.uplink 'all' is for window tasks"),
    ("window", 'uplink = "all"\nencoding = "jpeg"', "feature batches"),
    ("window", 'preprocess = [{ op = "nope" }]', "unknown op"),
    ("window", "quality = 0", "cloud.quality"),
    ("window", "colour = 1", "cloud.colour: unknown key"),
])
def test_bad_cloud_contracts_name_the_key(kind, cloud, msg):
    shape, layout = ("[1, 8]", "NCT") if kind == "window" else ("[3, 8, 8]", "NCHW")
    with pytest.raises(TaskSpecError) as e:
        parse_spec(SPEC.format(kind=kind, shape=shape, layout=layout, cloud=cloud), "t.toml")
    assert msg in str(e.value)
