"""`lepton-worker rollout ...`: show a task's release, or send it a signed operator command and print the answer."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from argparse import Namespace

from cloud_worker.config import WorkerConfig
from cloud_worker.registry import Registry
from shared.process.service import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE
from shared.protocol import schemas
from shared.protocol.schemas import RolloutCommand, RolloutEvent
from shared.protocol.topics import Topics
from shared.security.signing import load_private, sign_msg
from shared.transport.mqtt import Message, MqttClient


def rollout_command(cfg: WorkerConfig, args: Namespace) -> int:
    if args.action == "show":
        return _show(cfg, args)
    if not cfg.signing_key.exists():
        print(f"lepton-worker: signing key {cfg.signing_key} does not exist: rollout commands are signed with it",
              file=sys.stderr)
        return EXIT_CONFIG
    cmd = RolloutCommand(task=args.task, id=f"cmd-{uuid.uuid4().hex[:16]}", action=args.action,
                         group=getattr(args, "group", None), version=getattr(args, "version", None), ts=time.time())
    payload = sign_msg(cmd, load_private(cfg.signing_key))
    topics = Topics(cfg.root)
    answer: list[RolloutEvent] = []
    got = threading.Event()

    def on_event(msg: Message) -> None:
        try:
            ev = schemas.loads(msg.payload, RolloutEvent)
        except schemas.SchemaError:
            return
        if ev.command == cmd.id:
            answer.append(ev)
            got.set()

    client = MqttClient(cfg.mqtt, client_id=f"lepton-rollout-cli-{uuid.uuid4().hex[:8]}")
    client.start()
    try:
        if not client.wait_connected(min(args.timeout, 10.0)):
            print(f"lepton-worker: cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}: "
                  f"{client.last_connect_error}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        client.subscribe_and_wait(topics.rollout_event(args.task), 1, on_event)
        client.publish(topics.rollout_cmd(args.task), payload, qos=1)
        if not got.wait(args.timeout):
            print(f"lepton-worker: no worker answered {args.action} for {args.task} within {args.timeout:g}s "
                  f"(is a worker with rollout enabled running?)", file=sys.stderr)
            return EXIT_UNAVAILABLE
    finally:
        client.stop()
    ev = answer[0]
    print(json.dumps(json.loads(schemas.dumps(ev)), indent=2))
    return EXIT_ERROR if ev.action == "refused" else EXIT_OK


def _show(cfg: WorkerConfig, args: Namespace) -> int:
    reg = Registry(cfg.registry)
    d = reg.task_dir(args.task)
    state = d / "rollout.json"
    if not state.exists():
        print(f"lepton-worker: task {args.task!r} has no rollout state in {d.resolve()}", file=sys.stderr)
        return EXIT_ERROR
    st = json.loads(state.read_text())
    print(json.dumps({"fleet_version": st.get("fleet"), "releases_started": st.get("releases"),
                      "release": st.get("release")}, indent=2))
    events = d / "rollout-events.jsonl"
    if events.exists() and args.events:
        for line in events.read_text().splitlines()[-args.events:]:
            ev = json.loads(line)
            ev.pop("signature", None)
            print(json.dumps(ev, sort_keys=True))
    return EXIT_OK
