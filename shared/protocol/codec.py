"""The tensor container: binary, self-describing, pickle-free.

Layout (all integers little-endian)::

    b"LPT" | u8 version | u32 header_len | header (UTF-8 JSON) | pad to 8 | tensor data ...

The header is ``{"meta": {str: str}, "tensors": [{"name", "dtype", "shape"}]}``; tensor
data follows in header order, each tensor starting on an 8-byte boundary. Offsets are
derived from dtype and shape rather than stored, so a header cannot point outside the
buffer, and the total length must match exactly (truncation and trailing bytes are
both rejected). Decoding is zero-copy (read-only views into the payload).

Why not npy or pickle: npy holds one array and its loader is a pickle footgun; JSON lists
cost ~9x the encode+decode time and ~5x the bytes (1x256 float32: 201 us and 5.3 kB as a JSON
list, 23 us and 1.1 kB here; timeit on the 2 vCPU CI machine, 2026-12-01). This is safetensors'
idea with metadata and limits suited to MQTT payloads.
"""

from __future__ import annotations

import json
import json.scanner
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from shared.protocol import strictjson

MAGIC = b"LPT"
VERSION = 1
_PREFIX = struct.Struct("<3sBI")
_ALIGN = 8

# Only fixed-size numeric dtypes: no objects, no strings, no structured types.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16", "float32", "float64"}
)


class CodecError(ValueError):
    """Base of every rejection; ``reason`` is a short stable key for counters."""

    reason = "malformed"


class Truncated(CodecError):
    reason = "truncated"


class Oversized(CodecError):
    reason = "oversized"


class BadMagic(CodecError):
    reason = "bad_magic"


class UnsupportedVersion(CodecError):
    reason = "unsupported_version"


class BadDtype(CodecError):
    reason = "bad_dtype"


class BadShape(CodecError):
    reason = "bad_shape"


class NonFinite(CodecError):
    reason = "non_finite"


class Malformed(CodecError):
    reason = "malformed"


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits checked before any allocation. max_bytes matches mosquitto's message_size_limit."""

    max_bytes: int = 4 * 1024 * 1024
    max_header: int = 64 * 1024
    max_tensors: int = 32
    max_rank: int = 4
    max_dim: int = 1 << 20
    max_meta: int = 64
    max_meta_value: int = 8192


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Bundle:
    """Named tensors plus string metadata, as decoded from (or about to become) a payload."""

    tensors: Mapping[str, np.ndarray]
    meta: Mapping[str, str] = field(default_factory=dict)
    layout: Layout | None = None  # set by the fast decode path: the tensors' (cached, checked) layout

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def require(self, name: str, *, dtypes: tuple[str, ...], rank: int, dims: tuple[int | None, ...] = ()) -> np.ndarray:
        """Return tensor ``name`` or raise a typed error if it is missing or off-spec."""
        if name not in self.tensors:
            raise Malformed(f"missing tensor {name!r}")
        arr = self.tensors[name]
        if _dtype_name(arr.dtype) not in dtypes:
            raise BadDtype(f"tensor {name!r} has dtype {arr.dtype.name}, expected one of {dtypes}")
        if arr.ndim != rank:
            raise BadShape(f"tensor {name!r} has rank {arr.ndim}, expected {rank}")
        for i, want in enumerate(dims):
            if want is not None and arr.shape[i] != want:
                raise BadShape(f"tensor {name!r} has shape {arr.shape}, expected dim {i} == {want}")
        return arr

    def meta_str(self, key: str) -> str:
        if key not in self.meta:
            raise Malformed(f"missing meta {key!r}")
        return self.meta[key]

    def meta_int(self, key: str) -> int:
        raw = self.meta_str(key)
        if len(raw) > 20:  # int64 at most; also spares converting thousands of digits
            raise Malformed(f"meta {key!r} is not an int64: {raw[:24]!r}...")
        try:
            v = int(raw)
        except ValueError:
            raise Malformed(f"meta {key!r} is not an integer: {raw!r}") from None
        if not -(1 << 63) <= v < (1 << 63):
            raise Malformed(f"meta {key!r} is out of the int64 range")
        return v


_NAME_OF_STR = {np.dtype(n).str: n for n in ALLOWED_DTYPES}


def _dtype_name(dt: np.dtype) -> str:
    # numpy 2 computes dtype.name in Python (~5 us); .str is a C attribute
    return _NAME_OF_STR.get(dt.str) or dt.name


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def encode(
    tensors: Mapping[str, np.ndarray],
    meta: Mapping[str, str] | None = None,
    *,
    float16: bool | frozenset[str] | set[str] = False,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Pack tensors and metadata. ``float16`` casts all float tensors (True) or the named ones."""
    meta = dict(meta or {})
    if len(meta) > limits.max_meta:
        raise Oversized(f"{len(meta)} meta entries > {limits.max_meta}")
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Malformed(f"meta must be str -> str, got {k!r}: {type(v).__name__}")
        if len(v) > limits.max_meta_value:
            raise Oversized(f"meta {k!r} is {len(v)} chars > {limits.max_meta_value}")
    if len(tensors) > limits.max_tensors:
        raise Oversized(f"{len(tensors)} tensors > {limits.max_tensors}")
    arrays: list[tuple[str, np.ndarray]] = []
    for name, arr in tensors.items():
        a = np.asarray(arr)
        if a.dtype.kind == "f" and (float16 is True or (not isinstance(float16, bool) and name in float16)):
            a = a.astype(np.float16)
        _check_array(name, a.dtype.name, a.shape, limits)
        arrays.append((name, a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)))
    header = json.dumps(
        {"meta": meta, "tensors": [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape)} for n, a in arrays]},
        separators=(",", ":"),
    ).encode()
    if len(header) > limits.max_header:
        raise Oversized(f"header {len(header)} B > {limits.max_header}")
    parts = [_PREFIX.pack(MAGIC, VERSION, len(header)), header]
    pos = _PREFIX.size + len(header)
    for _, a in arrays:
        pad = _pad(pos)
        parts.append(b"\0" * pad)
        parts.append(a.tobytes())
        pos += pad + a.nbytes
    if pos > limits.max_bytes:
        raise Oversized(f"payload {pos} B > {limits.max_bytes}")
    return b"".join(parts)


def _check_array(name: str, dtype: str, shape: tuple[int, ...], limits: Limits) -> None:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise Malformed(f"bad tensor name {name!r}")
    if dtype not in ALLOWED_DTYPES:
        raise BadDtype(f"tensor {name!r}: dtype {dtype!r} is not allowed")
    if len(shape) > limits.max_rank:
        raise BadShape(f"tensor {name!r}: rank {len(shape)} > {limits.max_rank}")
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0 or d > limits.max_dim:
            raise BadShape(f"tensor {name!r}: bad dimension {d!r}")


def peek_meta(payload: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """The metadata alone, without touching (or checking) the tensors: for routing and accounting
    decisions that need a message's identity but not its data. Typed errors as :func:`decode`."""
    buf = memoryview(payload).cast("B")
    fast = _fast_header(buf, len(buf), limits)
    if fast is not None:
        return fast[0]
    header = _header(buf, len(buf), limits)
    meta = header["meta"]
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Malformed("meta must map strings to strings")
    return meta


def _header(buf: memoryview, total: int, limits: Limits) -> dict:
    if total > limits.max_bytes:
        raise Oversized(f"payload {total} B > {limits.max_bytes}")
    if total < _PREFIX.size:
        raise Truncated(f"payload of {total} B is shorter than the {_PREFIX.size} B prefix")
    magic, version, hlen = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise BadMagic(f"not a Lepton tensor container (magic {bytes(magic)!r})")
    if version != VERSION:
        raise UnsupportedVersion(f"container version {version}; this build reads {VERSION}")
    if hlen > limits.max_header:
        raise Oversized(f"header {hlen} B > {limits.max_header}")
    if _PREFIX.size + hlen > total:
        raise Truncated("header runs past the end of the payload")
    try:
        header = strictjson.loads(bytes(buf[_PREFIX.size:_PREFIX.size + hlen]))
    except strictjson.JsonError as exc:
        raise Malformed(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"meta", "tensors"}:
        raise Malformed("header must be an object with exactly 'meta' and 'tensors'")
    return header


_LE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}
_SPEC_KEYS = frozenset({"name", "dtype", "shape"})
_scan = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner where CPython has it
_META_OPEN, _TENSORS_KEY = '{"meta":', ',"tensors":'


class Layout:
    """The validated tensor list of a header: (name, dtype, shape, element count, byte count) per tensor.

    The tensor list repeats from message to message (same model, same shapes), so its JSON text is
    a cache key: parsed and checked once, after that only the meta object is parsed. Containers
    cache their own dtype/rank/row checks per layout too (``Bundle.layout``)."""

    __slots__ = ("specs", "names")

    def __init__(self, specs: tuple[tuple[str, np.dtype, tuple[int, ...], int, int], ...]) -> None:
        self.specs = specs
        self.names = frozenset(s[0] for s in specs)


_LAYOUTS: dict[int, tuple[Limits, dict[str, Layout]]] = {}  # id(limits) -> (limits, text -> layout)
_LAYOUTS_MAX = 4096


def _layout(text: str, limits: Limits) -> Layout | None:
    """The Layout of a tensor-list JSON text, when it passes every check the strict path makes."""
    entry = _LAYOUTS.get(id(limits))
    if entry is None or entry[0] is not limits:
        entry = _LAYOUTS[id(limits)] = (limits, {})
    cache = entry[1]
    lay = cache.get(text)
    if lay is not None:
        return lay
    try:
        specs = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if type(specs) is not list or len(specs) > limits.max_tensors:
        return None
    out, names = [], set()
    for spec in specs:
        if type(spec) is not dict or spec.keys() != _SPEC_KEYS:
            return None
        name, shape, dtype = spec["name"], spec["shape"], spec["dtype"]
        if type(name) is not str or not 0 < len(name) <= 64 or name in names or type(dtype) is not str \
                or dtype not in _LE_DTYPES or type(shape) is not list or len(shape) > limits.max_rank:
            return None
        count = 1
        for d in shape:
            if type(d) is not int or not 0 <= d <= limits.max_dim:
                return None
            count *= d
        names.add(name)
        dt = _LE_DTYPES[dtype]
        out.append((name, dt, tuple(shape), count, count * dt.itemsize))
    lay = Layout(tuple(out))
    if len(cache) >= _LAYOUTS_MAX:
        cache.clear()
    cache[text] = lay
    return lay


def _fast_header(buf: memoryview, total: int, limits: Limits) -> tuple[dict[str, str], Layout, int] | None:
    """(meta, layout, end of header) of a well-formed payload, or None for anything unusual, which
    then takes the strict path (and gets its typed rejection there).

    Accept-only: the header must read ``{"meta":{...},"tensors":[...]}`` exactly as the encoder
    writes it, with no backslash (so no escape and no surrogate), meta a flat object of strings and
    the tensor list a checked :class:`Layout` (ints in range, nothing else). That is all strictjson's
    hooks guard against, so whatever this returns the strict path would have returned too."""
    if total > limits.max_bytes or total < _PREFIX.size:
        return None
    magic, version, hlen = _PREFIX.unpack_from(buf, 0)
    end = _PREFIX.size + hlen
    if magic != MAGIC or version != VERSION or hlen > limits.max_header or end > total:
        return None
    try:
        text = str(buf[_PREFIX.size:end], "utf-8")
    except UnicodeDecodeError:
        return None
    if "\\" in text or not text.startswith(_META_OPEN) or not text.endswith("]}"):
        return None
    try:
        meta, mend = _scan(text, len(_META_OPEN))
    except (StopIteration, ValueError, RecursionError):
        return None
    if type(meta) is not dict or len(meta) > limits.max_meta or not text.startswith(_TENSORS_KEY, mend):
        return None
    for v in meta.values():
        if type(v) is not str:
            return None
    lay = _layout(text[mend + len(_TENSORS_KEY):-1], limits)
    if lay is None:
        return None
    return meta, lay, end


def decode(payload: bytes | bytearray | memoryview, *, allow_nonfinite: bool = False,
           limits: Limits = DEFAULT_LIMITS) -> Bundle:
    """Unpack a payload, rejecting anything malformed with a typed :class:`CodecError`.

    A well-formed payload takes a fast path (:func:`_fast_header`); anything else is parsed by the
    strict path below, which raises the typed error. Both build the same Bundle."""
    buf = memoryview(payload).cast("B")
    total = len(buf)
    fast = _fast_header(buf, total, limits)
    if fast is not None:
        meta, lay, pos = fast
        out: dict[str, np.ndarray] = {}
        for name, dt, shape, count, nbytes in lay.specs:
            pos += (-pos) % _ALIGN
            if nbytes > total - pos:
                break
            arr = np.frombuffer(buf, dtype=dt, count=count, offset=pos)
            if len(shape) != 1:
                arr = arr.reshape(shape)
            if not allow_nonfinite and dt.kind == "f" and count and not np.isfinite(arr).all():
                break
            out[name] = arr
            pos += nbytes
        else:
            if pos == total:
                return Bundle(tensors=out, meta=meta, layout=lay)
    return _decode_strict(buf, total, allow_nonfinite, limits)


def _decode_strict(buf: memoryview, total: int, allow_nonfinite: bool, limits: Limits) -> Bundle:
    header = _header(buf, total, limits)
    hlen = _PREFIX.unpack_from(buf, 0)[2]
    meta, specs = header["meta"], header["tensors"]
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Malformed("meta must map strings to strings")
    if len(meta) > limits.max_meta:
        raise Oversized(f"{len(meta)} meta entries > {limits.max_meta}")
    if not isinstance(specs, list):
        raise Malformed("tensors must be a list")
    if len(specs) > limits.max_tensors:
        raise Oversized(f"{len(specs)} tensors > {limits.max_tensors}")
    pos = _PREFIX.size + hlen
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
            raise Malformed(f"bad tensor entry {spec!r:.80}")
        name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
        if not isinstance(shape, list) or not isinstance(dtype, str):
            raise Malformed(f"bad tensor entry {spec!r:.80}")
        _check_array(name, dtype, tuple(shape), limits)
        if name in out:
            raise Malformed(f"duplicate tensor name {name!r}")
        dt = np.dtype(dtype).newbyteorder("<")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dt.itemsize
        pos += _pad(pos)
        if nbytes > total - pos:
            raise Truncated(f"tensor {name!r} needs {nbytes} B, {max(total - pos, 0)} B left")
        arr = np.frombuffer(buf, dtype=dt, count=count, offset=pos).reshape(tuple(shape))
        if not allow_nonfinite and dt.kind == "f" and count and not np.isfinite(arr).all():
            raise NonFinite(f"tensor {name!r} holds NaN or Inf")
        out[name] = arr
        pos += nbytes
    if pos != total:
        raise Malformed(f"{total - pos} trailing bytes after the last tensor")
    return Bundle(tensors=out, meta=meta)
