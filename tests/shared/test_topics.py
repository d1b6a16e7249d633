import pytest

from shared.protocol.topics import SPEC_BY_KIND, TOPIC_SPECS, Filter, Kind, Topic, TopicError, Topics

T = Topics()

BUILT = {
    Kind.STATUS: (T.status("cam-1"), dict(device="cam-1")),
    Kind.TELEMETRY: (T.telemetry("cam-1"), dict(device="cam-1")),
    Kind.PRED: (T.pred("cam-1", "front"), dict(device="cam-1", stream="front")),
    Kind.EVENT: (T.event("cam-1", "front"), dict(device="cam-1", stream="front")),
    Kind.FEAT: (T.feat("cam-1", "front"), dict(device="cam-1", stream="front")),
    Kind.HARD: (T.hard("cam-1", "front"), dict(device="cam-1", stream="front")),
    Kind.REPLY: (T.reply("cam-1"), dict(device="cam-1")),
    Kind.CUSTODY: (T.custody("cam-1"), dict(device="cam-1")),
    Kind.MODEL_STATE: (T.model_state("cam-1"), dict(device="cam-1")),
    Kind.CMD: (T.cmd("cam-1", "rebirth"), dict(device="cam-1", name="rebirth")),
    Kind.LABEL: (T.label("cam-1", "front"), dict(device="cam-1", stream="front")),
    Kind.HUB_BATCH: (T.hub_batch("digits"), dict(task="digits")),
    Kind.HUB_INFER: (T.hub_infer("digits"), dict(task="digits")),
    Kind.HUB_STATUS: (T.hub_status(), {}),
    Kind.HUB_ACK: (T.hub_ack("bridge-1"), dict(bridge="bridge-1")),
    Kind.LABEL_CUSTODY: (T.label_custody("console_1"), dict(publisher="console_1")),
    Kind.HUB_RELABEL: (T.hub_relabel("digits"), dict(task="digits")),
    Kind.CLOUD_STATUS: (T.cloud_status("w1"), dict(worker="w1")),
    Kind.MANIFEST: (T.manifest("digits"), dict(task="digits")),
    Kind.ARTIFACT: (T.artifact("digits", 12), dict(task="digits", version=12)),
    Kind.RELEASE: (T.release("digits"), dict(task="digits")),
    Kind.MODEL_VERSION: (T.model_version("digits", 7), dict(task="digits", version=7)),
    Kind.ROLLOUT_EVENT: (T.rollout_event("digits"), dict(task="digits")),
    Kind.ROLLOUT_CMD: (T.rollout_cmd("digits"), dict(task="digits")),
    Kind.SNAPSHOT: (T.snapshot("cam-1", "front", "person"), dict(device="cam-1", stream="front", name="person")),
}


def test_every_spec_has_a_builder_and_parses_back():
    # Prepare / Execute
    assert set(BUILT) == {s.kind for s in TOPIC_SPECS}
    for kind, (topic, fields) in BUILT.items():
        parsed = T.parse(topic)
        # Assert: kind and every placeholder survive the round trip
        assert parsed.kind is kind
        for k, v in fields.items():
            assert getattr(parsed, k) == v
        # and the built topic has the documented shape
        pattern = SPEC_BY_KIND[kind].pattern.split("/")
        assert len(str(topic).split("/")) == 2 + len(pattern)


@pytest.mark.parametrize("bad", ["", "Cam", "cam/1", "+", "#", "cam+1", "a" * 49, "-cam", "cam_1", "саm"])
def test_device_ids_are_validated(bad):
    with pytest.raises(TopicError):
        T.status(bad)


@pytest.mark.parametrize("bad", [
    "lepton/v1/edge/cam-1", "lepton/v1/edge/cam-1/nope", "lepton/v2/edge/cam-1/status", "other/x",
    "lepton/v1/model/digits/artifact/0", "lepton/v1/model/digits/artifact/01", "lepton/v1/edge/CAM/status",
    "lepton/v1/edge/cam-1/pred/a/b", "lepton/v1/hub/batch", "lepton/v1/",
    "lepton/v1/model/digits/version/0", "lepton/v1/model/digits/version/x", "lepton/v1/model/digits/release/1",
    "lepton/v1/rollout/digits", "lepton/v1/rollout/digits/other", "lepton/v1/rollout/Digits/cmd",
])
def test_parse_rejects_topics_outside_the_layout(bad):
    with pytest.raises(TopicError):
        T.parse(bad)


def test_publish_topics_refuse_wildcards():
    for bad in ["a/+/b", "a/#", "$SYS/x", ""]:
        with pytest.raises(TopicError):
            Topic(bad)


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a/b+/c", "$share/g", "$share//a", ""])
def test_filters_validate(bad):
    with pytest.raises(TopicError):
        Filter(bad)


def test_filters_match_what_they_should():
    assert T.edge_tree().matches(T.feat("d1", "s"))
    assert not T.edge_tree().matches(T.hub_batch("digits"))
    assert T.edge_kind(Kind.FEAT).matches(T.feat("d2", "x"))
    assert not T.edge_kind(Kind.FEAT).matches(T.hard("d2", "x"))
    assert T.labels().matches(T.label("d1", "s"))
    shared = T.hub_batches().shared("workers")
    assert str(shared) == "$share/workers/lepton/v1/hub/batch/+"
    assert shared.matches(T.hub_batch("digits"))


def test_custom_root():
    t = Topics("acme/plant-7/v1")
    assert str(t.status("d1")) == "acme/plant-7/v1/edge/d1/status"
    assert t.parse("acme/plant-7/v1/edge/d1/status").kind is Kind.STATUS
    with pytest.raises(TopicError):
        Topics("bad root/#")


def test_readable_and_binary_filters_split_the_tree_by_encoding():
    # Every kind is in exactly one of the two lists, and each filter matches its own kind's topic
    # and no topic of the other encoding (what `lepton topics --json-filters` hands mosquitto_sub).
    readable, binary = T.readable(), T.binary()
    assert len(readable) + len(binary) == len(TOPIC_SPECS)
    for kind, (topic, _) in BUILT.items():
        json_kind = SPEC_BY_KIND[kind].encoding == "json"
        assert any(f.matches(topic) for f in readable) is json_kind, kind
        assert any(f.matches(topic) for f in binary) is not json_kind, kind
    assert {SPEC_BY_KIND[k].encoding for k in (Kind.FEAT, Kind.HARD, Kind.HUB_BATCH, Kind.HUB_INFER)} == {"tensor"}
    assert Topics("site/a").of_kind(Kind.PRED) == Filter("site/a/edge/+/pred/+")
