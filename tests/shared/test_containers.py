import numpy as np
import pytest

from shared.protocol import codec
from shared.protocol.containers import LAYOUT, FeatureBatch, FusedBatch, HardSample

from .samples import feature_batch, fused_batch, hard_sample


@pytest.mark.parametrize("make,cls", [(feature_batch, FeatureBatch), (hard_sample, HardSample), (fused_batch, FusedBatch)])
def test_round_trip_and_layout_agree_with_docs(make, cls):
    rec = make()
    blob = rec.encode()
    back = cls.decode(blob)
    for f in cls.__dataclass_fields__:
        a, b = getattr(rec, f), getattr(back, f)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b
    raw = codec.decode(blob)
    layout = LAYOUT[cls.KIND]
    # Raw rows are optional (these samples carry none); every other entry is always there.
    assert list(raw.tensors) == [t[0] for t in layout["tensors"] if not t[0].startswith("raw")]
    assert sorted(raw.meta) == sorted(m[0] for m in layout["meta"] if m[0] != "raw")


def test_float16_features():
    fb = feature_batch(n=16)
    small, big = fb.encode(float16=True), fb.encode()
    assert len(small) < len(big)
    assert FeatureBatch.decode(small).feat.dtype == np.float16


def _reencode(blob, **changes):
    b = codec.decode(blob)
    tensors = dict(b.tensors)
    meta = dict(b.meta)
    for k, v in changes.items():
        if k.startswith("meta_"):
            meta[k[5:]] = v
        elif v is None:
            tensors.pop(k)
        else:
            tensors[k] = v
    return codec.encode(tensors, meta)


@pytest.mark.parametrize("changes,err", [
    (dict(feat=np.zeros((3, 32), np.float32)), codec.BadShape),          # row count mismatch
    (dict(feat=np.zeros((4, 32), np.int32)), codec.BadDtype),            # wrong dtype
    (dict(scores=None), codec.Malformed),                                # missing tensor
    (dict(meta_kind="hard"), codec.Malformed),                           # wrong container kind
    (dict(meta_schema="2"), codec.UnsupportedVersion),                   # unknown schema
    (dict(meta_device="a/b"), codec.Malformed),                          # bad device id
    (dict(meta_seq="x"), codec.Malformed),                               # bad int
])
def test_feature_batch_rejections(changes, err):
    with pytest.raises(err):
        FeatureBatch.decode(_reencode(feature_batch().encode(), **changes))


def test_fused_device_idx_out_of_range():
    blob = _reencode(fused_batch().encode(), device_idx=np.array([0, 1, 2, 0, 1], np.int32))
    with pytest.raises(codec.BadShape):
        FusedBatch.decode(blob)


def test_nan_features_rejected():
    fb = feature_batch()
    bad = fb.feat.copy()
    bad[0, 0] = np.nan
    with pytest.raises(codec.NonFinite):
        FeatureBatch.decode(_reencode(fb.encode(), feat=bad))
