"""`lepton topics`: the topic tree, which topics a person can read, and filters for mosquitto_sub.

    lepton topics                                   # every kind: filter, encoding, publisher, consumer
    mosquitto_sub -v -p PORT $(lepton topics --json-filters)   # only the readable (JSON) topics

``lepton/v1/#`` also brings the binary ones: feature, escalation, fused-batch and forwarded
tensors (shared/protocol/containers.py) and the retained ONNX artifacts, hundreds of kB on connect. The
filters come from shared/protocol/topics.py's TOPIC_SPECS, so they follow the protocol as it changes.
"""

from __future__ import annotations

import argparse
import sys

from lepton_cli.hints import command
from shared.process.cli_help import HelpFormatter
from shared.protocol.topics import DEFAULT_ROOT, TOPIC_SPECS, TopicError, Topics, check_root


def table(topics: Topics) -> str:
    rows = [(str(topics.of_kind(s.kind)), "JSON" if s.encoding == "json" else f"binary ({s.encoding})",
             s.publisher, s.consumer) for s in TOPIC_SPECS]
    head = ("filter", "encoding", "published by", "read by")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    binary = ", ".join(s.kind.value for s in TOPIC_SPECS if s.encoding != "json")
    lepton = command("lepton")
    return "\n".join(lines) + (f"\n\nbinary kinds ({binary}) print as bytes in mosquitto_sub; "
                               f"`{lepton} monitor --raw` decodes them.\nreadable only: "
                               f"mosquitto_sub -v -p PORT $({lepton} topics --json-filters)")


def run(args: argparse.Namespace) -> int:
    try:
        topics = Topics(check_root(args.root))
    except TopicError as exc:
        print(f"lepton topics: {exc}", file=sys.stderr)
        return 2
    if args.json_filters or args.binary_filters:
        filters = topics.readable() if args.json_filters else topics.binary()
        # Unquoted on purpose: `$(lepton topics --json-filters)` splits into words, and '+' and
        # '#' are not glob characters, so the shell passes each filter through as it is.
        print(" ".join(f"-t {f}" for f in filters))
        return 0
    print(table(topics))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="the topic tree: readable (JSON) and binary topics, filters for mosquitto_sub",
                       description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--root", default=DEFAULT_ROOT, help="topic root")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json-filters", action="store_true",
                   help="print `-t FILTER` for every JSON topic kind, for mosquitto_sub")
    g.add_argument("--binary-filters", action="store_true",
                   help="print `-t FILTER` for every binary topic kind (tensors, ONNX)")
    p.set_defaults(func=run)

