"""`lepton console`: the web console (label queue, review, fleet, models) on a broker.

    lepton console --port 1883                      # web on 127.0.0.1:8765, a login token printed
    lepton console --config console.toml            # [mqtt], name, host, port, token, registry, ...
    LEPTON_CONSOLE__TOKEN=... lepton console         # a token of your own (at least 16 characters)

It binds 127.0.0.1 unless told otherwise (--bind). SIGTERM or Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from shared.process.cli_help import HelpFormatter
from shared.process.config import ConfigError, load_config, redacted
from shared.process.service import EXIT_CONFIG, EXIT_OK, log_ignored_env, run_until_signal

log = logging.getLogger("lepton.console")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    mqtt: dict[str, Any] = {}
    for key in ("host", "port", "username"):
        v = getattr(args, f"broker_{key}")
        if v is not None:
            mqtt[key] = v
    if args.password_file:
        mqtt["password"] = open(args.password_file).readline().strip()
    if args.cafile:
        mqtt["tls"] = {"ca": args.cafile}
    out: dict[str, Any] = {"mqtt": mqtt} if mqtt else {}
    for key, attr in (("host", "bind"), ("port", "http_port"), ("name", "name"), ("registry", "registry"),
                      ("root", "root")):
        v = getattr(args, attr)
        if v is not None:
            out[key] = v
    if args.token_file:
        out["token"] = open(args.token_file).readline().strip()
    return out


def run(args: argparse.Namespace) -> int:
    from lepton_console.config import ConsoleConfig
    from lepton_console.service import ConsoleService

    try:
        cfg = load_config(ConsoleConfig, args.config, overrides=_overrides(args))
    except (ConfigError, OSError) as exc:
        print(f"lepton console: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log_ignored_env("lepton console", ConsoleConfig)
    if args.validate_config:
        print(json.dumps(redacted(cfg), indent=2))
        return EXIT_OK
    svc = ConsoleService(cfg)

    def started() -> None:
        print(f"lepton console: {svc.url}  (log in: {svc.login_url})", flush=True)

    svc.on_started = started  # type: ignore[attr-defined]
    try:
        return run_until_signal(_Announcing(svc), duration=args.duration)
    except OSError as exc:  # the port is taken, the address cannot be bound
        print(f"lepton console: cannot serve on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 69


class _Announcing:
    """The service, printing its address once the web server is up."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.name = svc.name
        self.stopping = svc.stopping
        self.errors = svc.errors

    def start(self):
        self.svc.start()
        if self.svc.wait_ready(10):
            self.svc.on_started()
        return self

    def wait(self, timeout=None):
        return self.svc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.svc.stop(timeout)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="web console: label what the edge was unsure of, watch the fleet, steer models",
                       description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default=None, help="TOML config file (LEPTON_CONSOLE__* env vars override it)")
    p.add_argument("--validate-config", action="store_true", help="print the effective config (secrets masked), exit")
    p.add_argument("--host", dest="broker_host", default=None, help="broker host (default 127.0.0.1)")
    p.add_argument("--port", dest="broker_port", type=int, default=None, help="broker port (default 1883)")
    p.add_argument("--username", dest="broker_username", default=None, help="broker username (console_<name>)")
    p.add_argument("--password-file", default=None, help="broker password, first line of this file")
    p.add_argument("--cafile", default=None, help="CA certificate: TLS to the broker, checked against it")
    p.add_argument("--root", default=None, help="topic root (default lepton/v1)")
    p.add_argument("--bind", default=None, help="address the web server binds (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=None, help="web server port (default 8765; 0: a free one)")
    p.add_argument("--token-file", default=None, help="login token, first line of this file (default: a random one)")
    p.add_argument("--name", default=None, help="label publisher name / broker identity (default console_1)")
    p.add_argument("--registry", default=None, help="the worker's registry directory, for gate decisions")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run)
