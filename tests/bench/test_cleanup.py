"""A bench stopped by SIGTERM (as `timeout` stops it) leaves no mosquitto and no child behind
(bench/cleanup.py), and every bench script installs that guard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A bench in miniature: the guard, a mosquitto (own session, as shared.transport.broker starts it), a
# multiprocessing child, and a grandchild whose parent dies first, as `lepton up` under
# bench_learning would be killed by subprocess.run while unwinding.
BENCH_LIKE = r"""
import multiprocessing as mp, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/bench")
import cleanup
from shared.transport.broker import Broker

def sleeper():
    time.sleep(600)

if __name__ == "__main__":
    cleanup.guard()
    tmp = Path(tempfile.mkdtemp())
    broker = Broker(tmp / "mq").start()
    child = mp.get_context("spawn").Process(target=sleeper, daemon=True)
    child.start()
    middle = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        "print(p.pid, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    grandchild = int(middle.stdout.readline())
    print(broker.proc.pid, child.pid, middle.pid, grandchild, flush=True)
    try:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(600)"])  # killed by run() on the way out
    finally:
        middle.kill()  # the middle dies first: its child is orphaned unless it was noted
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_bench_leaves_no_process_behind(tmp_path, sig):
    script = tmp_path / "bench_like.py"
    script.write_text(BENCH_LIKE)
    proc = subprocess.Popen([sys.executable, str(script), str(REPO)], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    pids: list[int] = []
    try:
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 4 and all(alive(p) for p in pids), pids
        assert Path(f"/proc/{pids[0]}/exe").resolve().name == "mosquitto"
        time.sleep(0.3)
        proc.send_signal(sig)
        assert proc.wait(30) == 128 + sig
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in pids if alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids:  # only what this test started, by pid
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_every_bench_script_installs_the_guard():
    scripts = [p for p in (REPO / "bench").glob("*.py") if "def main(" in p.read_text()]
    assert {p.name for p in scripts} >= {"bench_bridge.py", "bench_edge.py", "bench_faults.py", "bench_learning.py",
                                         "bench_worker.py", "profile_bridge.py"}
    for p in scripts:
        text = p.read_text()
        main = text[text.index("def main("):]
        assert re.search(r"^\s+cleanup\.guard\(\)", main, re.M), f"{p.name}: main() does not call cleanup.guard()"
