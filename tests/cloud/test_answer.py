"""answer(): the pure escalation step, every rejection reason and the batching."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_worker.answering.answer import Model, answer
from lepton_tasks import load_task
from shared.protocol.schemas import Reply, loads
from shared.protocol.topics import Topics
from shared.transport.mqtt import Message

from .helpers import hard_sample, prepare_for

T = Topics("lepton/v1/tunit")
TASKS = {"digits": load_task("digits")}
CALLS: list[int] = []


def predict(x: np.ndarray) -> np.ndarray:
    assert x.shape[1:] == TASKS["digits"].cloud_input_shape  # the cloud's own input, from the raw sample
    CALLS.append(len(x))
    p = np.full((len(x), 10), 0.01, np.float32)
    p[:, 3] = 0.91
    return p


MODELS = {"digits": Model("digits-cloud-1", predict, prepare_for("digits"))}


def msg(payload: bytes, *, topic: str | None = None, rt: str | None = "edge/cam-1/reply", corr: bytes | None = b"c"):
    return Message(topic or str(T.hub_infer("digits")), payload, 1, False,
                   None if rt is None else f"{T.root}/{rt}" if not rt.startswith("/") else rt[1:], corr)


GOOD = hard_sample("digits", np.array([7, 8])).encode()


@pytest.mark.parametrize("m,reason", [
    (msg(GOOD, topic=f"{T.root}/hub/batch/digits"), "bad_topic"),
    (msg(GOOD, topic="elsewhere/hub/infer/digits"), "bad_topic"),
    (msg(GOOD, topic=str(T.hub_infer("motions"))), "unknown_task"),
    (msg(GOOD, rt=None), "no_response_topic"),
    (msg(GOOD, corr=None), "no_correlation"),
    (msg(GOOD, rt="/other/root/edge/cam-1/reply"), "bad_response_topic"),
    (msg(GOOD, rt="model/digits/manifest"), "bad_response_topic"),
    (msg(GOOD, rt="edge/cam-2/reply"), "device_mismatch"),
    (msg(b"LPT\x01"), "codec.truncated"),
    (msg(b"nonsense"), "codec.bad_magic"),
    (msg(hard_sample("health", np.array([1])).encode()), "task_mismatch"),
    (msg(hard_sample("digits", np.array([1]), x=np.zeros((1, 1, 4, 4), np.float32)).encode()), "bad_shape"),
])
def test_each_bad_request_is_rejected_with_its_reason(m, reason):
    out = answer([m], T, TASKS, MODELS, "w1")
    assert [r for r, _ in out.rejected] == [reason] and out.replies == []


def test_requests_that_arrive_together_share_one_forward_and_get_one_reply_per_row():
    CALLS.clear()
    a = msg(GOOD, corr=b"a")
    b = msg(hard_sample("digits", np.array([9]), device="cam-2").encode(), rt="edge/cam-2/reply", corr=b"b")

    out = answer([a, msg(b"junk"), b], T, TASKS, MODELS, "w1", now=lambda: 5.0)

    assert CALLS == [3]
    assert [(str(r.topic), r.correlation) for r in out.replies] == [
        (f"{T.root}/edge/cam-1/reply", b"a"), (f"{T.root}/edge/cam-1/reply", b"a"), (f"{T.root}/edge/cam-2/reply", b"b")]
    replies = [loads(r.payload, Reply) for r in out.replies]
    assert [r.sample for r in replies] == [7, 8, 9]
    assert all(r.label == 3 and abs(r.confidence - 0.91) < 1e-6 and r.worker == "w1" and r.ts == 5.0 for r in replies)
    a0 = out.answered[0]
    assert a0.keys == [("cam-1", 7), ("cam-1", 8), ("cam-2", 9)]
    assert a0.edge_x.shape == (3, *TASKS["digits"].input_shape) and a0.cloud_x.shape[0] == 3
    assert [w for _, w in a0.raw] == ["jpeg"] * 3  # the samples go on to the learner as they travelled
    assert len(out.rejected) == 1


def test_an_undecodable_sample_is_rejected_and_its_request_answered_from_features():
    import dataclasses

    from shared.protocol.rawsample import RawRows

    bad = dataclasses.replace(hard_sample("digits", np.array([4])), raw=RawRows.jpeg([b"\xff\xd8not a jpeg"]))
    out = answer([msg(bad.encode())], T, TASKS, MODELS, "w1")
    assert [r for r, _ in out.rejected] == ["raw.undecodable", "features_unusable"]
    (reply,) = [loads(r.payload, Reply) for r in out.replies]
    assert reply.sample == 4 and reply.defer  # nothing to answer well with: the edge's decision stands


def test_escalations_without_their_sample_are_answered_from_features():
    CALLS.clear()

    def from_features(feat, versions):
        p = np.full((len(feat), 10), 0.02, np.float32)
        p[:, 5] = 0.82
        return p

    m = {"digits": Model("c", predict, prepare_for("digits"), predict_features=from_features, defer_features=False)}
    out = answer([msg(hard_sample("digits", np.array([1, 2]), raw=False).encode())], T, TASKS, m, "w1")
    assert CALLS == [] and [loads(r.payload, Reply).label for r in out.replies] == [5, 5]
    assert out.answered[0].raw is None


def test_max_batch_splits_the_forward():
    CALLS.clear()
    answer([msg(hard_sample("digits", np.arange(5)).encode())], T, TASKS, MODELS, "w1", max_batch=2)
    assert CALLS == [2, 2, 1]


def test_no_model_for_task_is_a_rejection():
    out = answer([msg(GOOD)], T, TASKS, {}, "w1")
    assert [r for r, _ in out.rejected] == ["no_model"]
