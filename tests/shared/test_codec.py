import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.protocol import codec

DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"]


@st.composite
def bundles(draw):
    n = draw(st.integers(0, 5))
    tensors = {}
    for i in range(n):
        dt = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
        elems = hnp.from_dtype(dt, allow_nan=False, allow_infinity=False) if dt.kind == "f" else None
        tensors[f"t{i}"] = draw(hnp.arrays(dt, shape, elements=elems))
    meta = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4))
    return tensors, meta


@settings(max_examples=150, deadline=None)
@given(bundles())
def test_round_trip_is_exact(b):
    tensors, meta = b
    out = codec.decode(codec.encode(tensors, meta))
    assert dict(out.meta) == meta
    assert list(out.tensors) == list(tensors)
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_rejected_with_a_typed_error(data):
    try:
        codec.decode(data)
    except codec.CodecError as exc:
        assert exc.reason in {"truncated", "oversized", "bad_magic", "unsupported_version", "bad_dtype",
                              "bad_shape", "non_finite", "malformed"}


@settings(max_examples=150, deadline=None)
@given(bundles(), st.data())
def test_every_truncation_is_rejected(b, data):
    blob = codec.encode(*b)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(codec.CodecError):
        codec.decode(blob[:cut])


def _valid():
    return codec.encode({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"kind": "t"})


def _with_header(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<3sBI", b"LPT", 1, len(header)) + header + body


def test_trailing_bytes_rejected():
    with pytest.raises(codec.Malformed):
        codec.decode(_valid() + b"\0" * 8)


def test_bad_magic_and_unknown_version():
    blob = _valid()
    with pytest.raises(codec.BadMagic):
        codec.decode(b"XYZ" + blob[3:])
    with pytest.raises(codec.UnsupportedVersion) as e:
        codec.decode(blob[:3] + bytes([9]) + blob[4:])
    assert e.value.reason == "unsupported_version"


def test_oversized_payload_and_tensor_limits():
    with pytest.raises(codec.Oversized):
        codec.decode(b"\0" * (codec.DEFAULT_LIMITS.max_bytes + 1))
    with pytest.raises(codec.Oversized):
        codec.encode({"x": np.zeros((1100, 1000), np.float32)})
    with pytest.raises(codec.BadShape):
        codec.encode({"x": np.zeros((1, 1, 1, 1, 1), np.float32)})
    small = codec.Limits(max_bytes=64)
    with pytest.raises(codec.Oversized):
        codec.decode(_valid(), limits=small)


def test_wrong_dtype_rejected_both_ways():
    with pytest.raises(codec.BadDtype):
        codec.encode({"x": np.array(["a"])})
    with pytest.raises(codec.BadDtype):
        codec.encode({"x": np.array([object()])})
    hdr = b'{"meta":{},"tensors":[{"name":"x","dtype":"object","shape":[1]}]}'
    with pytest.raises(codec.BadDtype):
        codec.decode(_with_header(hdr, b"\0" * 8))


def test_header_lies_about_size():
    hdr = b'{"meta":{},"tensors":[{"name":"x","dtype":"float64","shape":[1000000]}]}'
    with pytest.raises(codec.Truncated):
        codec.decode(_with_header(hdr, b"\0" * 16))
    neg = b'{"meta":{},"tensors":[{"name":"x","dtype":"float64","shape":[-1]}]}'
    with pytest.raises(codec.BadShape):
        codec.decode(_with_header(neg))


@pytest.mark.parametrize("hdr", [b"not json", b"[]", b'{"meta":{}}', b'{"meta":{"a":1},"tensors":[]}',
                                 b'{"meta":{},"tensors":[{"name":"x"}]}', b'{"meta":{},"tensors":{}}',
                                 b'{"meta":{},"tensors":[],"extra":1}'])
def test_malformed_headers(hdr):
    with pytest.raises(codec.Malformed):
        codec.decode(_with_header(hdr))


def test_duplicate_names_rejected():
    hdr = (b'{"meta":{},"tensors":[{"name":"x","dtype":"uint8","shape":[1]},'
           b'{"name":"x","dtype":"uint8","shape":[1]}]}')
    raw = _with_header(hdr)
    raw += b"\0" * ((-len(raw)) % 8) + b"\1" + b"\0" * 7 + b"\2"
    with pytest.raises(codec.Malformed):
        codec.decode(raw)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_unless_allowed(bad):
    blob = codec.encode({"x": np.array([1.0, bad], np.float32)})
    with pytest.raises(codec.NonFinite):
        codec.decode(blob)
    assert np.isnan(codec.decode(blob, allow_nonfinite=True)["x"][1]) == np.isnan(bad)


def test_float16_option_halves_features_and_keeps_ints():
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    ids = np.arange(32, dtype=np.int64)
    full = codec.encode({"x": x, "ids": ids})
    half = codec.encode({"x": x, "ids": ids}, float16=True)
    out = codec.decode(half)
    assert out["x"].dtype == np.float16 and out["ids"].dtype == np.int64
    assert len(half) < 0.6 * len(full)
    assert np.abs(out["x"].astype(np.float32) - x).max() < 1e-2


def test_decoded_arrays_are_read_only_views():
    out = codec.decode(_valid())
    with pytest.raises(ValueError):
        out["x"][0, 0] = 1


def test_require_checks_dtype_rank_and_dims():
    b = codec.decode(_valid())
    assert b.require("x", dtypes=("float32",), rank=2, dims=(2, 3)).shape == (2, 3)
    with pytest.raises(codec.BadDtype):
        b.require("x", dtypes=("int64",), rank=2)
    with pytest.raises(codec.BadShape):
        b.require("x", dtypes=("float32",), rank=1)
    with pytest.raises(codec.BadShape):
        b.require("x", dtypes=("float32",), rank=2, dims=(3,))
    with pytest.raises(codec.Malformed):
        b.require("y", dtypes=("float32",), rank=2)


def _outcome(fn, blob):
    """What a decoder makes of a payload: its error class, or its content."""
    try:
        b = fn(blob)
    except codec.CodecError as exc:
        return type(exc).__name__
    return (dict(b.meta), [(k, v.dtype.str, v.shape, v.tobytes()) for k, v in b.tensors.items()])


def _strict(blob):
    buf = memoryview(blob).cast("B")
    return codec._decode_strict(buf, len(buf), False, codec.DEFAULT_LIMITS)


@settings(max_examples=150, deadline=None)
@given(bundles())
def test_fast_path_takes_what_the_encoder_writes_and_agrees_with_the_strict_path(b):
    tensors, meta = b
    blob = codec.encode(tensors, meta)
    ascii_meta = all(k.isascii() and v.isascii() and "\\" not in k + v and '"' not in k + v and k.isprintable()
                     and v.isprintable() for k, v in meta.items())
    if ascii_meta:  # nothing json.dumps escapes: the header is plain and takes the fast path
        assert codec.decode(blob).layout is not None
    assert _outcome(codec.decode, blob) == _outcome(_strict, blob)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fast_and_strict_paths_agree_on_mutated_headers(data):
    blob = bytearray(codec.encode({"a": np.arange(4, dtype=np.int64), "f": np.ones((2, 3), np.float32)},
                                  {"kind": "feat", "device": "cam-1", "seq": "7"}))
    hlen = struct.unpack_from("<I", blob, 4)[0]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(8, 8 + hlen - 1))
        blob[i] = data.draw(st.sampled_from(b'{}[]",:0123456789-.eE \\abtxyzNaIfinity\xff'))
    assert _outcome(codec.decode, bytes(blob)) == _outcome(_strict, bytes(blob))


@pytest.mark.parametrize("hdr", [
    b'{"meta":{"k":"v"},"tensors":[{"name":"x","dtype":"float32","shape":[1e400]}]}',  # float where an int goes
    b'{"meta":{"k":NaN},"tensors":[]}',
    b'{"meta":{"k":"\\ud800"},"tensors":[]}',  # lone surrogate escape
    b'{"meta":{"k":"v"},"tensors":[{"name":"x","dtype":"float32","shape":[' + b"9" * 30 + b']}]}',
    b'{"meta":{"k":"v"},"tensors":[{"name":"x","dtype":"float32","shape":[true]}]}',
    b'{"meta":{"k":"v"},"tensors":[{"name":"x","dtype":"float32","shape":[1]}],"meta":{}}',
    b'{"meta":{"k":"v"} ,"tensors":[]}',
])
def test_headers_off_the_fast_path_get_the_strict_paths_rejection(hdr):
    blob = _with_header(hdr, b"\0" * ((-len(hdr)) % 8) + b"\0" * 8)
    assert _outcome(codec.decode, blob) == _outcome(_strict, blob)
