"""``lepton-bridge [--config FILE] [--validate-config] [--duration S]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hub_bridge.bridge import HubBridge
from hub_bridge.config import BridgeConfig
from shared.config import ConfigError, load_config, redacted
from shared.service import EXIT_CONFIG, EXIT_OK, run_until_signal


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lepton-bridge", description="Lepton hub bridge: priority routing, "
                                 "shedding, dedup and fusion between edge agents and cloud workers.")
    ap.add_argument("--config", help="TOML config file (LEPTON_* environment variables override it).")
    ap.add_argument("--validate-config", action="store_true", help="Check the config, print it as JSON, exit.")
    ap.add_argument("--duration", type=float, default=None, help="Stop after this many seconds (default: until SIGTERM).")
    ap.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(BridgeConfig, args.config)
    except ConfigError as exc:
        print(f"lepton-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.validate_config:
        print(json.dumps(redacted(cfg), indent=2))
        return EXIT_OK
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_until_signal(HubBridge(cfg), duration=args.duration)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
