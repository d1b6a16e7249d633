"""docker-compose.monitoring.yml and docker/prometheus/: Prometheus scrapes what the stack serves, and its
alert rules load (promtool) and use metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import COMPOSE_FILE, REPO, read_toml

MONITORING = REPO / "docker-compose.monitoring.yml"
PROM_DIR = REPO / "docker" / "prometheus"
PROMTOOL = shutil.which("promtool")


def _yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the compose files: pip install pyyaml")
    return yaml.safe_load(path.read_text())


def test_prometheus_scrapes_each_role_where_its_config_serves_metrics() -> None:
    conf = _yaml(PROM_DIR / "prometheus.yml")
    targets = {t for job in conf["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    served = set()
    for role in ("bridge", "worker", "console"):
        m = read_toml(REPO / "docker" / "config" / f"{role}.toml")["metrics"]
        assert m["enabled"] is True and m["host"] == "0.0.0.0"  # the compose network, not the container's lo
        served.add(f"{role}:{m['port']}")
    assert targets == served


def test_the_prometheus_service_mounts_its_files_and_publishes_on_loopback_only() -> None:
    svc = _yaml(MONITORING)["services"]["prometheus"]
    for v in svc["volumes"]:
        src = v.split(":")[0]
        if src.startswith("./"):
            assert (REPO / src).is_file(), src
    assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
    assert set(svc["depends_on"]) <= set(_yaml(COMPOSE_FILE)["services"])


def test_compose_accepts_the_stack_with_the_monitoring_file() -> None:
    cli = shutil.which("docker-compose")
    if cli is None:
        pytest.skip("docker-compose is not installed (CI: apt-get install -y docker-compose)")
    out = subprocess.run([cli, "-f", str(COMPOSE_FILE), "-f", str(MONITORING), "config", "--services"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "prometheus" in out.stdout.split() and "bridge" in out.stdout.split()


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool (Debian: apt-get install prometheus)")
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    rules = subprocess.run([PROMTOOL, "check", "rules", str(PROM_DIR / "alerts.yml")], capture_output=True,
                           text=True, timeout=60)
    assert rules.returncode == 0 and "3 rules found" in rules.stdout, rules.stdout + rules.stderr
    # the config names the rules by their path inside the container
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    conf = tmp_path / "prometheus.yml"
    conf.write_text((PROM_DIR / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml",
                                                                      str(tmp_path / "alerts.yml")))
    check = subprocess.run([PROMTOOL, "check", "config", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_alerts_use_only_documented_metrics() -> None:
    doc = (REPO / "docs" / "INTEGRATIONS.md").read_text()
    names = set(re.findall(r"\blepton_[a-z_]+", (PROM_DIR / "alerts.yml").read_text()))
    assert names and all(f"`{n}`" in doc for n in names), names
