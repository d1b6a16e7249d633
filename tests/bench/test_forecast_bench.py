"""The forecast bench's table shows every method it ran, and docs/TASKS.md shows the recorded table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_forecast as b  # noqa: E402

RESULT = ROOT / "bench" / "results" / "bench_forecast.json"


def _record() -> dict:
    m = [{"method": f"m{i}", "mase": 0.5 + i / 10, "coverage": 0.8, "width_mase": 2.0, "fit_s": None if i else 3.0,
          "coverage_rolling": 0.79, "width_rolling_mase": 1.5}
         for i in range(3)]
    return {"settings": {"horizon": 24, "lookback": 168}, "split": "S", "metric": "M", "issue_hour": 23,
            "samples": {"test": 1234}, "naive_every_hour": 0.86, "onnx_parity": 1e-7, "onnx_bytes": 1000,
            "methods": m, "new_sensor": {"sensors": ["x"], "starts": ["2024-02-05"], "history_weeks": 4,
                                         "eval_weeks": 4, "methods": [{"method": "n0", "mase": 0.9}]}}


def test_table_has_a_row_per_method():
    text = b.table(_record())
    assert "| m0 | 0.500 | 0.800 | 2.00 | 0.790 | 1.50 | 3 |" in text
    assert "| m2 | 0.700 | 0.800 | 2.00 | 0.790 | 1.50 |  |" in text
    assert "| n0 | 0.900 |" in text and "Split: S" in text and "1,234 test forecasts" in text


def test_docs_carry_the_recorded_table():
    rec = json.loads(RESULT.read_text())
    doc = (ROOT / "docs" / "TASKS.md").read_text()
    section = doc[doc.index("## Forecast tasks"):]
    for line in b.table(rec).splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            assert line in section, line
