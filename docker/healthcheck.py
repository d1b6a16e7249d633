"""Container health check for the Lepton roles, judged by what the service announced on MQTT.

    python healthcheck.py agent  [--device DEV]    # retained edge/DEV/status says online
    python healthcheck.py bridge                   # retained hub/status says online
    python healthcheck.py worker [--task digits] [--public-key FILE]
                                                    # a retained, valid (signed) model manifest
    python healthcheck.py console [--url URL]      # the web console answers its login page

The agent and bridge publish a retained "online" status after connecting and the broker
replaces it with "offline" (their LWT) when the connection dies, so a retained "online" means
the service is connected right now. The worker is healthy once the model it serves exists:
that is what the agents wait for. Exit status 0 = healthy, 1 = unhealthy (reason on stdout).

Broker settings come from the ``[mqtt]`` table of ``--config`` (if given) overridden by the
same ``LEPTON_MQTT__*`` environment variables the services read; ``--device`` defaults to
``LEPTON_DEVICE``. Only the shared protocol package is used, so every image can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.process.config import ConfigError, load_config
from shared.protocol.schemas import Manifest, SchemaError, ServiceStatus, Status, loads
from shared.protocol.topics import DEFAULT_ROOT, Filter, TopicError, Topics
from shared.security.signing import SignatureError, load_public, verify_manifest_obj
from shared.transport.mqtt import MqttClient, MqttSettings


class _MqttOnly(BaseModel):
    # The service configs have many other keys; this check only needs the broker address.
    model_config = ConfigDict(extra="ignore")

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker the service talks to.")


def mqtt_settings(config: str | None, environ: Mapping[str, str]) -> MqttSettings:
    env = {k: v for k, v in environ.items() if k.startswith("LEPTON_MQTT__")}
    return load_config(_MqttOnly, config, environ=env).mqtt


def judge(role: str, payload: bytes | None, *, device: str | None = None, task: str = "digits",
          public_key: Path | None = None) -> tuple[bool, str]:
    """Pure verdict on the retained payload a role should have published: (healthy, reason)."""
    if payload is None:
        return False, "no retained message"
    try:
        if role == "agent":
            st = loads(payload, Status)
            if st.device != device:
                return False, f"status is for device {st.device!r}, expected {device!r}"
            return st.state == "online", f"agent {st.device} is {st.state}"
        if role == "bridge":
            ss = loads(payload, ServiceStatus)
            if ss.service != "bridge":
                return False, f"hub/status comes from a {ss.service}"
            return ss.state == "online", f"bridge {ss.id} is {ss.state}"
        m = loads(payload, Manifest)
        if m.task != task:
            return False, f"manifest is for task {m.task!r}, expected {task!r}"
        if public_key is not None:
            verify_manifest_obj(json.loads(payload), load_public(public_key))
        return True, f"model {m.task} v{m.version} published"
    except (SchemaError, SignatureError, json.JSONDecodeError) as exc:
        return False, f"bad retained payload ({getattr(exc, 'reason', type(exc).__name__)}): {exc}"
    except OSError as exc:
        return False, f"cannot read public key: {exc}"


def fetch_retained(settings: MqttSettings, flt: Filter, timeout: float) -> bytes | None:
    """The retained payload on ``flt``, or None when none arrives within ``timeout`` seconds."""
    got: list[bytes] = []
    ev = threading.Event()

    def on_message(msg) -> None:
        if msg.retain and not got:
            got.append(msg.payload)
            ev.set()

    client = MqttClient(settings, client_id=f"health-{uuid.uuid4().hex[:12]}")
    client.subscribe(flt, 1, on_message)
    client.start()
    try:
        if not client.wait_connected(timeout):
            raise ConnectionError(f"cannot connect to {settings.host}:{settings.port}: {client.last_connect_error}")
        ev.wait(timeout)
    finally:
        client.stop()
    return got[0] if got else None


def topic_for(role: str, topics: Topics, device: str | None, task: str) -> Filter:
    if role == "agent":
        if not device:
            raise TopicError("agent check needs --device or LEPTON_DEVICE")
        return Filter(str(topics.status(device)))
    if role == "bridge":
        return Filter(str(topics.hub_status()))
    return Filter(str(topics.manifest(task)))


def web_answers(url: str, timeout: float) -> tuple[bool, str]:
    """The console is healthy when its login page answers 200 (it serves only once connected to MQTT)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (a fixed local URL)
            return r.status == 200, f"{url} answered {r.status}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("role", choices=("agent", "bridge", "worker", "console"))
    console_port = environ.get("LEPTON_CONSOLE__PORT", "8765")  # the port the console itself reads
    p.add_argument("--url", default=f"http://127.0.0.1:{console_port}/login",
                   help="console: the page that must answer")
    p.add_argument("--device", default=environ.get("LEPTON_DEVICE"), help="agent device id")
    p.add_argument("--task", default="digits", help="worker: the task whose manifest must exist")
    p.add_argument("--public-key", type=Path, help="worker: verify the manifest signature with this key")
    p.add_argument("--root", default=DEFAULT_ROOT, help="topic root")
    p.add_argument("--config", help="service config file; only its [mqtt] table is read")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for connect and message")
    args = p.parse_args(argv)
    if args.role == "console":
        ok, reason = web_answers(args.url, args.timeout)
        print(("healthy: " if ok else "unhealthy: ") + reason)
        return 0 if ok else 1
    try:
        settings = mqtt_settings(args.config, environ)
        flt = topic_for(args.role, Topics(args.root), args.device, args.task)
        payload = fetch_retained(settings, flt, args.timeout)
    except (ConfigError, TopicError, ConnectionError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    ok, reason = judge(args.role, payload, device=args.device, task=args.task, public_key=args.public_key)
    print(("healthy: " if ok else "unhealthy: ") + reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
