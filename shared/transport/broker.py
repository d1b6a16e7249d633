"""Run the system mosquitto with the project's config: for tests, `lepton up` and benchmarks.

The config files in mosquitto/ are the source of truth; this module only rewrites the
listener port and the persistence directory so many brokers can run side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO_MOSQUITTO = Path(__file__).resolve().parents[2] / "mosquitto"


class BrokerUnavailable(RuntimeError):
    """mosquitto is missing or would not start; the message says what to do."""


INSTALL_HINT = "run `sudo apt-get install -y mosquitto mosquitto-clients`"


def mosquitto_binary() -> str:
    """The broker binary: $LEPTON_MOSQUITTO if set, else mosquitto on PATH or in sbin."""
    override = os.environ.get("LEPTON_MOSQUITTO")
    if override is not None:
        if not os.access(override, os.X_OK):
            raise BrokerUnavailable(f"mosquitto is not installed at LEPTON_MOSQUITTO={override}: {INSTALL_HINT}")
        return override
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if not found:
        raise BrokerUnavailable(f"mosquitto is not installed: {INSTALL_HINT}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def render_config(template: Path, port: int, data_dir: Path, host: str = "127.0.0.1",
                  extra: str = "") -> str:
    text = Path(template).read_text()
    text, n = re.subn(r"(?m)^listener\s+\d+(\s+\S+)?\s*$", f"listener {port} {host}", text, count=1)
    if n != 1:
        raise ValueError(f"{template} has no plain `listener PORT HOST` line to rewrite")
    text = re.sub(r"(?m)^persistence_location\s+.*$", f"persistence_location {data_dir}/", text)
    return text + ("\n" + extra if extra else "")


class Broker:
    """A mosquitto process on a loopback port. ``start()`` waits until it accepts connections."""

    def __init__(self, workdir: Path, *, port: int | None = None, config: Path | None = None,
                 host: str = "127.0.0.1", extra: str = "") -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.host = host
        self.config = config or REPO_MOSQUITTO / "test.conf"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> Broker:
        binary = mosquitto_binary()
        if self.port is None:
            self.port = free_port(self.host)
        elif port_in_use(self.port, self.host):
            raise BrokerUnavailable(f"port {self.port} is busy: pick another with --port or stop what uses it")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        extra = self.extra
        if os.geteuid() == 0 and not re.search(r"(?m)^user\s", Path(self.config).read_text() + extra):
            # Started as root, mosquitto drops to user `mosquitto`, which cannot write a private
            # temp dir: persistence then fails and durable sessions vanish across restarts.
            extra = (extra + "\n" if extra else "") + "user root"
        conf.write_text(render_config(self.config, self.port, data, self.host, extra))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerUnavailable(f"mosquitto exited with {self.proc.returncode}: {self.tail_log()}")
            if port_in_use(self.port, self.host):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not accept connections on {self.port} within {timeout}s")

    def tail_log(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout: float = 10.0) -> Broker:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
