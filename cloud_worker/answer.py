"""Escalation answering, as a pure step: request messages in, replies and rejections out.

Every request is checked before any compute: the topic is hub/infer/{task} for a served
task, a response topic that is some device's reply topic, correlation data, a decodable
HardSample for the same task whose input matches the task's shape, or that carries no input
(features only: ``x`` of shape (N, 0)). Valid rows of one task are answered with one forward
pass per kind (requests that arrived together share it): from the input when there is one,
else from the edge features; when neither can be answered well the reply defers to the edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from lepton_tasks import Task
from shared.codec import CodecError
from shared.containers import HardSample
from shared.mqtt import Message
from shared.schemas import Reply, dumps
from shared.topics import Kind, Topic, TopicError, Topics


@dataclass(frozen=True)
class OutReply:
    topic: Topic
    payload: bytes
    correlation: bytes


@dataclass(frozen=True)
class Answered:
    """One task's answered rows, handed to the learner (raw inputs + cloud labels)."""

    task: str
    keys: list[tuple[str, int]]
    x: np.ndarray
    labels: np.ndarray
    conf: np.ndarray
    versions: np.ndarray | None = None  # edge model version per row (the rollout judge's arms)
    edge: np.ndarray | None = None  # the edge model's own label per row


@dataclass
class Outcome:
    replies: list[OutReply] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)
    answered: list[Answered] = field(default_factory=list)


Predict = Callable[[np.ndarray], np.ndarray]  # x (N, ...) -> probs (N, C)
# (feat (N, D), edge model version per row) -> probs (N, C), or None when the features cannot be used
PredictFeatures = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class Model:
    name: str
    predict: Predict
    defer: bool = False  # the cloud is no better than the edge where agents ask it (Learner.defer)
    predict_features: PredictFeatures | None = None


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
    if tuple(hs.x.shape[1:]) not in (tuple(task.input_shape), (0,)):  # (0,): features only
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
        with_x = [(m, hs) for m, hs in items if hs.x.shape[1] != 0]
        feat_only = [(m, hs) for m, hs in items if hs.x.shape[1] == 0]
        if with_x:
            x = np.concatenate([hs.x.astype(np.float32, copy=False) for _, hs in with_x])
            probs = np.concatenate([model.predict(x[i:i + max_batch]) for i in range(0, len(x), max_batch)])
            keys = _reply(out, task, with_x, probs, model, worker, ts, model.defer)
            out.answered.append(Answered(task, keys, x, probs.argmax(1), probs.max(1), *_edge(with_x)))
        if feat_only:
            feat = np.concatenate([hs.feat.astype(np.float32, copy=False) for _, hs in feat_only])
            ver = np.concatenate([np.full(len(hs.sample), hs.model_version) for _, hs in feat_only])
            probs = model.predict_features(feat, ver) if model.predict_features is not None else None
            if probs is None:  # features of a backbone the cloud does not know: the edge decides
                probs = np.concatenate([hs.scores.astype(np.float32, copy=False) for _, hs in feat_only])
                out.rejected.append(("features_unusable", f"{len(probs)} rows of model v{int(ver[0])}"))
                _reply(out, task, feat_only, probs, model, worker, ts, True)
            else:
                keys = _reply(out, task, feat_only, probs, model, worker, ts, model.defer)
                # No input to learn from, but the answers still serve as pseudo-labels for the feature rows.
                out.answered.append(Answered(task, keys, np.zeros((len(keys), 0), np.float32), probs.argmax(1),
                                             probs.max(1), *_edge(feat_only)))
    return out


def _edge(items: list[tuple[Message, HardSample]]) -> tuple[np.ndarray, np.ndarray]:
    """(edge model version, edge label) per row, in reply order."""
    versions = np.concatenate([np.full(len(hs.sample), hs.model_version, np.int64) for _, hs in items])
    labels = np.concatenate([hs.scores.argmax(1) for _, hs in items])
    return versions, labels


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
