"""The worker's /metrics, and a real Prometheus scraping a running bridge and worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cloud_worker.service import WorkerService
from shared.transport.broker import free_port
from tests.hub.helpers import bridge_config, scrape, start_bridge, wait_until

from .conftest import make_config
from .helpers import Collector, hard_sample

pytestmark = pytest.mark.broker
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
METRICS_ON = {"enabled": True, "port": 0}


@pytest.fixture
def services():
    """Workers and bridges started by a test, stopped at teardown; none may have recorded an error."""
    made: list = []
    yield made
    for s in made:
        s.stop()
    assert all(not s.errors for s in made), [s.errors for s in made]


def _worker(services, tmp_path, keydir, broker, topics) -> WorkerService:
    w = WorkerService(make_config(tmp_path, keydir, broker, topics, worker_id="w-metrics", learn=False,
                                  metrics=METRICS_ON))
    services.append(w)
    return w.start()


def _escalate(client, topics, first: int, n: int, direct: bool) -> None:
    for i in range(first, first + n):
        hs = hard_sample("digits", np.array([i]), device="cam-1", seq=i)
        topic = topics.hub_infer("digits") if direct else topics.hard("cam-1", "main")
        client.publish(topic, hs.encode(), qos=1, response_topic=topics.reply("cam-1"),
                       correlation_data=f"c-{i}".encode())


def test_worker_metrics_name_answers_latency_models_and_gate(tmp_path, keydir, broker, topics, mqtt_factory,
                                                             registry_copy, services):
    registry_copy()
    w = _worker(services, tmp_path, keydir, broker, topics)
    dev = mqtt_factory()
    replies = Collector()
    dev.subscribe_and_wait(topics.reply("cam-1"), 1, replies)
    _escalate(dev, topics, 0, 6, direct=True)
    assert replies.wait_for(lambda items: len(items) >= 6, 30)
    m = wait_until(lambda: (s := scrape(w.metrics.port))["lepton_worker_escalations_answered_total"][()] == 6 and s,
                   10)
    assert m, scrape(w.metrics.port)
    assert m["lepton_worker_answer_latency_seconds_count"][()] == 6
    assert 0 < m["lepton_worker_answer_latency_seconds_sum"][()] < 60
    assert m["lepton_worker_deployed_version"] == {(("task", "digits"),): float(w.learners["digits"].version)}
    assert 0.5 < m["lepton_worker_edge_holdout_accuracy"][(("task", "digits"),)] <= 1
    assert 0.5 < m["lepton_worker_cloud_holdout_accuracy"][(("task", "digits"),)] <= 1
    assert set(m["lepton_worker_gate_decisions_total"]) == {(("outcome", "published"),), (("outcome", "rejected"),)}
    assert set(m["lepton_worker_labelled_rows_learned_total"]) == {(("kind", "features"),), (("kind", "raw"),)}
    assert set(m["lepton_worker_queue_depth"]) == {(("queue", "infer"),), (("queue", "learn"),)}
    assert "lepton_worker_rollout_stage" not in m  # no staged rollout configured: no series


def _prometheus_config(path: Path, targets: list[int]) -> None:
    # JSON is YAML: no YAML writer needed
    path.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "lepton", "static_configs": [
            {"targets": [f"127.0.0.1:{p}" for p in targets]}]}]}))


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(port: int, promql: str) -> float | None:
    res = _query(port, promql)
    return float(res[0]["value"][1]) if res else None


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (Debian: apt-get install prometheus)")
def test_a_real_prometheus_sees_delivered_escalations_rise_and_the_deployed_version(
        tmp_path, keydir, broker, topics, mqtt_factory, registry_copy, services):
    registry_copy()
    w = _worker(services, tmp_path, keydir, broker, topics)
    dev = mqtt_factory()
    b = start_bridge(bridge_config(broker, topics, metrics=METRICS_ON), dev, topics)
    services.append(b)
    replies = Collector()
    dev.subscribe_and_wait(topics.reply("cam-1"), 1, replies)
    conf, port = tmp_path / "prometheus.yml", free_port()
    _prometheus_config(conf, [b.metrics.port, w.metrics.port])
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        delivered = 'lepton_bridge_messages_delivered_total{class="escalation"}'
        _escalate(dev, topics, 0, 4, direct=False)
        assert replies.wait_for(lambda items: len(items) >= 4, 30)

        def seen(v: float) -> bool:
            try:
                return _value(port, delivered) == v
            except OSError:  # not listening yet
                return False

        assert wait_until(lambda: seen(4.0), 60, 0.25), (tmp_path / "prometheus.log").read_text()[-2000:]
        _escalate(dev, topics, 4, 6, direct=False)
        assert replies.wait_for(lambda items: len(items) >= 10, 30)
        assert wait_until(lambda: seen(10.0), 30, 0.25), _query(port, delivered)
        # the same rise, as Prometheus computes it from the stored samples
        assert _value(port, f"max_over_time({delivered}[5m]) - min_over_time({delivered}[5m])") == 6.0
        version = _value(port, 'lepton_worker_deployed_version{task="digits"}')
        assert version == float(w.learners["digits"].version) >= 1
        assert wait_until(lambda: _value(port, "lepton_worker_escalations_answered_total") == 10.0, 10)
        up = _query(port, "up")
        assert sorted(float(r["value"][1]) for r in up) == [1.0, 1.0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
