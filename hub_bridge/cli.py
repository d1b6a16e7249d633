"""``lepton-bridge [--config FILE] [--validate-config] [--duration S]``."""

from __future__ import annotations

import argparse
import sys

from hub_bridge.bridge import HubBridge
from hub_bridge.config import BridgeConfig
from shared.process.closed_pipe import ends_quietly_on_closed_pipe
from shared.process.service import add_service_args, run_service_cli


def build_parser() -> argparse.ArgumentParser:
    return add_service_args(argparse.ArgumentParser(
        prog="lepton-bridge", description="Lepton hub bridge: priority routing, shedding, dedup and fusion "
                                          "between edge agents and cloud workers."))


@ends_quietly_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    return run_service_cli(build_parser().parse_args(argv), "lepton-bridge", BridgeConfig, HubBridge)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
