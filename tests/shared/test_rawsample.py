"""Raw samples on the wire: JPEG frames and float16 windows survive the containers, and hostile raw
payloads are refused with typed reasons."""

import dataclasses
import struct

import numpy as np
import pytest

from shared.protocol import codec, rawsample
from shared.protocol.containers import FeatureBatch, FusedBatch, HardSample
from shared.protocol.rawsample import RawError, RawRows

from .samples import feature_batch, fused_batch, hard_sample


def _frame(h=240, w=320, seed=0):
    rng = np.random.default_rng(seed)
    f = np.zeros((h, w, 3), np.uint8)
    f[: h // 2] = (30, 120, 200)
    f[h // 2:] = (200, 90, 10)
    return np.clip(f + rng.normal(0, 4, f.shape), 0, 255).astype(np.uint8)


def test_jpeg_frame_survives_a_hard_sample():
    frame = _frame()
    jpg = rawsample.encode(frame, "jpeg", quality=80)
    assert jpg.dtype == np.uint8 and jpg.ndim == 1 and len(jpg) < frame.nbytes / 10
    hs = dataclasses.replace(hard_sample(), x=np.zeros((1, 0), np.float16), raw=RawRows.jpeg([jpg]))
    back = HardSample.decode(hs.encode())
    assert back.raw is not None and back.raw.encoding == "jpeg" and len(back.raw) == 1
    decoded = rawsample.decode(back.raw.item(0), back.raw.encoding)
    assert decoded.shape == frame.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frame).mean() < 6  # lossy, but the same picture


def test_jpeg_rows_of_different_sizes():
    files = [rawsample.encode(_frame(seed=i, h=60 + 20 * i, w=80), "jpeg") for i in range(3)]
    rows = RawRows.jpeg(files)
    for i in range(3):
        assert bytes(rows.item(i)) == bytes(files[i])
    kept = rows.take(np.array([True, False, True]))
    assert [bytes(kept.item(i)) for i in range(2)] == [bytes(files[0]), bytes(files[2])]


def test_float16_window_survives_feature_and_fused_batches():
    fb = feature_batch(n=4)
    win = np.random.default_rng(1).normal(size=(4, 1, 500)).astype(np.float32)
    rows = RawRows.tensor(rawsample.encode(win, "float16"))
    back = FeatureBatch.decode(dataclasses.replace(fb, raw=rows).encode(float16=True))
    assert back.raw is not None and back.raw.data.dtype == np.float16 and back.raw.data.shape == (4, 1, 500)
    np.testing.assert_allclose(rawsample.decode(back.raw.item(2), "tensor"), win[2], atol=2e-3)
    fused = fused_batch(n=4)
    fb2 = FusedBatch.decode(dataclasses.replace(fused, raw=rows).encode())
    np.testing.assert_array_equal(fb2.raw.data, rows.data)


def test_jpeg_not_allowed_in_feature_batches():
    fb = dataclasses.replace(feature_batch(n=1), raw=RawRows.jpeg([rawsample.encode(_frame(), "jpeg")]))
    with pytest.raises(codec.Malformed):
        fb.encode()


def _hard_with(tensors: dict, meta_raw: str | None):
    b = codec.decode(hard_sample().encode())
    t = dict(b.tensors)
    t.update(tensors)
    meta = dict(b.meta)
    if meta_raw is not None:
        meta["raw"] = meta_raw
    return codec.encode(t, meta)


JPG = rawsample.encode(_frame(), "jpeg")


@pytest.mark.parametrize("tensors,meta,err", [
    ({"raw": JPG}, None, codec.Malformed),                                                   # raw, no meta
    ({"raw": JPG, "raw_size": np.array([len(JPG)], np.int64)}, "png", codec.Malformed),      # unknown encoding
    ({"raw": JPG}, "jpeg", codec.BadShape),                                                  # no raw_size
    ({"raw": JPG, "raw_size": np.array([len(JPG) + 1], np.int64)}, "jpeg", codec.BadShape),  # sizes disagree
    ({"raw": JPG, "raw_size": np.array([0], np.int64)}, "jpeg", codec.BadShape),             # empty row
    ({"raw": JPG.astype(np.int16), "raw_size": np.array([len(JPG)], np.int64)}, "jpeg", codec.BadDtype),
    ({"raw": JPG, "raw_size": np.array([rawsample.MAX_JPEG_BYTES + 8], np.int64)}, "jpeg", codec.Oversized),
    ({"raw": np.full((1, 1, 8), np.nan, np.float32)}, "tensor", codec.NonFinite),           # NaN window
    ({"raw": np.zeros((2, 1, 8), np.float32)}, "tensor", codec.BadShape),                    # 2 rows for 1
    ({"raw": np.zeros((1, 8), np.float64)}, "tensor", codec.BadDtype),                       # float64
])
def test_hostile_raw_rows_are_typed(tensors, meta, err):
    with pytest.raises(err):
        HardSample.decode(_hard_with(tensors, meta))


def _jpeg_claiming(w: int, h: int) -> bytes:
    """A real JPEG whose frame header is rewritten to claim other dimensions (a decompression bomb)."""
    b = bytearray(bytes(rawsample.encode(_frame(16, 16), "jpeg")))
    i = 2
    while True:
        marker, (length,) = b[i + 1], struct.unpack_from(">H", b, i + 2)
        if 0xC0 <= marker <= 0xC2:
            struct.pack_into(">HH", b, i + 5, h, w)
            return bytes(b)
        i += 2 + length


def test_decode_jpeg_refuses_bombs_garbage_and_truncation():
    assert rawsample.jpeg_dims(JPG)[:2] == (320, 240)
    with pytest.raises(RawError) as e:
        rawsample.decode_jpeg(_jpeg_claiming(60000, 60000))
    assert e.value.reason == "bad_shape"
    for junk in (b"", b"\xff\xd8", b"not a jpeg at all", bytes(JPG[:40])):
        with pytest.raises(RawError) as e:
            rawsample.decode_jpeg(junk)
        assert e.value.reason == "undecodable"
    with pytest.raises(RawError) as e:
        rawsample.decode_jpeg(b"\xff\xd8" + b"\x00" * (rawsample.MAX_JPEG_BYTES + 1))
    assert e.value.reason == "oversized"
    # A header that parses but a body cut short: OpenCV may decode what it can, or nothing; never crash.
    try:
        out = rawsample.decode_jpeg(bytes(JPG[: len(JPG) // 2]))
        assert out.shape == (240, 320, 3)
    except RawError as exc:
        assert exc.reason == "undecodable"


def test_encode_refuses_what_it_cannot_carry():
    with pytest.raises(RawError):
        rawsample.encode(np.zeros((4, 4), np.float32), "jpeg")
    with pytest.raises(RawError):
        rawsample.encode(np.zeros((1, 4), np.float64), "raw")
    assert rawsample.encode(np.zeros((1, 4), np.int16), "raw").dtype == np.int16
