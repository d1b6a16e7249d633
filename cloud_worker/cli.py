"""``lepton-worker``: run the service, bootstrap a task, inspect and steer the model registry.

    lepton-worker run [--config F] [--task NAME|PATH ...] [--validate-config] [--duration S]
    lepton-worker bootstrap --task T [--config F] [--no-publish]
    lepton-worker models list [--task T]
    lepton-worker models show --task T [--version V] [--decisions N]
    lepton-worker models promote --task T --version V [--no-publish]
    lepton-worker models rollback --task T [--to V] [--no-publish]
    lepton-worker rollout show --task T [--events N]
    lepton-worker rollout pause|resume|promote|abort --task T
    lepton-worker rollout pin --task T --group G --version V | unpin --task T --group G

promote and rollback never lower the version number: agents only accept a higher version,
so they register version N+1 carrying the chosen version's exact weights (same ONNX bytes
and sha256) and publish it.

rollout commands go to the running worker's release of a task (docs/WORKER.md, Staged rollout),
signed with the model-signing key like a model; the worker answers with a rollout event, which
is printed (exit 1 when it refused the command, 69 when no worker answered).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from cloud_worker.config import DeviceUnavailable, WorkerConfig
from lepton_tasks import load_task
from shared.process.closed_pipe import ends_quietly_on_closed_pipe
from shared.process.config import ConfigError, load_config, redacted
from shared.process.service import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    end_process,
    log_ignored_env,
    parse_args,
    run_until_signal,
)
from shared.protocol.topics import Topics

log = logging.getLogger("lepton-worker")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lepton-worker", description="Lepton cloud worker: answer escalations, "
                                "learn continually, publish signed ONNX models.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def cfg_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, help="TOML config (default: $LEPTON_WORKER__CONFIG or $LEPTON_CONFIG); "
                                                    "LEPTON_WORKER__* and LEPTON_* env vars override it")

    r = sub.add_parser("run", help="run the worker service")
    cfg_arg(r)
    r.add_argument("--validate-config", action="store_true", help="check the config, print it, exit")
    r.add_argument("--duration", type=float, help="stop after S seconds (default: until SIGTERM)")
    r.add_argument("--task", action="append", metavar="NAME|PATH",
                   help="a task to serve (a name or a spec file; repeat for several); replaces the config's tasks")
    b = sub.add_parser("bootstrap", help="train version 1 from the seed set and publish it (no-op when it exists)")
    cfg_arg(b)
    b.add_argument("--task", required=True, metavar="NAME|PATH", help="a task name or a task spec file")
    b.add_argument("--no-publish", action="store_true", help="register only; do not contact the broker")
    m = sub.add_parser("models", help="the model registry")
    msub = m.add_subparsers(dest="action", metavar="ACTION")
    ls = msub.add_parser("list", help="versions per task")
    cfg_arg(ls)
    ls.add_argument("--task")
    sh = msub.add_parser("show", help="one version's record")
    cfg_arg(sh)
    sh.add_argument("--task", required=True)
    sh.add_argument("--version", type=int, help="default: latest")
    sh.add_argument("--decisions", type=int, default=0, metavar="N", help="also print the last N gate decisions")
    for name, helptext in (("promote", "republish version V as a new version"),
                           ("rollback", "republish the deployed version's parent (or --to V) as a new version")):
        sp = msub.add_parser(name, help=helptext)
        cfg_arg(sp)
        sp.add_argument("--task", required=True)
        if name == "promote":
            sp.add_argument("--version", type=int, required=True)
        else:
            sp.add_argument("--to", type=int, help="version whose weights to go back to")
        sp.add_argument("--no-publish", action="store_true", help="register only; a running worker publishes it")
    ro = sub.add_parser("rollout", help="staged rollouts: show a task's release, or command it")
    rsub = ro.add_subparsers(dest="action", metavar="ACTION")
    show = rsub.add_parser("show", help="the release and its events, from the registry")
    cfg_arg(show)
    show.add_argument("--task", required=True)
    show.add_argument("--events", type=int, default=10, metavar="N", help="the last N events")
    for name, helptext in (("pause", "stop automatic decisions (the judge still counts)"),
                           ("resume", "automatic decisions again"),
                           ("promote", "move the release to its next stage now (the last: the whole fleet)"),
                           ("abort", "roll the release back now"),
                           ("pin", "run one version on a group, whatever the release says"),
                           ("unpin", "remove a group's pin")):
        sp = rsub.add_parser(name, help=helptext)
        cfg_arg(sp)
        sp.add_argument("--task", required=True)
        if name in ("pin", "unpin"):
            sp.add_argument("--group", required=True, help="a group, e.g. site:garage, or device:<id>")
        if name == "pin":
            sp.add_argument("--version", type=int, required=True)
        sp.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the worker's answer")
    return p


@ends_quietly_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = parse_args(p, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd is None or (args.cmd in ("models", "rollout") and args.action is None):
        p.print_help()
        return EXIT_CONFIG
    try:
        over = {"tasks": args.task} if args.cmd == "run" and args.task else None
        cfg = load_config(WorkerConfig, args.config, overrides=over)
        args.task_ref = getattr(args, "task", None)  # a name or a spec path: what loads the task
        if args.cmd != "run" and args.task_ref:
            args.task = _task_name(args.task_ref)
    except ConfigError as exc:
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log_ignored_env("lepton-worker", WorkerConfig)
    try:
        if args.cmd == "run":
            return _run(cfg, args)
        if args.cmd == "bootstrap":
            return _bootstrap(cfg, args)
        if args.cmd == "rollout":
            from cloud_worker.rollout.cli import rollout_command

            return rollout_command(cfg, args)
        return _models(cfg, args)
    except FileNotFoundError as exc:
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:  # its reader went away (`... | head`): ends_quietly_on_closed_pipe's case
        raise
    except OSError as exc:  # e.g. the metrics port is taken
        print(f"lepton-worker: cannot run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DeviceUnavailable as exc:
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyError as exc:
        print(f"lepton-worker: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_CONFIG


def _last_up_run(base: Path = Path("var/up")) -> Path | None:
    """The newest `lepton up` run directory here that has a registry and a worker config (or None)."""
    try:
        runs = sorted((p for p in base.iterdir() if (p / "registry").is_dir() and (p / "worker.toml").is_file()),
                      key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    return runs[-1] if runs else None


def _task_name(ref: str) -> str:
    """The registry keys tasks by name: a spec path given on the command line names its task."""
    from lepton_tasks import TaskSpecError, load_task
    from lepton_tasks.registry import is_path

    if not is_path(ref):
        return ref
    try:
        return load_task(ref).name
    except TaskSpecError as exc:
        raise ConfigError(str(exc)) from None


def _run(cfg: WorkerConfig, args: argparse.Namespace) -> int:
    if args.validate_config:
        print(json.dumps(redacted(cfg), indent=2))
        return EXIT_OK
    from cloud_worker.service import WorkerService
    from lepton_tasks import TaskSpecError

    try:
        service = WorkerService(cfg)
    except TaskSpecError as exc:  # a task it cannot serve: one line, before anything connects
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # Ended here, not only in __main__: `lepton-worker run` (the console script) is a service's process too.
    end_process(run_until_signal(service, duration=args.duration))


class _Session:
    """A learner plus (optionally) a connected publisher, for the one-shot commands."""

    def __init__(self, cfg: WorkerConfig, task: str, publish: bool) -> None:
        from cloud_worker.learning.learner import Learner
        from cloud_worker.models.train import configure_torch, pick_device
        from cloud_worker.registry import Registry
        from cloud_worker.releasing.publisher import Publisher
        from cloud_worker.service import load_signer
        from shared.transport.mqtt import MqttClient

        self.cfg = cfg
        configure_torch(cfg.training.threads)
        self.registry = Registry(cfg.registry)
        self.client = None
        publish_fn = None
        topics = Topics(cfg.root)
        if publish:
            self.client = MqttClient(cfg.mqtt, client_id=f"lepton-worker-cli-{int(time.time() * 1000) % 10**9}")
            self.client.start()
            if not self.client.wait_connected(cfg.export.publish_timeout_s):
                err = self.client.last_connect_error
                self.client.stop()
                raise ConnectionError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}: {err}")
            publish_fn = Publisher(self.client, topics, self.registry, timeout=cfg.export.publish_timeout_s,
                                   keep=cfg.export.keep_artifacts).publish
        self.learner = Learner(load_task(task), cfg, self.registry, load_signer(cfg), topics,
                               device=pick_device(cfg.torch_device), publish=publish_fn)

    def close(self) -> None:
        self.learner.close()
        if self.client is not None:
            self.client.stop()


def _with_session(cfg: WorkerConfig, task: str, publish: bool, fn) -> int:
    try:
        s = _Session(cfg, task, publish)
    except ConnectionError as exc:
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        return fn(s)
    finally:
        s.close()


def _bootstrap(cfg: WorkerConfig, args: argparse.Namespace) -> int:
    from cloud_worker.releasing.publisher import PublishError

    def go(s: _Session) -> int:
        lr = s.learner
        try:
            if lr.load():
                # Already bootstrapped: republish the newest version so the retained copy is there.
                lr.publish(lr.deployed)
                print(f"{args.task}: registry already has v{lr.version}; republished it")
                return EXIT_OK
            t0 = time.perf_counter()
            e = lr.bootstrap()
        except PublishError as exc:
            print(f"lepton-worker: publish failed: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"{args.task}: v{e.version} accuracy {e.record['metrics']['accuracy']:.3f} on "
              f"{int(e.record['metrics']['holdout_n'])} holdout samples, {time.perf_counter() - t0:.1f}s"
              f"{'' if args.no_publish else ', published'}")
        return EXIT_OK

    return _with_session(cfg, args.task_ref, not args.no_publish, go)


def _models(cfg: WorkerConfig, args: argparse.Namespace) -> int:
    from cloud_worker.registry import Registry, RegistryError

    reg = Registry(cfg.registry)
    where = reg.root.resolve()
    present = sorted(p.name for p in reg.root.iterdir() if p.is_dir() and reg.versions(p.name)) \
        if reg.root.is_dir() else []
    if args.action == "list":
        tasks = [args.task] if args.task else present
        rows = [(t, v) for t in tasks for v in reg.versions(t)]
        if not rows:
            what = f"task {args.task!r}" if args.task else "any task"
            print(f"lepton-worker: no versions of {what} in the model registry at {where}"
                  f"{'' if reg.root.is_dir() else ' (the directory does not exist)'}; the registry is the "
                  f"worker config's `registry` (--config FILE or LEPTON_WORKER__REGISTRY), and "
                  f"`lepton-worker bootstrap --task TASK` creates v1", file=sys.stderr)
            last = _last_up_run()
            if last is not None:
                print(f"lepton-worker: the last `lepton up` run's registry is {last / 'registry'}: "
                      f"lepton-worker models list --config {last / 'worker.toml'}", file=sys.stderr)
            return EXIT_OK
        print(f"{'task':<10} {'ver':>4} {'kind':<10} {'parent':>6} {'from':>5} {'accuracy':>8} {'published':<20}")
        for t, v in rows:
            r = reg.get(t, v).record
            pub = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["published"])) if r.get("published") else "-"
            print(f"{t:<10} {v:>4} {r['kind']:<10} {r['parent'] or '-':>6} {r.get('source_version') or '-':>5} "
                  f"{r['metrics'].get('accuracy', 0):>8.4f} {pub:<20}")
        return EXIT_OK
    if not reg.versions(args.task):
        print(f"lepton-worker: task {args.task!r} has no versions in the model registry at {where} "
              f"(tasks with versions there: {', '.join(present) or 'none'})", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.action == "show":
            v = args.version or reg.versions(args.task)[-1]
            rec = dict(reg.get(args.task, v).record)
            rec.pop("manifest_raw", None)
            print(json.dumps(rec, indent=2, sort_keys=True))
            if args.decisions:
                for d in reg.decisions(args.task)[-args.decisions:]:
                    print(json.dumps(d, sort_keys=True))
            return EXIT_OK
        if args.action == "promote":
            reg.get(args.task, args.version)
            source, kind = args.version, "promote"
        else:
            latest = reg.latest(args.task)
            if latest is None:
                raise RegistryError(f"task {args.task!r} has no versions")
            if args.to is not None:
                reg.get(args.task, args.to)
                source = args.to
            else:
                effective = reg.get(args.task, latest.record.get("source_version") or latest.version)
                if effective.record.get("parent") is None:
                    raise RegistryError(f"v{effective.version} has no parent to roll back to")
                source = effective.record["parent"]
            kind = "rollback"
    except RegistryError as exc:
        print(f"lepton-worker: {exc}", file=sys.stderr)
        return EXIT_ERROR

    def go(s: _Session) -> int:
        s.learner.load()
        e = s.learner.republish_as_new(source, kind)
        print(f"{args.task}: v{e.version} now carries v{source}'s weights ({kind})"
              f"{'' if args.no_publish else ', published'}")
        return EXIT_OK

    return _with_session(cfg, args.task_ref, not args.no_publish, go)


if __name__ == "__main__":
    sys.exit(main())
