"""docs/TASKS.md lists every preprocessing op of shared/model/preprocess.py, with its parameters and defaults."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from shared.model.preprocess import STEPS
from shared.process.config import tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "TASKS.md"


def documented_ops() -> dict[str, str]:
    """op -> its parameters cell, from the table under '### Preprocessing steps'."""
    text = DOC.read_text()
    section = text.split("### Preprocessing steps", 1)[1].split("\n#", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9_]+)` \| ([^|]*) \|", section, re.M)}


def test_every_op_is_documented_and_no_other():
    assert set(documented_ops()) == set(STEPS)


def test_each_op_s_parameters_and_defaults_are_the_code_s():
    for op, cell in documented_ops().items():
        params = list(inspect.signature(STEPS[op]).parameters.values())[1:]  # the first is the sample
        doc = {m.group(1): (m.group(2), cell[m.end():].lstrip().startswith("(required"))
               for m in re.finditer(r"`([a-z_]+)(?: = ([^`]*))?`", cell)}
        assert set(doc) == {p.name for p in params}, op
        for p in params:
            value, required = doc[p.name]
            if p.default is inspect.Parameter.empty:
                assert required, f"{op}.{p.name} is required in the code"
            else:
                assert not required and tomllib.loads(f"v = {value}")["v"] == p.default, f"{op}.{p.name}"


def test_the_raw_sample_options_table_is_the_recorded_bench():
    """Each row of the 'ways of moving samples' table quotes both seeds of bench_raw_options.json."""
    import json

    rec = json.loads((DOC.parents[1] / "bench" / "results" / "bench_raw_options.json").read_text())
    names = {"edge alone, no cloud": "edge alone (no cloud)", "features only": "features only (no sample)",
             "every escalation": "every escalation", "one in 2": "one in 2", "one in 3": "one in 3",
             "on request, features below 0.9": "on request (features below 0.9)",
             "on request, features below 0.95": "on request (features below 0.95)"}
    text = DOC.read_text()
    section = text[text.index("| option (seed 0 / seed 1)"):]
    rows = re.findall(r"^\| \**([a-z0-9., ]+?)\** \| \**([0-9.]+) / ([0-9.]+)\** \| ([0-9,]+) / ([0-9,]+) \|",
                      section, re.M)
    assert len(rows) == len(names), rows
    by_seed = [{o["option"]: o for o in r["options"]} for r in rec["runs"]]
    for name, a0, a1, b0, b1 in rows:
        recorded = [(round(by[names[name]]["escalated_acc"], 3), by[names[name]]["bytes_per_escalation"]) for by in by_seed]
        assert recorded == [(float(a0), int(b0.replace(",", ""))), (float(a1), int(b1.replace(",", "")))], name


def test_the_drift_table_is_the_recorded_bench():
    """Each figure of the 'Drift without labels' table is bench_drift.json's, row by row, seed by seed
    ("—": a row that seed's run did not have)."""
    import json

    rec = json.loads((DOC.parents[1] / "bench" / "results" / "bench_drift.json").read_text())
    text = DOC.read_text()
    section = text.split("### Drift without labels", 1)[1].split("\n#", 1)[0]
    header = re.search(r"^\| method \(seeds? ([0-9 /]+)\) \|", section, re.M)
    seeds = [int(s) for s in header.group(1).split(" / ")]
    rows = re.findall(r"^\| [^|]+ \| \**([0-9.— /]+?)\** \| \**([0-9.— /]+?)\** \| [^|]+ \|$", section, re.M)
    by_seed = {r["seed"]: r["rows"] for r in rec["runs"]}
    for k, seed in enumerate(seeds):
        doc = [(n.split(" / ")[k], d.split(" / ")[k]) for n, d in rows]
        doc = [(float(n), float(d)) for n, d in doc if n != "—"]
        assert doc == [(round(o["night_acc"], 3), round(o["day_acc"], 3)) for o in by_seed[seed]], seed
