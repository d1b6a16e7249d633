"""``lepton-agent [--config FILE] [--validate-config] [--duration S] [--forget-home-assistant]``."""

from __future__ import annotations

import argparse
import sys

from edge_agent.config import AgentConfig
from shared.process.closed_pipe import ends_quietly_on_closed_pipe
from shared.process.service import add_service_args, run_service_cli


def build_parser() -> argparse.ArgumentParser:
    p = add_service_args(argparse.ArgumentParser(
        prog="lepton-agent", description="Lepton edge agent (ONNX on the device; no torch)."))
    p.add_argument("--forget-home-assistant", action="store_true",
                   help="Remove this device from Home Assistant (clear its retained discovery configs), exit.")
    return p


@ends_quietly_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    def make(cfg: AgentConfig):
        from edge_agent.agent import Agent  # onnxruntime and OpenCV load only when the agent runs

        return Agent(cfg)

    args = build_parser().parse_args(argv)
    if args.forget_home_assistant:
        return _forget(args)
    return run_service_cli(args, "lepton-agent", AgentConfig, make)


def _forget(args: argparse.Namespace) -> int:
    from edge_agent.ha_forget import forget
    from shared.process.config import ConfigError, load_config

    try:
        cfg = load_config(AgentConfig, args.config)
        n = forget(cfg)
    except ConfigError as exc:
        print(f"lepton-agent: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:
        print(f"lepton-agent: {exc}", file=sys.stderr)
        return 1
    print(f"cleared {n} Home Assistant discovery config(s) of {cfg.device}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
