"""Escalation answering, as a pure step: request messages in, replies and rejections out.

Every request is checked before any compute: the topic is hub/infer/{task} for a served
task, a response topic that is some device's reply topic, correlation data, a decodable
HardSample for the same task. Requests that carry their raw sample are answered by the cloud
model at its own resolution (the sample decoded and preprocessed by the task's cloud contract;
a sample that cannot be decoded is rejected with a typed reason, and its request is answered
from features instead). The others are answered from the edge features by the cloud's feature
section, or, when the features come from a backbone it does not know, deferred to the edge.
Requests that arrived together share one forward pass per kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from lepton_tasks import Task
from shared.protocol.codec import CodecError
from shared.protocol.containers import HardSample
from shared.protocol.rawsample import RawError
from shared.protocol.schemas import Reply, dumps
from shared.protocol.topics import Kind, Topic, TopicError, Topics
from shared.transport.mqtt import Message


@dataclass(frozen=True)
class OutReply:
    topic: Topic
    payload: bytes
    correlation: bytes


@dataclass(frozen=True)
class Answered:
    """One task's answered rows, handed to the learner: the cloud's labels, the edge model version that
    escalated each, and (when they came with their samples) the raw samples and both model inputs."""

    task: str
    keys: list[tuple[str, int]]
    versions: np.ndarray  # (N,) edge model version
    labels: np.ndarray
    conf: np.ndarray
    raw: list[tuple[np.ndarray, str]] | None = None  # (sample as it travelled, wire encoding) per row
    edge_x: np.ndarray | None = None  # (N, *input_shape)
    cloud_x: np.ndarray | None = None  # (N, *cloud_input_shape)
    edge: np.ndarray | None = None  # (N,) the edge model's own label (the rollout judge's agreement)


@dataclass
class Outcome:
    replies: list[OutReply] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)
    answered: list[Answered] = field(default_factory=list)


Predict = Callable[[np.ndarray], np.ndarray]  # cloud inputs (N, ...) -> probs (N, C)
# (feat (N, D), edge model version per row) -> probs (N, C), or None when the features cannot be used
PredictFeatures = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]
# (raw sample as it travelled, wire encoding) -> (edge input, cloud input); RawError when it cannot be
Prepare = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Model:
    name: str
    predict: Predict | None  # the cloud model on raw samples (None: not trained yet)
    prepare: Prepare | None = None
    defer: bool = False  # the cloud is no better than the edge where agents ask it (Learner.defer)
    predict_features: PredictFeatures | None = None
    defer_features: bool = True


def _check(msg: Message, topics: Topics, tasks: Mapping[str, Task]) -> HardSample:
    try:
        parsed = topics.parse(msg.topic)
    except TopicError:
        raise _Reject("bad_topic", msg.topic) from None
    if parsed.kind != Kind.HUB_INFER:
        raise _Reject("bad_topic", msg.topic)
    task = tasks.get(parsed.task or "")
    if task is None:
        raise _Reject("unknown_task", str(parsed.task))
    if not msg.response_topic:
        raise _Reject("no_response_topic", msg.topic)
    if not msg.correlation_data:
        raise _Reject("no_correlation", msg.topic)
    try:
        rt = topics.parse(msg.response_topic)
    except TopicError:
        raise _Reject("bad_response_topic", msg.response_topic) from None
    if rt.kind != Kind.REPLY:
        # Only device reply topics: a request must not make the worker publish anywhere else.
        raise _Reject("bad_response_topic", msg.response_topic)
    try:
        hs = HardSample.decode(msg.payload)
    except CodecError as exc:
        raise _Reject(f"codec.{exc.reason}", str(exc)) from None
    if hs.task != task.name:
        raise _Reject("task_mismatch", f"payload task {hs.task!r} on {msg.topic}")
    if rt.device != hs.device:
        raise _Reject("device_mismatch", f"reply to {rt.device!r} for a sample of {hs.device!r}")
    if tuple(hs.x.shape[1:]) not in (tuple(task.input_shape), (0,)):  # (0,): no edge input (the usual)
        raise _Reject("bad_shape", f"x {tuple(hs.x.shape)} for input {task.input_shape}")
    if len(hs.sample) == 0:
        raise _Reject("empty", msg.topic)
    if (hs.sample < 0).any():
        raise _Reject("bad_sample", "negative sample id")
    return hs


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def answer(msgs: list[Message], topics: Topics, tasks: Mapping[str, Task], models: Mapping[str, Model],
           worker: str, *, max_batch: int = 256, now: Callable[[], float] = time.time) -> Outcome:
    out = Outcome()
    by_task: dict[str, list[tuple[Message, HardSample]]] = {}
    for msg in msgs:
        try:
            hs = _check(msg, topics, tasks)
        except _Reject as r:
            out.rejected.append((r.reason, r.detail[:200]))
            continue
        except Exception as exc:  # a decoder bug must cost one request, not the answering thread
            out.rejected.append(("internal_error", f"{type(exc).__name__}: {exc}"[:200]))
            continue
        if hs.task not in models:
            out.rejected.append(("no_model", hs.task))
            continue
        by_task.setdefault(hs.task, []).append((msg, hs))
    for task, items in by_task.items():
        model = models[task]
        ts = now()
        with_raw, feat_only = [], []
        for m, hs in items:
            prepared = _prepare(hs, model, out) if hs.raw is not None else None
            (with_raw if prepared is not None else feat_only).append((m, hs, prepared))
        if with_raw:
            ex = np.concatenate([p[0] for _, _, p in with_raw])
            cx = np.concatenate([p[1] for _, _, p in with_raw])
            assert model.predict is not None
            probs = np.concatenate([model.predict(cx[i:i + max_batch]) for i in range(0, len(cx), max_batch)])
            keys = _reply(out, task, [(m, hs) for m, hs, _ in with_raw], probs, model, worker, ts, model.defer)
            raws = [(hs.raw.item(i), hs.raw.encoding) for _, hs, _ in with_raw for i in range(len(hs.sample))]
            out.answered.append(Answered(task, keys, _versions(with_raw), probs.argmax(1), probs.max(1), raws, ex, cx,
                                         _edge_labels(with_raw)))
        if feat_only:
            feat = np.concatenate([hs.feat.astype(np.float32, copy=False) for _, hs, _ in feat_only])
            ver = _versions(feat_only)
            probs = model.predict_features(feat, ver) if model.predict_features is not None else None
            pairs = [(m, hs) for m, hs, _ in feat_only]
            if probs is None:  # features of a backbone the cloud does not know: the edge decides
                probs = np.concatenate([hs.scores.astype(np.float32, copy=False) for _, hs, _ in feat_only])
                out.rejected.append(("features_unusable", f"{len(probs)} rows of model v{int(ver[0])}"))
                _reply(out, task, pairs, probs, model, worker, ts, True)
            else:
                keys = _reply(out, task, pairs, probs, model, worker, ts, model.defer_features)
                # No sample to learn from, but the answers still serve as pseudo-labels for the feature rows.
                out.answered.append(Answered(task, keys, ver, probs.argmax(1), probs.max(1),
                                             edge=_edge_labels(feat_only)))
    return out


def _versions(items: list) -> np.ndarray:
    return np.concatenate([np.full(len(it[1].sample), it[1].model_version, np.int64) for it in items])


def _edge_labels(items: list) -> np.ndarray:
    """The edge model's own label per row, in reply order."""
    return np.concatenate([it[1].scores.argmax(1) for it in items])


def _prepare(hs: HardSample, model: Model, out: Outcome) -> tuple[np.ndarray, np.ndarray] | None:
    """Both model inputs of every raw row of one request, or None (the reason recorded) when any row
    cannot be used: that request is answered from its features."""
    if model.predict is None or model.prepare is None:
        return None
    assert hs.raw is not None
    ex, cx = [], []
    for i in range(len(hs.sample)):
        try:
            e, c = model.prepare(hs.raw.item(i), hs.raw.encoding)
        except RawError as exc:
            out.rejected.append((f"raw.{exc.reason}", exc.detail[:200]))
            return None
        except ValueError as exc:  # the cloud's preprocessing refused the decoded sample (shape, NaN)
            out.rejected.append(("raw.bad_input", str(exc)[:200]))
            return None
        ex.append(e)
        cx.append(c)
    return np.stack(ex), np.stack(cx)


def _reply(out: Outcome, task: str, items: list[tuple[Message, HardSample]], probs: np.ndarray, model: Model,
           worker: str, ts: float, defer: bool) -> list[tuple[str, int]]:
    labels, conf = probs.argmax(1), probs.max(1)
    keys: list[tuple[str, int]] = []
    row = 0
    for msg, hs in items:
        topic = Topic(str(msg.response_topic))
        for s in hs.sample:
            reply = Reply(task=task, sample=int(s), label=int(labels[row]),
                          confidence=float(np.clip(conf[row], 0.0, 1.0)), model=model.name[:64],
                          worker=worker[:64], defer=defer, ts=ts)
            out.replies.append(OutReply(topic, dumps(reply), bytes(msg.correlation_data or b"")))
            keys.append((hs.device, int(s)))
            row += 1
    return keys
