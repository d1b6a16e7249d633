"""The binary payloads (feat, hard, fused), each a tensor container with a fixed schema.

Every container's meta holds ``kind`` and ``schema``; the tensors' dtypes, ranks and
row counts are checked on decode so a consumer never sees a half-valid batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from shared.protocol import codec, strictjson
from shared.protocol.codec import (
    BadDtype,
    BadShape,
    Bundle,
    Malformed,
    NonFinite,
    Oversized,
    UnsupportedVersion,
)
from shared.protocol.rawsample import RawError, RawRows
from shared.protocol.topics import check_device, check_segment

CONTAINER_SCHEMA = "1"
_FLOATS = ("float16", "float32")


def _json_list(raw: str) -> list:
    v = strictjson.loads(raw, max_depth=1)
    if not isinstance(v, list):
        raise Malformed(f"expected a JSON list, got {type(v).__name__}")
    return v


def _short_str(v: object) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        raise Malformed(f"bad context column name {v!r:.80}")
    return v


def _head(b: Bundle, kind: str) -> None:
    if b.meta.get("kind") != kind:
        raise Malformed(f"expected container kind {kind!r}, got {b.meta.get('kind')!r}")
    if b.meta.get("schema") != CONTAINER_SCHEMA:
        raise UnsupportedVersion(f"container schema {b.meta.get('schema')!r}; this build reads {CONTAINER_SCHEMA}")


# (container kind, Layout) pairs whose tensor checks passed: the checks depend only on names, dtypes
# and shapes, which is what a Layout is, so a cached layout is checked once (shared.protocol.codec.Layout).
_CHECKED: dict[tuple[str, object], None] = {}


def _checked(b: Bundle, kind: str) -> bool:
    return b.layout is not None and (kind, b.layout) in _CHECKED


def _mark_checked(b: Bundle, kind: str) -> None:
    if b.layout is not None:
        if len(_CHECKED) >= 4096:
            _CHECKED.clear()
        _CHECKED[(kind, b.layout)] = None


def _rows(n: int, **arrs: np.ndarray) -> None:
    for name, a in arrs.items():
        if a.shape[0] != n:
            raise BadShape(f"tensor {name!r} has {a.shape[0]} rows, expected {n}")


_RAW_ERRORS = {"bad_dtype": BadDtype, "bad_shape": BadShape, "non_finite": NonFinite, "oversized": Oversized}


def _raw_out(raw: RawRows | None, n: int, meta: dict[str, str], tensors: dict[str, np.ndarray],
             tensor_only: bool = False) -> None:
    """Add a container's optional raw rows (meta ``raw`` names their wire encoding)."""
    if raw is None:
        return
    if len(raw) != n:
        raise BadShape(f"{len(raw)} raw rows for {n} samples")
    if tensor_only and raw.encoding != "tensor":
        raise Malformed("this container carries raw rows as a tensor only")
    meta["raw"] = raw.encoding
    tensors.update(raw.tensors())


def _raw_in(b: Bundle, n: int, tensor_only: bool = False) -> RawRows | None:
    enc = b.meta.get("raw")
    if enc is None:
        if "raw" in b.tensors or "raw_size" in b.tensors:
            raise Malformed("tensor 'raw' without meta 'raw' naming its encoding")
        return None
    if tensor_only and enc != "tensor":
        raise Malformed(f"this container carries raw rows as a tensor only, not {enc[:16]!r}")
    try:
        return RawRows.from_bundle(enc, b.tensors, n)
    except RawError as exc:  # the codec's own typed errors, so every decoder counts them alike
        raise _RAW_ERRORS.get(exc.reason, Malformed)(f"raw rows: {exc.detail}") from None


_IDENTS: dict[tuple, tuple[str, str, str]] = {}  # (device, stream, task) triples already checked


def _ident(b: Bundle) -> tuple[str, str, str]:
    m = b.meta
    key = (m.get("device"), m.get("stream"), m.get("task"))
    ok = _IDENTS.get(key)
    if ok is not None:
        return ok
    try:
        ok = (check_device(b.meta_str("device")), check_segment(b.meta_str("stream"), "stream"),
              check_segment(b.meta_str("task"), "task"))
    except ValueError as exc:
        if isinstance(exc, codec.CodecError):
            raise
        raise Malformed(str(exc)) from None
    if len(_IDENTS) >= 65536:
        _IDENTS.clear()
    _IDENTS[key] = ok
    return ok


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Feature rows from one device: what the edge model saw, compactly."""

    device: str
    stream: str
    task: str
    boot: int
    seq: int
    model_version: int
    sample: np.ndarray  # (N,) int64 sample ids
    feat: np.ndarray  # (N, D) float16|float32
    scores: np.ndarray  # (N, C) float16|float32 class probabilities
    ts: np.ndarray  # (N,) float64 capture times
    raw: RawRows | None = None  # the samples themselves (tensor rows), when the task's cloud contract asks

    KIND = "feat"

    def encode(self, *, float16: bool = False) -> bytes:
        tensors = {"sample": self.sample.astype(np.int64), "feat": self.feat, "scores": self.scores,
                   "ts": self.ts.astype(np.float64)}
        meta = {"kind": self.KIND, "schema": CONTAINER_SCHEMA, "device": self.device, "stream": self.stream,
                "task": self.task, "boot": str(self.boot), "seq": str(self.seq),
                "model_version": str(self.model_version)}
        _raw_out(self.raw, len(self.sample), meta, tensors, tensor_only=True)
        return codec.encode(tensors, meta, float16={"feat", "scores"} if float16 else False)

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> FeatureBatch:
        b = codec.decode(payload)
        _head(b, cls.KIND)
        device, stream, task = _ident(b)
        if _checked(b, cls.KIND):
            t = b.tensors
            sample, feat, scores, ts = t["sample"], t["feat"], t["scores"], t["ts"]
        else:
            sample = b.require("sample", dtypes=("int64",), rank=1)
            n = sample.shape[0]
            feat = b.require("feat", dtypes=_FLOATS, rank=2)
            scores = b.require("scores", dtypes=_FLOATS, rank=2)
            ts = b.require("ts", dtypes=("float64",), rank=1)
            _rows(n, feat=feat, scores=scores, ts=ts)
            _mark_checked(b, cls.KIND)
        raw = _raw_in(b, len(sample), tensor_only=True)
        return cls(device, stream, task, b.meta_int("boot"), b.meta_int("seq"), b.meta_int("model_version"),
                   sample, feat, scores, ts, raw)


@dataclass(frozen=True, slots=True)
class HardSample:
    """Escalated sample(s): what the edge model made of them, and the raw sample for the cloud."""

    device: str
    stream: str
    task: str
    boot: int
    seq: int
    model_version: int
    sample: np.ndarray  # (N,) int64
    x: np.ndarray  # (N, ...) preprocessed edge model input, or (N, 0): none (the raw sample is what travels)
    feat: np.ndarray  # (N, D) float32
    scores: np.ndarray  # (N, C) float32
    ts: np.ndarray  # (N,) float64
    raw: RawRows | None = None  # the captured samples (JPEG frames, windows), per the manifest's cloud contract

    KIND = "hard"

    def encode(self) -> bytes:
        tensors = {"sample": self.sample.astype(np.int64), "x": self.x, "feat": self.feat, "scores": self.scores,
                   "ts": self.ts.astype(np.float64)}
        meta = {"kind": self.KIND, "schema": CONTAINER_SCHEMA, "device": self.device, "stream": self.stream,
                "task": self.task, "boot": str(self.boot), "seq": str(self.seq),
                "model_version": str(self.model_version)}
        _raw_out(self.raw, len(self.sample), meta, tensors)
        return codec.encode(tensors, meta)

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> HardSample:
        b = codec.decode(payload)
        _head(b, cls.KIND)
        device, stream, task = _ident(b)
        if _checked(b, cls.KIND):
            t = b.tensors
            sample, x, feat, scores, ts = t["sample"], t["x"], t["feat"], t["scores"], t["ts"]
        else:
            sample = b.require("sample", dtypes=("int64",), rank=1)
            n = sample.shape[0]
            x = b.tensors.get("x")
            if x is None or x.dtype.name not in _FLOATS or x.ndim < 2:
                raise BadShape("tensor 'x' must be a float tensor of rank >= 2")
            feat = b.require("feat", dtypes=_FLOATS, rank=2)
            scores = b.require("scores", dtypes=_FLOATS, rank=2)
            ts = b.require("ts", dtypes=("float64",), rank=1)
            _rows(n, x=x, feat=feat, scores=scores, ts=ts)
            _mark_checked(b, cls.KIND)
        raw = _raw_in(b, len(sample))
        return cls(device, stream, task, b.meta_int("boot"), b.meta_int("seq"), b.meta_int("model_version"),
                   sample, x, feat, scores, ts, raw)


@dataclass(frozen=True, slots=True)
class FusedBatch:
    """Rows from many devices joined with labels and hub context (see docs/PROTOCOL.md)."""

    task: str
    bridge: str
    boot: int  # the bridge's boot (ms epoch): (bridge, boot, seq) names a batch across restarts
    seq: int
    devices: tuple[str, ...]  # device_idx indexes this tuple
    context_names: tuple[str, ...]
    sample: np.ndarray  # (N,) int64
    device_idx: np.ndarray  # (N,) int32
    feat: np.ndarray  # (N, D) float16|float32, as the edge sent it
    label: np.ndarray  # (N,) int64, -1 where no label arrived within the window
    edge_label: np.ndarray  # (N,) int64, the edge model's prediction
    edge_conf: np.ndarray  # (N,) float32
    model_version: np.ndarray  # (N,) int32 edge model version per row
    ctx: np.ndarray  # (N, K) float32 context features
    raw: RawRows | None = None  # the samples themselves (tensor rows), when their feature rows carried them

    KIND = "fused"

    def encode(self) -> bytes:
        tensors = {"sample": self.sample.astype(np.int64), "device_idx": self.device_idx.astype(np.int32),
                   "feat": self.feat if self.feat.dtype.name in _FLOATS else self.feat.astype(np.float32),
                   "label": self.label.astype(np.int64),
                   "edge_label": self.edge_label.astype(np.int64), "edge_conf": self.edge_conf.astype(np.float32),
                   "model_version": self.model_version.astype(np.int32), "ctx": self.ctx.astype(np.float32)}
        meta = {"kind": self.KIND, "schema": CONTAINER_SCHEMA, "task": self.task, "bridge": self.bridge,
                "boot": str(self.boot), "seq": str(self.seq), "devices": json.dumps(list(self.devices)),
                "context": json.dumps(list(self.context_names))}
        _raw_out(self.raw, len(self.sample), meta, tensors, tensor_only=True)
        return codec.encode(tensors, meta)

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> FusedBatch:
        b = codec.decode(payload)
        _head(b, cls.KIND)
        try:
            task = check_segment(b.meta_str("task"), "task")
            bridge = check_segment(b.meta_str("bridge"), "bridge")
            devices = tuple(check_device(d) for d in _json_list(b.meta_str("devices")))
            ctx_names = tuple(_short_str(c) for c in _json_list(b.meta_str("context")))
        except (ValueError, TypeError) as exc:
            if isinstance(exc, codec.CodecError):
                raise
            raise Malformed(f"bad fused meta: {exc}") from None
        if _checked(b, cls.KIND) and b.tensors["ctx"].shape[1] == len(ctx_names):
            t = b.tensors
            sample, device_idx, feat, label = t["sample"], t["device_idx"], t["feat"], t["label"]
            edge_label, edge_conf, mv, ctx = t["edge_label"], t["edge_conf"], t["model_version"], t["ctx"]
            n = sample.shape[0]
        else:
            sample = b.require("sample", dtypes=("int64",), rank=1)
            n = sample.shape[0]
            device_idx = b.require("device_idx", dtypes=("int32",), rank=1)
            feat = b.require("feat", dtypes=_FLOATS, rank=2)
            label = b.require("label", dtypes=("int64",), rank=1)
            edge_label = b.require("edge_label", dtypes=("int64",), rank=1)
            edge_conf = b.require("edge_conf", dtypes=("float32",), rank=1)
            mv = b.require("model_version", dtypes=("int32",), rank=1)
            ctx = b.require("ctx", dtypes=("float32",), rank=2, dims=(None, len(ctx_names)))
            _rows(n, device_idx=device_idx, feat=feat, label=label, edge_label=edge_label, edge_conf=edge_conf,
                  model_version=mv, ctx=ctx)
            _mark_checked(b, cls.KIND)
        if n and (device_idx.min() < 0 or device_idx.max() >= len(devices)):
            raise BadShape("device_idx points outside the devices list")
        boot, seq = b.meta_int("boot"), b.meta_int("seq")
        if boot < 0 or seq < 0:
            raise Malformed("fused boot and seq must be non-negative")
        raw = _raw_in(b, n, tensor_only=True)
        return cls(task, bridge, boot, seq, devices, ctx_names, sample, device_idx, feat,
                   label, edge_label, edge_conf, mv, ctx, raw)


CONTAINERS = {c.KIND: c for c in (FeatureBatch, HardSample, FusedBatch)}

# What each container holds, for docs/PROTOCOL.md; tests check encoders against it.
# (name, dtype, shape, meaning)
LAYOUT: dict[str, dict[str, list[tuple[str, str, str, str]]]] = {
    "feat": {
        "meta": [("kind", "str", "", "`feat`"), ("schema", "str", "", "container schema, `1`"),
                 ("device", "str", "", "sender device id (must match the topic)"),
                 ("stream", "str", "", "stream name (must match the topic)"), ("task", "str", "", "task name"),
                 ("boot", "int", "", "boot epoch of the sender"),
                 ("seq", "int", "", "per-boot sequence number; (device, boot, seq) is the dedup key"),
                 ("model_version", "int", "", "edge model version that made the features"),
                 ("raw", "str", "", "optional: `tensor` when the batch carries its raw samples")],
        "tensors": [("sample", "int64", "(N,)", "sample ids"),
                    ("feat", "float16|float32", "(N, D)", "feature vectors (float16 when configured)"),
                    ("scores", "float16|float32", "(N, C)", "class probabilities from the edge model"),
                    ("ts", "float64", "(N,)", "capture times, unix seconds"),
                    ("raw", "float16|float32|uint8|int16|uint16|int32", "(N, ...)",
                     "optional: the samples themselves, when the manifest's `cloud.uplink` is `all` (meta `raw` = "
                     "`tensor`)")],
    },
    "hard": {
        "meta": [("kind", "str", "", "`hard`"), ("schema", "str", "", "container schema, `1`"),
                 ("device", "str", "", "sender device id"), ("stream", "str", "", "stream name"),
                 ("task", "str", "", "task name"), ("boot", "int", "", "boot epoch"),
                 ("seq", "int", "", "per-boot sequence number"), ("model_version", "int", "", "edge model version"),
                 ("raw", "str", "", "optional: how the raw samples sit: `jpeg` (files back to back in `raw`, lengths "
                  "in `raw_size`) or `tensor`")],
        "tensors": [("sample", "int64", "(N,)", "sample ids"),
                    ("x", "float16|float32", "(N, ...)", "preprocessed model input, per the manifest's input spec; "
                     "(N, 0) when it carries none: agents send the raw sample instead"),
                    ("feat", "float16|float32", "(N, D)", "edge features"),
                    ("scores", "float16|float32", "(N, C)", "edge class probabilities"),
                    ("ts", "float64", "(N,)", "capture times"),
                    ("raw", "uint8 (jpeg) or float16|float32|uint8|int16|uint16|int32 (tensor)", "(B,) or (N, ...)",
                     "optional: the captured samples, per the manifest's `cloud` contract (frames as JPEG at "
                     "capture resolution, windows as float16 or their own dtype)"),
                    ("raw_size", "int64", "(N,)", "with `raw` = `jpeg`: each row's JPEG length in bytes")],
    },
    "fused": {
        "meta": [("kind", "str", "", "`fused`"), ("schema", "str", "", "container schema, `1`"),
                 ("task", "str", "", "task name"), ("bridge", "str", "", "bridge instance id"),
                 ("boot", "int", "", "bridge boot epoch (ms); a worker acks (bridge, boot, seq) on hub/ack/{bridge}"),
                 ("seq", "int", "", "per-bridge-boot batch sequence"),
                 ("devices", "JSON list", "", "device ids; `device_idx` indexes it"),
                 ("context", "JSON list", "", "names of the `ctx` columns"),
                 ("raw", "str", "", "optional: `tensor` when the rows carry their raw samples")],
        "tensors": [("sample", "int64", "(N,)", "sample ids"), ("device_idx", "int32", "(N,)", "index into `devices`"),
                    ("feat", "float16|float32", "(N, D)", "feature vectors, in the dtype the edge sent them"),
                    ("label", "int64", "(N,)", "ground truth, -1 when no label arrived within the window"),
                    ("edge_label", "int64", "(N,)", "edge model's prediction"),
                    ("edge_conf", "float32", "(N,)", "edge model's confidence"),
                    ("model_version", "int32", "(N,)", "edge model version per row"),
                    ("ctx", "float32", "(N, K)", "context features named by `context`"),
                    ("raw", "float16|float32|uint8|int16|uint16|int32", "(N, ...)",
                     "optional: the samples themselves, as their feature rows carried them")],
    },
}
