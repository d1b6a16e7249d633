"""The bridge's /metrics against a real broker: parsed with prometheus-client's own parser."""

from __future__ import annotations

import pytest

from shared.protocol import schemas

from .helpers import bridge_config, check_conventions, hard, scrape, start_bridge, status, wait_until

pytestmark = pytest.mark.broker


def _telemetry(dev: str, version: int) -> bytes:
    return schemas.dumps(schemas.Telemetry(device=dev, boot=1, ts=1.0, fps=12.5, latency_ms_p50=1, latency_ms_p99=2,
                                           uplink_bytes=0, raw_bytes=0, outbox_depth=3, escalation_ratio=0.25,
                                           frames=1, dropped_frames=0, models={"digits": version}))


def test_bridge_metrics_count_by_class_and_show_devices_up_to_the_bound(broker, topics, mqtt_factory, bridges):
    pub = mqtt_factory()
    # start_bridge's probe device takes one place: two more get series, the rest are left out
    cfg = bridge_config(broker, topics, metrics={"enabled": True, "port": 0, "max_devices": 3})
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    worker = mqtt_factory()
    worker.subscribe_and_wait(topics.hub_infers(), 1, lambda m: None)
    for i in range(5):
        pub.publish(topics.hard("cam-1", "front"), hard("cam-1", i), qos=1, response_topic=topics.reply("cam-1"),
                    correlation_data=b"c")
    for n, dev in enumerate(("cam-1", "cam-2", "cam-3", "cam-4")):
        pub.publish(topics.status(dev), status(dev), qos=1)
        pub.publish(topics.telemetry(dev), _telemetry(dev, 7 + n), qos=1)
    port = b.metrics.port

    def settled():
        m = scrape(port)
        return m if (m["lepton_bridge_messages_delivered_total"].get((("class", "escalation"),)) == 5
                     and m.get("lepton_bridge_device_series_left_out_total", {}).get(()) == 2
                     and len(m.get("lepton_device_model_version", {})) == 2
                     # births come on the bridge's priority connection, telemetry on its bulk one: either
                     # may be counted first, so wait for both
                     and m.get("lepton_bridge_devices_online", {}).get((), 0) >= 4) else None

    m = wait_until(settled, 10)
    assert m, scrape(port)
    assert m["lepton_bridge_messages_in_total"][(("class", "escalation"),)] == 5
    hist = m["lepton_bridge_dispatch_latency_seconds_count"]
    assert hist[(("class", "escalation"),)] == 5
    assert m["lepton_bridge_dispatch_latency_seconds_bucket"][(("class", "escalation"), ("le", "+Inf"))] == 5
    assert m["lepton_device_model_version"] == {(("device", "cam-1"), ("task", "digits")): 7.0,
                                                (("device", "cam-2"), ("task", "digits")): 8.0}
    assert m["lepton_device_fps"][(("device", "cam-1"),)] == 12.5
    assert m["lepton_device_escalation_ratio"][(("device", "cam-2"),)] == 0.25
    assert m["lepton_device_outbox_depth"][(("device", "cam-1"),)] == 3
    assert m["lepton_device_online"][(("device", "cam-1"),)] == 1
    assert ("cam-3",) not in {tuple(v for _, v in k) for k in m["lepton_device_fps"]}
    assert m["lepton_bridge_devices_online"][()] >= 4  # every device is counted, series or not
    for cls in ("event", "escalation", "label", "feature", "telemetry"):
        for reason in ("overflow", "expired", "duplicate"):
            assert (("class", cls), ("reason", reason)) in m["lepton_bridge_messages_shed_total"]
        assert (("class", cls),) in m["lepton_bridge_queue_depth"]
    assert m["lepton_bridge_custody_lag_seconds"][()] >= 0


def test_metrics_are_off_by_default_and_a_taken_port_fails_the_start(broker, topics, mqtt_factory, bridges):
    pub = mqtt_factory()
    b = start_bridge(bridge_config(broker, topics), pub, topics)
    bridges.append(b)
    assert b.metrics is None
    on = start_bridge(bridge_config(broker, topics, metrics={"enabled": True, "port": 0}), pub, topics)
    bridges.append(on)
    from hub_bridge.bridge import HubBridge

    clash = HubBridge(bridge_config(broker, topics, metrics={"enabled": True, "port": on.metrics.port}))
    with pytest.raises(OSError):
        clash.start()
    clash.stop()


@pytest.mark.parametrize("text", [
    "# TYPE bridge_in counter\nbridge_in_total 1\n",  # no lepton_ prefix
    '# TYPE lepton_x gauge\nlepton_x{sample="17"} 1\n',  # a label of unbounded cardinality
    '# TYPE lepton_x gauge\nlepton_x{device="cam-1"} 1\n',  # device outside lepton_device_*
    "# TYPE lepton_latency_ms histogram\nlepton_latency_ms_count 1\nlepton_latency_ms_sum 1\n"
    'lepton_latency_ms_bucket{le="+Inf"} 1\n',  # not in seconds
])
def test_the_naming_check_refuses_what_the_conventions_forbid(text):
    with pytest.raises(AssertionError):
        check_conventions(text, documented=False)


def test_the_device_board_is_bounded_counts_each_left_out_device_once_and_frees_places():
    from hub_bridge.device_board import MAX_TASKS, DeviceBoard

    board = DeviceBoard(max_devices=2)
    for dev in ("a", "b", "c", "c", "d"):
        board.telemetry(dev, 1.0, 0.1, 0, {f"task{i:02d}": i for i in range(MAX_TASKS + 5)})
    assert sorted(board.snapshot()) == ["a", "b"] and board.left_out == 2  # c twice, counted once
    assert len(board.snapshot()["a"].models) == MAX_TASKS
    board.forget("a")  # its retained status cleared: decommissioned
    board.status("c", True)
    assert sorted(board.snapshot()) == ["b", "c"] and board.snapshot()["c"].online


def test_a_taken_metrics_port_stops_the_bridge_command_with_the_address(broker, tmp_path):
    import socket
    import subprocess
    import sys

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    conf = tmp_path / "bridge.toml"
    conf.write_text(f"[mqtt]\nport = {broker.port}\n[metrics]\nenabled = true\nport = {port}\n")
    try:
        out = subprocess.run([sys.executable, "-m", "hub_bridge", "--config", str(conf), "--duration", "5"],
                             capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    assert out.returncode == 1, out.stderr
    assert f"metrics endpoint 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
