"""``lepton tasks``: list the tasks Lepton can find, and check a spec before running it.

    lepton tasks list                 # name, kind, classes, data source, where it was found
    lepton tasks check NAME|PATH      # validate, load the data, build both models, run one forward pass each

A bad spec gets one line naming the key, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np

from lepton_tasks.registry import available, load_task
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
    task = load_task(ref)
    out(f"task {task.name} ({task.kind}) from {task.origin}: {task.base}")
    d = task.dataset()
    counts = Counter(int(v) for v in d.y)
    out(f"  data: {len(d.y)} samples, raw sample {tuple(d.raw[0].shape)} {d.raw[0].dtype}; per class: "
        + ", ".join(f"{c} {counts.get(i, 0)}" for i, c in enumerate(task.classes)))
    if d.skipped:
        out("  skipped: " + ", ".join(f"{n} {k}" for k, n in sorted(d.skipped.items())))
    out(f"  split: seed {len(d.seed)}, holdout {len(d.holdout)}, stream {len(d.stream)}"
        + (f" (drift phase from stream position {d.drift_at})" if d.drift_at is not None else ""))
    x = task.preprocess_all(d.raw[d.seed[:2]])
    if tuple(x.shape[1:]) != task.input_shape:
        raise TaskSpecError(f"input.shape: preprocessing makes {tuple(x.shape[1:])}, the spec says "
                            f"{task.input_shape}")
    out(f"  model input: {tuple(x.shape[1:])} float32 ({task.layout}), range [{x.min():.3g}, {x.max():.3g}]")
    if not models:
        return
    try:
        import torch

        from cloud_worker.models import nets
    except ModuleNotFoundError as exc:
        out(f"  models: not checked ({exc.name} is not installed: the cloud extra builds them)")
        return
    try:
        edge, cloud = nets.build_edge(task), nets.build_cloud(task)
    except (nets.FactoryError, TypeError, ValueError, RuntimeError) as exc:
        raise TaskSpecError(f"models: {exc}") from None
    n = len(task.classes)
    with torch.no_grad():
        xt = torch.as_tensor(x)
        try:
            feat, probs = edge.eval()(xt)
            logits = cloud.eval()(xt)
        except RuntimeError as exc:
            raise TaskSpecError(f"models: a forward pass on {tuple(xt.shape)} failed: {str(exc)[:200]}") from None
    if probs.shape[-1] != n:
        raise TaskSpecError(f"models.edge: outputs {probs.shape[-1]} class scores, the spec names {n} classes")
    if logits.shape[-1] != n:
        raise TaskSpecError(f"models.cloud: outputs {logits.shape[-1]} class scores, the spec names {n} classes")
    try:  # what ships to agents must export to one ONNX graph
        from cloud_worker.releasing.export import to_onnx

        size = len(to_onnx(edge, task.input_shape))
    except Exception as exc:  # torch.onnx raises many kinds of error for a graph it cannot export
        raise TaskSpecError(f"models.edge: does not export to ONNX: {str(exc).splitlines()[0][:200]}") from None
    params = [sum(int(np.prod(p.shape)) for p in m.parameters()) for m in (edge, cloud)]
    out(f"  edge model: {type(edge).__name__}, {params[0]:,} parameters, features {tuple(feat.shape[1:])}, "
        f"scores {tuple(probs.shape[1:])}, ONNX {size / 1024:.0f} KiB")
    out(f"  cloud model: {type(cloud).__name__}, {params[1]:,} parameters, logits {tuple(logits.shape[1:])}")


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
