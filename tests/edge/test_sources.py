"""Sources and the capture queue: folder, CSV sensor windows, replay refs, drop-oldest counting, no_model."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from edge_agent import config as C
from edge_agent.capture import EOF_MARK, FrameQueue
from edge_agent.sources import folder_source, open_source, read_sensor_csv, replay_source
from lepton_tasks import load_task
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until
from tests.edge.models import release, write_files


def test_folder_source_reads_images_in_name_order_and_skips_junk(tmp_path):
    ds = load_task("digits").dataset()
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), ds.raw[i])
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(folder_source(C.FolderSource(type="folder", path=tmp_path), threading.Event()))
    assert [s.ref for s in got] == ["img0.png", "img1.png", "img2.png"]
    assert np.array_equal(got[1].raw, ds.raw[1])


def test_replay_refs_are_task_and_dataset_index():
    ds = load_task("digits").dataset()
    cfg = C.ReplaySource(type="replay", split="holdout", loop=False, limit=5)
    got = list(replay_source(cfg, "digits", threading.Event()))
    assert [s.ref for s in got] == [f"digits:{int(i)}" for i in ds.holdout[:5]]


def test_csv_windows_slide_over_rows(tmp_path):
    rows = np.arange(30, dtype=np.float32).reshape(10, 3)
    path = tmp_path / "imu.csv"
    path.write_text("ax,ay,az\n" + "\n".join(",".join(str(v) for v in r) for r in rows))
    assert read_sensor_csv(path, None).shape == (10, 3)
    cfg = C.CsvSensorSource(type="csv", path=path, window=4, hop=3, columns=[0, 2])
    got = list(open_source(cfg, "health", threading.Event()))
    assert [s.ref for s in got] == ["imu.csv@0", "imu.csv@3", "imu.csv@6"]
    assert got[1].raw.shape == (2, 4) and got[1].raw[1].tolist() == [11.0, 14.0, 17.0, 20.0]


def test_drop_oldest_queue_counts_drops_and_lossless_blocks():
    stop = threading.Event()
    q = FrameQueue(2, lossless=False, stop=stop)
    for i in range(5):
        q.put(i)
    q.put_eof()
    assert q.dropped == 4 and q.get(0.1) == 4 and q.get(0.1) is EOF_MARK
    lq = FrameQueue(1, lossless=True, stop=stop)
    lq.put(1)
    t = threading.Thread(target=lq.put, args=(2,))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # blocked, not dropped
    assert lq.get(0.1) == 1
    t.join(5)
    assert lq.get(0.1) == 2 and lq.dropped == 0


def test_frames_before_any_model_are_counted_and_publish_nothing(make_agent, collect, topics):
    agent = make_agent(start=False, source={"type": "replay", "loop": False, "limit": 30})
    col = collect(topics, agent.cfg.device)
    agent.start()
    wait_until(agent.source_done.is_set, what="replay end")
    assert agent.counters.get("frames.no_model") == 30 and col.count(Kind.PRED) == 0


def test_window_task_end_to_end_on_packaged_ecg_heartbeats(make_agent, collect, topics, tmp_path):
    n = 300
    agent = make_agent(start=False, task="health", source={"type": "replay", "split": "stream", "loop": False,
                                                           "limit": n},
                       capture={"start_after_model": True},
                       model=write_files(release(topics, "health", 1), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    preds = wait_until(lambda: (p := col.of(Kind.PRED)) and len(p) == n and p, what="heartbeat predictions")
    ds = load_task("health").dataset()
    truth = np.array([ds.y[int(p.ref.split(":")[1])] for p in preds])
    acc = np.mean([p.label for p in preds] == truth)
    assert acc > 0.75, acc  # 58% of beats are normal: better than always saying "normal"
    assert agent.counters.get("frames.bad_input") == 0
    # Abnormal beats raise events, by the classes the manifest names (the agent has no task table)
    events = col.of(Kind.EVENT)
    assert events and {e.name for e in events} <= set(load_task("health").alert_classes)


def test_frames_the_pipeline_cannot_take_are_counted_not_fatal(make_agent, collect, topics, tmp_path):
    rows = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    rows[::10, 0] = np.nan  # a sensor glitch in every window: preprocessing refuses NaN
    path = tmp_path / "x.csv"
    path.write_text("\n".join(",".join(str(v) for v in r) for r in rows))
    agent = make_agent(source={"type": "csv", "path": str(path), "window": 10, "hop": 10},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"),
                       capture={"start_after_model": True})
    wait_until(agent.source_done.is_set, what="csv end")
    assert agent.counters.get("frames.bad_input") == 6 and not agent.errors
