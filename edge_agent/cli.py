"""``lepton-agent [--config FILE] [--validate-config] [--duration S]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge_agent.config import AgentConfig
from shared.config import ConfigError, load_config, redacted
from shared.service import EXIT_CONFIG, EXIT_ERROR, run_until_signal


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lepton-agent", description="Lepton edge agent (ONNX on the device; no torch).")
    p.add_argument("--config", help="TOML config file (LEPTON_CONFIG also works; LEPTON_* env vars override).")
    p.add_argument("--validate-config", action="store_true", help="Check the config, print it as JSON, exit.")
    p.add_argument("--duration", type=float, default=None, help="Run for this many seconds, then stop cleanly.")
    p.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(AgentConfig, args.config)
    except ConfigError as exc:
        print(f"lepton-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.validate_config:
        print(json.dumps(redacted(cfg), indent=2))
        return 0
    from edge_agent.agent import Agent

    try:
        return run_until_signal(Agent(cfg), duration=args.duration)
    except (OSError, ValueError) as exc:  # unreadable key, state dir not writable, ...
        logging.getLogger("edge_agent").error("cannot run: %s", exc)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
