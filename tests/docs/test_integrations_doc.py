"""docs/INTEGRATIONS.md names only metrics a collector serves (the endpoint tests check the other way:
every family a scrape returns is in the doc with its type, via tests/hub/helpers.py's scrape)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = "".join((REPO / p).read_text() for p in ("hub_bridge/metrics.py", "cloud_worker/metrics.py",
                                                     "lepton_console/metrics.py"))


def test_every_documented_metric_is_served():
    doc = (REPO / "docs" / "INTEGRATIONS.md").read_text()
    rows = re.findall(r"^\| `(lepton_[a-z_]+)` \| (counter|gauge|histogram) \|", doc, re.M)
    assert len(rows) >= 30
    for name, kind in rows:
        base = name.removesuffix("_total") if kind == "counter" else name
        per_device = base.removeprefix("lepton_device_")
        assert f'"{base}"' in SOURCES or (base.startswith("lepton_device_") and f'("{per_device}", ' in SOURCES), name
