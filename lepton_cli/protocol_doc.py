"""`lepton protocol-doc`: print (or --check) docs/PROTOCOL.md, generated from the code."""

from __future__ import annotations

import argparse

from shared.protocol import protocol_doc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol-doc", help="print the protocol doc generated from the code")
    p.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the generated doc")
    p.set_defaults(func=lambda a: protocol_doc.main(["--check", a.check] if a.check else []))
