"""The agent installed on an arm64 Raspberry Pi OS userland, under qemu-user: install-pi.sh
--bundle installs from a `lepton bundle` bundle, `systemd-analyze verify` checks the unit
there, the agent connects to a broker on this host, loads the model the worker published and
scores the same frames as an x86 agent, with the same results.

Emulation is slow (6-400x) and says nothing about a real Pi's speed: functional checks only.
The userland image comes from scripts/pi-userland.sh (cached). Needs RUN_CONTAINER_TESTS=1,
podman, qemu-user-static and binfmt (see tests/deploy/podman.py); skips with the reason
otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lepton_tasks import load_task
from shared.protocol.schemas import Prediction, Status, loads
from shared.protocol.topics import Filter, Topics
from shared.security.signing import generate_keypair
from shared.transport.broker import Broker
from shared.transport.mqtt import MqttClient, MqttSettings

from . import podman
from .conftest import DEPLOY_DIR, REPO

pytestmark = pytest.mark.slow

FRAMES = 24
LEFT_OUT = "paho_mqtt"  # the wheel the test's bundle lacks: install-pi.sh fetches it from the index
# A Raspberry Pi 4's /proc/cpuinfo. qemu-user passes the host's x86 one through, and
# onnxruntime's CPU detection crashes on it (segfault at import); QEMU_CPU makes the
# emulated CPU the one this file describes.
PI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    for i in range(4)) + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
INSIDE = r"""
set -euo pipefail
t0=$(date +%s)
timeout 900 /root/deploy/install-pi.sh --bundle /root/cam-pi 2>&1 | tee /out/install.log
echo $(( $(date +%s) - t0 )) > /out/install-seconds
/opt/lepton/bin/python -m pip list --format=json --disable-pip-version-check > /out/pip-list.json
/opt/lepton/bin/python -c 'import platform; print(platform.machine())' > /out/machine
if /opt/lepton/bin/python -c 'import torch' 2>/dev/null; then echo yes > /out/torch; else echo no > /out/torch; fi
timeout 300 systemd-analyze verify --man=no /etc/systemd/system/lepton-agent.service > /out/verify.log 2>&1 \
    && echo 0 > /out/verify-rc || echo $? > /out/verify-rc
touch /out/installed
# What the unit runs, as its user, in its working directory, with its environment file.
cd /var/lib/lepton
set -a; [ -f /etc/lepton/agent.env ] && . /etc/lepton/agent.env; set +a
exec timeout 900 runuser -u lepton -- env PYTHONUNBUFFERED=1 /opt/lepton/bin/lepton-agent --config /etc/lepton/agent.toml
"""


def agent_toml(device: str, port: int, frames: str, public_key: str, state_dir: str) -> str:
    return (f'device = "{device}"\ntask = "digits"\nstate_dir = "{state_dir}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
            f'[source]\ntype = "folder"\npath = "{frames}"\npattern = "*.png"\nloop = false\n'
            # every frame scored once the model is there: nothing dropped, nothing early
            '[capture]\nmode = "lossless"\nstart_after_model = true\n'
            f'[model]\npublic_key = "{public_key}"\n')


@dataclass
class Site:
    broker: Broker
    topics: Topics
    frames: Path
    bundle: Path
    pub: Path
    tmp: Path


@pytest.fixture(scope="module")
def pi_image(podman_ready: None, lepton_images: dict[str, str]) -> str:
    res = subprocess.run(["bash", str(REPO / "scripts" / "pi-userland.sh")], capture_output=True, text=True,
                         timeout=1500, env=podman.env())
    if res.returncode == 3:
        pytest.skip(f"no arm64 emulation here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A broker on this host with model v1 of `digits` published by the real worker, the
    frames both agents score, and the Pi's bundle (config, public key, `lepton bundle` wheels)."""
    tmp = tmp_path_factory.mktemp("pi")
    broker = Broker(tmp / "mosquitto").start()
    topics = Topics(f"lepton/v1/t{uuid.uuid4().hex[:10]}")
    priv, pub = tmp / "keys" / "signing.key", tmp / "keys" / "signing.pub"
    generate_keypair(priv, pub)
    worker = tmp / "worker.toml"
    worker.write_text(f'root = "{topics.root}"\ntasks = ["digits"]\nregistry = "{tmp / "registry"}"\n'
                      f'signing_key = "{priv}"\npublic_key = "{pub}"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    bin_dir = Path(sys.executable).parent
    res = subprocess.run([str(bin_dir / "lepton-worker"), "bootstrap", "--task", "digits", "--config", str(worker)],
                         capture_output=True, text=True, timeout=300, cwd=tmp)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]

    import cv2

    frames = tmp / "frames"
    frames.mkdir()
    ds = load_task("digits").dataset()
    for i in ds.holdout[:FRAMES]:
        assert cv2.imwrite(str(frames / f"digit-{int(i):04d}.png"), ds.raw[i])

    bundle = tmp / "cam-pi"
    bundle.mkdir()
    (bundle / "device.toml").write_text(
        agent_toml("pi-1", broker.port, "/srv/frames", "signing.pub", "/var/lib/lepton")
        .replace('device = "pi-1"', f'device = "pi-1"\nroot = "{topics.root}"'))
    (bundle / "signing.pub").write_bytes(pub.read_bytes())
    # An offline bundle for aarch64 (pip's cache on this host makes reruns cheap), less one
    # wheel: the Pi takes that one from the index and everything else from the bundle.
    res = subprocess.run([str(bin_dir / "lepton"), "bundle", str(bundle), "--wheelhouse", str(podman.BUILD / "wheelhouse"),
                          "--download", "aarch64"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    left_out = list((bundle / "wheels").glob(f"{LEFT_OUT}-*.whl"))
    assert len(left_out) == 1
    left_out[0].unlink()
    yield Site(broker, topics, frames, bundle, pub, tmp)
    broker.stop()


def collect_preds(settings: MqttSettings, topics: Topics, devices: list[str], n: int, timeout: float,
                  births: dict[str, list[str]]) -> dict[str, dict[str, Prediction]]:
    """Each device's edge predictions by frame, until every device has N; the states each
    device's status topic announced go to BIRTHS."""
    got: dict[str, dict[str, Prediction]] = {d: {} for d in devices}
    done = threading.Event()

    def on_status(msg) -> None:
        st = loads(msg.payload, Status)
        births.setdefault(st.device, []).append(st.state)

    def on_pred(msg) -> None:
        p = loads(msg.payload, Prediction)
        if p.source == "edge":
            got[p.device][p.ref] = p
        if all(len(v) >= n for v in got.values()):
            done.set()

    c = MqttClient(settings, client_id=f"t-{uuid.uuid4().hex[:8]}")
    for d in devices:
        c.subscribe(Filter(str(topics.pred(d, "cam"))), 1, on_pred)
        c.subscribe(Filter(str(topics.status(d))), 1, on_status)
    c.start()
    try:
        assert c.wait_connected(10)
        done.wait(timeout)
    finally:
        c.stop()
    return got


def test_agent_installed_on_arm64_serves_the_published_model_like_x86(pi_image: str, site: Site) -> None:
    out = site.tmp / "out"
    out.mkdir()
    cpuinfo = site.tmp / "cpuinfo"
    cpuinfo.write_text(PI4_CPUINFO)
    pip_cache = podman.BUILD / "pi" / "pip-cache"  # reused between runs on this machine
    pip_cache.mkdir(parents=True, exist_ok=True)
    name = f"lepton-pi-{uuid.uuid4().hex[:8]}"
    settings = MqttSettings(host="127.0.0.1", port=site.broker.port)
    results: dict[str, dict[str, Prediction]] = {}
    births: dict[str, list[str]] = {}
    collector = threading.Thread(target=lambda: results.update(
        collect_preds(settings, site.topics, ["pi-1", "x86-1"], FRAMES, 1200, births)), daemon=True)
    collector.start()
    time.sleep(1)

    pi = subprocess.Popen(
        ["podman", "run", "--rm", "--name", name, "--arch", "arm64", "--network", "host", "--init",
         "-e", "QEMU_CPU=cortex-a72", "-v", f"{cpuinfo}:/proc/cpuinfo:ro",
         "-v", f"{DEPLOY_DIR}:/root/deploy:ro", "-v", f"{site.bundle}:/root/cam-pi:ro",
         "-v", f"{site.frames}:/srv/frames:ro", "-v", f"{out}:/out", "-v", f"{pip_cache}:/root/.cache/pip",
         pi_image, "bash", "-c", INSIDE],
        stdout=open(site.tmp / "pi.log", "w"), stderr=subprocess.STDOUT, env=podman.env())  # noqa: SIM115
    x86_dir = site.tmp / "x86"
    x86_dir.mkdir()
    (x86_dir / "agent.toml").write_text(
        agent_toml("x86-1", site.broker.port, str(site.frames), str(site.pub), str(x86_dir / "state"))
        .replace('device = "x86-1"', f'device = "x86-1"\nroot = "{site.topics.root}"'))
    x86 = subprocess.Popen([str(Path(sys.executable).parent / "lepton-agent"), "--config", str(x86_dir / "agent.toml")],
                           stdout=open(x86_dir / "agent.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        collector.join(1300)
    finally:
        x86.terminate()
        podman.podman("stop", "-t", "30", name, check=False, timeout=90)
        for p in (x86, pi):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    log = (site.tmp / "pi.log").read_text()

    assert (out / "installed").exists(), log[-6000:]
    assert (out / "machine").read_text().strip() == "aarch64"
    assert (out / "torch").read_text().strip() == "no"
    install = (out / "install.log").read_text()
    lines = install.splitlines()
    assert "install-pi: the bundle lacks wheels for this machine: installing its" in install, install[-3000:]
    for ours in ("lepton_edge-", "onnxruntime-", "opencv_python_headless-", "numpy-"):
        assert any(f"Processing /root/cam-pi/wheels/{ours}" in ln for ln in lines), (ours, install[-3000:])
    from_index = [ln for ln in lines if ln.startswith("install-pi: from the package index: ")]
    # exactly the one wheel the bundle lacked: "paho-mqtt 2.2.0"
    assert len(from_index) == 1 and from_index[0].split("index: ", 1)[1].split(" ")[0] == LEFT_OUT.replace("_", "-") \
        and ", " not in from_index[0], from_index
    verify_rc, verify_log = (out / "verify-rc").read_text().strip(), (out / "verify.log").read_text()
    assert verify_rc == "0" and "lepton-agent.service" not in verify_log, verify_log
    assert births.get("pi-1", [])[:1] == ["online"], births  # its birth, before any prediction
    pi_preds, x86_preds = results.get("pi-1", {}), results.get("x86-1", {})
    assert len(pi_preds) == FRAMES, f"arm64 agent scored {len(pi_preds)}/{FRAMES} frames\n{log[-6000:]}"
    assert pi_preds.keys() == x86_preds.keys()
    for ref, p in pi_preds.items():
        q = x86_preds[ref]
        assert (p.label, p.model_version) == (q.label, q.model_version) == (p.label, 1), ref
        assert abs(p.confidence - q.confidence) < 1e-4, (ref, p.confidence, q.confidence)

    versions = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads((out / "pip-list.json").read_text())}
    record = {"install_seconds_emulated": int((out / "install-seconds").read_text()),
              "max_confidence_diff": max(abs(p.confidence - x86_preds[r].confidence) for r, p in pi_preds.items()),
              "wheels": {k: versions[k] for k in sorted(versions) if k not in ("pip", "setuptools")}}
    (podman.BUILD / "pi").mkdir(parents=True, exist_ok=True)
    (podman.BUILD / "pi" / "install.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
