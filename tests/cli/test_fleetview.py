import numpy as np

from lepton_cli.labeller import LabelPlan
from lepton_tasks import load_task
from lepton_tasks.refs import parse_ref
from lepton_views.fleetview import FleetStats, truth_for
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch
from shared.protocol.topics import Topics
from shared.protocol.wire import decode

T = Topics()
Y = load_task("digits").dataset().y


def pred(sample, label, idx, version=1, source="edge", escalated=False):
    return schemas.Prediction(device="cam-1", stream="front", task="digits", sample=sample, label=label,
                              confidence=0.9, source=source, escalated=escalated, model_version=version,
                              ref=f"digits:{idx}", ts=0.0)


def feed(stats, topic, msg):
    payload = msg.encode() if isinstance(msg, FeatureBatch) else schemas.dumps(msg)
    stats.feed(decode(T, str(topic), payload), len(payload))


def test_truth_for_refs():
    assert truth_for("digits:5") == int(Y[5])
    assert truth_for("digits:99999") is None and truth_for("nope") is None and truth_for("other:1") is None


def test_joint_and_edge_accuracy_per_version():
    # Prepare: sample 0 the edge got wrong and the cloud fixed; sample 1 both right.
    s = FleetStats()
    wrong = (int(Y[0]) + 1) % 10
    scores = np.zeros((2, 10), np.float32)
    scores[0, wrong] = 1
    scores[1, int(Y[1])] = 1
    fb = FeatureBatch("cam-1", "front", "digits", 1, 1, 2, np.array([10, 11]), np.zeros((2, 4), np.float32), scores,
                      np.zeros(2))
    # Execute: predictions before and after their features
    feed(s, T.pred("cam-1", "front"), pred(10, int(Y[0]), 0, version=2, source="cloud", escalated=True))
    feed(s, T.feat("cam-1", "front"), fb)
    feed(s, T.pred("cam-1", "front"), pred(11, int(Y[1]), 1, version=2))
    out = s.summary()
    # Assert
    assert out["accuracy_per_version_joint"]["digits"]["v2"] == {"accuracy": 1.0, "samples": 2}
    assert out["accuracy_per_version_edge_only"]["digits"]["v2"] == {"accuracy": 0.5, "samples": 2}
    assert out["escalation_ratio"] == 0.5 and out["cloud_answers"] == 1


def test_label_plan_fraction_and_delay():
    plan = LabelPlan(fraction=0.5, delay=2.0, seed=1)
    offered = sum(plan.offer(pred(i, 0, i), now=100.0) for i in range(400))
    assert 150 < offered < 250
    assert plan.due(101.9) == []
    due = plan.due(102.0)
    assert len(due) == offered
    assert all(d.label == int(Y[d.sample]) for d in due)
    assert not LabelPlan(1.0, 0).offer(pred(1, 0, 1).model_copy(update={"ref": "cam:frame-7"}), 0)
    assert parse_ref("digits:7") == ("digits", 7) and parse_ref("x") is None


def test_qos1_sequence_gaps_and_duplicates_are_reported():
    s = FleetStats()
    for seq in (1, 2, 3, 5, 3):  # 4 missing, 3 repeated
        ev = schemas.Event(device="cam-1", stream="front", task="digits", sample=seq, label=0, name="0",
                           confidence=0.9, boot=7, seq=seq, ts=0.0)
        feed(s, T.event("cam-1", "front"), ev)
    out = s.summary()
    assert out["qos1_seq_gaps"] == {"cam-1/7": 1}
    assert out["qos1_duplicates"] == 1


def test_a_task_whose_data_cannot_load_here_has_no_truth_and_says_so_once(monkeypatch, caplog):
    # The compose console has no OpenCV for the digits frames: one warning, no truth, no failed handlers.
    import lepton_views.fleetview as fv

    calls = []

    class NoData:
        def dataset(self):
            calls.append(1)
            raise ImportError("No module named 'cv2'")

    monkeypatch.setattr(fv, "load_task", lambda name: NoData())
    monkeypatch.setattr(fv, "_NO_TRUTH", set())
    with caplog.at_level("WARNING", logger="lepton_views.fleetview"):
        assert truth_for("nodata:3") is None and truth_for("nodata:4") is None
    assert len(calls) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "no ground truth for task nodata here (field accuracy not shown): ImportError: No module named 'cv2'"]
