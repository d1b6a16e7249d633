#!/usr/bin/env python
"""What a scrape of the bridge's /metrics costs, by fleet size (per-device series up to metrics.max_devices).

    .venv/bin/python bench/bench_metrics.py [--devices 100,2000,4000] [--max-devices 2000] [--scrapes 20]

A real mosquitto and a real bridge with metrics on; a publisher sends each simulated device's status and
one telemetry message (the bridge turns them into lepton_device_* series), then /metrics is fetched
--scrapes times over HTTP. Per fleet size: devices given series and left out, the response's bytes and
sample lines, and the scrape's wall time (median and worst), as a Prometheus scraping every 15 s would
see it. Prints a table and writes bench/results/bench_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results" / "bench_metrics.json"


def _telemetry(dev: str) -> bytes:
    from shared.protocol import schemas

    return schemas.dumps(schemas.Telemetry(device=dev, boot=1, ts=time.time(), fps=10.0, latency_ms_p50=1.0,
                                           latency_ms_p99=2.0, uplink_bytes=0, raw_bytes=0, outbox_depth=0,
                                           escalation_ratio=0.1, frames=1, dropped_frames=0, models={"digits": 3}))


def _status(dev: str) -> bytes:
    from shared.protocol import schemas

    return schemas.dumps(schemas.Status(device=dev, state="online", boot=1, ts=time.time()))


def one(port: int, devices: int, max_devices: int, scrapes: int) -> dict:
    from hub_bridge.bridge import HubBridge
    from hub_bridge.config import BridgeConfig
    from shared.protocol.topics import Topics
    from shared.transport.mqtt import MqttClient, MqttSettings

    root = f"bench{devices}/v1"
    t = Topics(root)
    cfg = BridgeConfig.model_validate({"root": root, "id": f"bench-{devices}", "mqtt": {"port": port},
                                       "metrics": {"enabled": True, "port": 0, "max_devices": max_devices}})
    bridge = HubBridge(cfg).start()
    pub = MqttClient(MqttSettings(port=port), client_id=f"bench-pub-{devices}")
    pub.start()
    try:
        assert bridge.wait_connected(10) and pub.wait_connected(10)
        time.sleep(0.5)  # subscriptions granted
        for i in range(devices):
            dev = f"dev-{i:05d}"
            pub.publish(t.status(dev), _status(dev), qos=1)
            pub.publish(t.telemetry(dev), _telemetry(dev), qos=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            board = bridge.devices
            if len(board.snapshot()) + board.left_out >= devices and len(bridge.devices_online) >= devices:
                break
            time.sleep(0.2)
        url = f"http://127.0.0.1:{bridge.metrics.port}/metrics"
        times, size, lines = [], 0, 0
        for _ in range(scrapes):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=30).read()
            times.append(time.perf_counter() - t0)
            size, lines = len(body), sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
        return {"devices": devices, "max_devices": max_devices, "with_series": len(bridge.devices.snapshot()),
                "left_out": bridge.devices.left_out, "bytes": size, "samples": lines,
                "scrape_ms_median": round(statistics.median(times) * 1e3, 2),
                "scrape_ms_max": round(max(times) * 1e3, 2), "scrapes": scrapes}
    finally:
        pub.stop()
        bridge.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="100,2000,4000", help="fleet sizes, comma-separated")
    p.add_argument("--max-devices", type=int, default=2000, help="the bridge's metrics.max_devices")
    p.add_argument("--scrapes", type=int, default=20, help="scrapes per fleet size")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    from shared.transport.broker import Broker

    broker = Broker(Path(tempfile.mkdtemp(prefix="bench-metrics-"))).start()
    rows = []
    try:
        for n in (int(x) for x in a.devices.split(",")):
            rows.append(one(broker.port, n, a.max_devices, a.scrapes))
    finally:
        broker.stop()
    print(f"{'devices':>8} {'series for':>10} {'left out':>8} {'bytes':>9} {'samples':>8} {'median ms':>10} "
          f"{'max ms':>8}")
    for r in rows:
        print(f"{r['devices']:>8} {r['with_series']:>10} {r['left_out']:>8} {r['bytes']:>9,} {r['samples']:>8,} "
              f"{r['scrape_ms_median']:>10} {r['scrape_ms_max']:>8}")
    out = {"bench": "bench_metrics", "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "loadavg_1m": round(os.getloadavg()[0], 2)},
           "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
