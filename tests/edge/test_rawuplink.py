"""The agent sends the cloud the sample itself, as the serving manifest's cloud contract says."""

import numpy as np

from edge_agent.rawuplink import RawUplink
from lepton_tasks import load_task
from shared.process.counters import Counters
from shared.protocol import rawsample, schemas
from shared.protocol.containers import HardSample
from shared.protocol.topics import Kind

from .conftest import wait_until
from .models import release, write_files


def test_an_agent_builds_the_clouds_raw_encoding_from_its_source_sample():
    cam = load_task("camera")
    frame = cam.dataset().raw[int(cam.dataset().stream[0])]
    up = RawUplink(Counters())
    rows = up.escalation(cam.cloud_input(), frame)
    assert rows is not None and rows.encoding == "jpeg" and len(rows) == 1
    back = rawsample.decode(rows.item(0), "jpeg")
    assert back.shape == frame.shape == (240, 320, 3)  # capture resolution, not the edge's 48x64
    assert len(rows.item(0)) < 0.1 * frame.nbytes
    # The cloud's own preprocessing of what arrived is its input: twice the edge's resolution.
    assert cam.cloud_pipeline()(back).shape == (1, 3, 96, 128)
    ind = load_task("industrial")
    win = ind.dataset().raw[0]
    row = up.feature_row(ind.cloud_input(), win)
    assert row.dtype == np.float16 and row.shape == win.shape == (1, 500)
    assert up.feature_row(cam.cloud_input(), frame) is None  # frames ride with escalations only
    assert up.escalation(None, frame) is None  # no contract, no raw sample


def test_encoding_failures_are_counted_not_raised():
    c = Counters()
    cloud = load_task("camera").cloud_input()
    assert RawUplink(c).escalation(cloud, np.zeros((4, 4), np.float32)) is None
    assert c.get("escalation.raw_failed.bad_shape") == 1


def test_escalations_carry_the_frame_as_jpeg_one_in_raw_every(make_agent, collect, topics, tmp_path):
    n = 24
    task = load_task("digits")
    rel = release(topics, "digits", 1, cloud=task.cloud_input(),
                  decision=schemas.DecisionDefaults(threshold=1.0, budget=None, raw_every=2))
    agent = make_agent(start=False, source={"type": "replay", "split": "stream", "loop": False, "limit": n},
                       capture={"start_after_model": True},
                       decision={"reply_deadline_s": 0.3, "rate_limit": 1000.0, "burst": 1000, "audit_rate": 0.0},
                       model=write_files(rel, tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    wait_until(lambda: col.count(Kind.HARD) >= n, what="every sample escalated")
    hard: list[HardSample] = col.of(Kind.HARD)
    with_raw = [h for h in hard if h.raw is not None]
    assert len(with_raw) == n // 2  # raw_every = 2, from the signed manifest
    assert all(h.x.shape == (1, 0) for h in hard)  # the edge's thumbnail no longer travels
    frame = rawsample.decode(with_raw[0].raw.item(0), with_raw[0].raw.encoding)
    assert frame.shape == (64, 64, 3)  # the frame at capture resolution
    assert agent.counters.get("escalation.raw") == n // 2
    assert agent.counters.get("escalation.features_only") == n - n // 2


def test_window_feature_batches_carry_their_samples_when_uplink_is_all(make_agent, collect, topics, tmp_path):
    task = load_task("industrial")
    rel = release(topics, "industrial", 1, cloud=task.cloud_input())
    agent = make_agent(start=False, task="industrial",
                       source={"type": "replay", "task": "industrial", "split": "stream", "loop": False, "limit": 32},
                       capture={"start_after_model": True}, features={"batch_size": 16, "float16": True},
                       model=write_files(rel, tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    wait_until(lambda: sum(len(f.sample) for f in col.of(Kind.FEAT)) >= 32, what="feature rows of every sample")
    feats = col.of(Kind.FEAT)
    assert all(f.raw is not None and f.raw.data.shape == (len(f.sample), 1, 500) for f in feats)
    ds = task.dataset()
    first = feats[0]
    assert first.raw.data.dtype == np.float16
    # The rows are the replayed windows themselves, in order (float16 of the source's float32).
    np.testing.assert_allclose(first.raw.data[0].astype(np.float32), ds.raw[int(ds.stream[0])], atol=2e-3)
