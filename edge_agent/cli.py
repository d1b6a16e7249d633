"""``lepton-agent [--config FILE] [--validate-config] [--duration S]``."""

from __future__ import annotations

import argparse
import sys

from edge_agent.config import AgentConfig
from shared.process.closed_pipe import ends_quietly_on_closed_pipe
from shared.process.service import add_service_args, run_service_cli


def build_parser() -> argparse.ArgumentParser:
    return add_service_args(argparse.ArgumentParser(
        prog="lepton-agent", description="Lepton edge agent (ONNX on the device; no torch)."))


@ends_quietly_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    def make(cfg: AgentConfig):
        from edge_agent.agent import Agent  # onnxruntime and OpenCV load only when the agent runs

        return Agent(cfg)

    return run_service_cli(build_parser().parse_args(argv), "lepton-agent", AgentConfig, make)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
