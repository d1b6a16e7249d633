"""docs/TASKS.md lists every preprocessing op of shared/preprocess.py, with its parameters and defaults."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from shared.config import tomllib
from shared.preprocess import STEPS

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
