"""scripts/up.sh, the README's first command: the camera story by default, the user's choices otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _args(tmp_path: Path, *argv: str) -> list[str]:
    # The script as it is, with its two side effects (setup, exec) replaced by printing what it would run.
    text = (REPO / "scripts" / "up.sh").read_text()
    assert "bash scripts/ensure.sh" in text and 'exec .venv/bin/lepton up "$@"' in text
    text = text.replace("bash scripts/ensure.sh", ":").replace('exec .venv/bin/lepton up "$@"', 'printf "%s\\n" "$@"')
    script = tmp_path / "up.sh"
    script.write_text(text)
    out = subprocess.run(["bash", str(script), *argv], capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout.split()


def test_no_arguments_run_the_camera_with_a_person_at_the_queue_for_eight_minutes(tmp_path):
    a = _args(tmp_path)
    assert a[a.index("--task") + 1] == "camera" and a[a.index("--labeller") + 1] == "queue"
    assert a[a.index("--duration") + 1] == "480"


def test_what_the_user_names_is_kept(tmp_path):
    assert _args(tmp_path, "--task", "digits", "--duration", "5") == ["--task", "digits", "--duration", "5"]
    a = _args(tmp_path, "--duration=60", "--labeller", "random")
    assert "--duration=60" in a and a.count("--duration") == 0 and a[a.index("--labeller") + 1] == "random"
