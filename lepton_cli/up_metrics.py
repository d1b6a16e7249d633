"""`lepton up`'s /metrics: free ports for the bridge, the worker and the console, and a Prometheus scrape
config for them in the run directory (docs/INTEGRATIONS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.transport.broker import free_port

ROLES = ("bridge", "worker", "console")


def metrics_ports(enabled: bool) -> dict[str, int]:
    """A free loopback port per role (several runs on one host must not collide), or none when off."""
    return {role: free_port() for role in ROLES} if enabled else {}


def settings(ports: dict[str, int], role: str) -> dict[str, Any]:
    """The role's `metrics` table: on, on its port; off (the default) when metrics are off."""
    return {"metrics": {"enabled": True, "port": ports[role]}} if role in ports else {}


def write_scrape_config(run_dir: Path, ports: dict[str, int]) -> Path | None:
    """run_dir/prometheus.yml: `prometheus --config.file=...` scrapes this run (JSON, which YAML reads)."""
    if not ports:
        return None
    conf = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "scrape_configs": [{"job_name": f"lepton-{role}", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"role": role}}]} for role, port in ports.items()]}
    path = run_dir / "prometheus.yml"
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path


def metrics_line(ports: dict[str, int], conf: Path | None) -> str:
    if not ports:
        return ""
    where = ", ".join(f"{role} http://127.0.0.1:{port}/metrics" for role, port in ports.items())
    return f"\n  metrics: {where}\n  prometheus --config.file={conf}"
