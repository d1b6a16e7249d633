"""`lepton` — one entry point; each subcommand lives in its own module with register()/run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared.process.closed_pipe import ends_quietly_on_closed_pipe
from shared.process.service import parse_args

# name -> module; each module defines register(subparsers) adding its parser with set_defaults(func=...)
SUBCOMMANDS = {
    "up": "lepton_cli.up",
    "monitor": "lepton_cli.monitor",
    "keys": "lepton_cli.keys",
    "provision": "lepton_cli.provision",
    "report": "lepton_views.report",
    "bundle": "lepton_cli.bundle",
    "protocol-doc": "lepton_cli.protocol_doc",
    "topics": "lepton_cli.topics",
    "tasks": "lepton_cli.tasks",
    "console": "lepton_console.cli",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lepton", description="Lepton: edge AI and cloud AI as one system over MQTT.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:  # a missing optional dependency: say which
                sub.add_parser(name, help=f"(unavailable: {exc.name} is not installed)")
            continue
        mod.register(sub)
    return p


@ends_quietly_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # These tools say in their own words whether they reached the broker (`lepton monitor`: "cannot
        # reach the broker at ..."); their clients' connection lines would only cut into a live table.
        logging.getLogger("shared.transport.mqtt.connect").setLevel(logging.WARNING)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
