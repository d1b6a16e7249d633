"""``lepton tasks``: list the tasks Lepton can find, and check a spec before running it.

    lepton tasks list                 # name, kind, classes, data source, where it was found
    lepton tasks check NAME|PATH      # validate, load the data, build both models, run one forward pass each

A bad spec gets one line naming the key, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from lepton_tasks.check import check_data
from lepton_tasks.registry import available
from lepton_tasks.spec import TaskSpecError, read_spec

EXIT_BAD_SPEC = 2


def _source(spec) -> str:
    d = spec.dataset
    return d.call if d.source == "callable" else f"{d.source}:{d.path}"


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for f in available():
        try:
            s = read_spec(f.path)
            rows.append((s.name, s.kind, f"{len(s.classes)}: {', '.join(s.classes)}", _source(s), f.origin))
        except TaskSpecError as exc:
            rows.append((f.name, "?", f"invalid: {exc}", "?", f.origin))
    widths = [max(len(r[i]) for r in rows + [("task", "kind", "classes", "data", "found")]) for i in range(5)]
    widths[2] = min(widths[2], 60)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format("task", "kind", "classes", "data", "found"))
    for r in rows:
        print(fmt.format(r[0], r[1], r[2] if len(r[2]) <= 60 else r[2][:57] + "...", r[3], r[4]))
    return 0


def check(ref: str, *, models: bool = True, out=print) -> None:
    """Everything ``lepton tasks check`` does; raises TaskSpecError (one line) on the first problem."""
    checked = check_data(ref, out)
    if not models:
        return
    if checked.task.problem != "classify":
        out(f"  models: not checked here: an {checked.task.problem} task's detectors are measured offline "
            f"(bench/bench_{checked.task.problem}.py); the live system does not serve it yet")
        return
    try:
        from cloud_worker.releasing.spec_check import check_models
    except ModuleNotFoundError as exc:
        out(f"  models: not checked ({exc.name} is not installed: the cloud extra builds them)")
        return
    check_models(checked, out)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        check(args.spec, models=not args.no_models)
    except TaskSpecError as exc:
        print(f"lepton tasks check: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    print("ok")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the tasks Lepton finds; check a task spec",
                       description=__doc__.split("\n\n")[0])
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = tsub.add_parser("list", help="shipped tasks and installed task packs")
    ls.set_defaults(func=cmd_list)
    ck = tsub.add_parser("check", help="validate a spec, load its data, build and run its models")
    ck.add_argument("spec", metavar="NAME|PATH", help="a task name or a task spec file (.toml)")
    ck.add_argument("--no-models", action="store_true", help="skip building the models (no torch needed)")
    ck.set_defaults(func=cmd_check)
