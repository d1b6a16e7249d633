"""`lepton bundle`: put the agent's wheels into a device bundle, for `install-pi.sh --bundle`.

    bash scripts/wheelhouse.sh                          # build/wheelhouse: lepton-edge + dependencies
    lepton provision cam-1 --host HUB --task digits     # lepton-devices/cam-1/ (config, keys)
    lepton bundle lepton-devices/cam-1                  # + wheels/: lepton-edge wheel, version pins
    lepton bundle lepton-devices/cam-1 --download aarch64   # + every aarch64 wheel: an offline install

The bundle's wheels/ holds this project's lepton-edge wheel (there is none on PyPI) and
constraints.txt, which pins every package of the wheelhouse to the version the images were
built and tested with. install-pi.sh installs `lepton-edge[edge]` (never torch) from there:
with --download the bundle holds every dependency for the device's architecture and the Pi
needs no index; without, the Pi fetches the third-party wheels the bundle lacks from its
package index, at the pinned versions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_WHEELHOUSE = Path("build/wheelhouse")  # lepton/ and deps/ below it (scripts/wheelhouse.sh)
# Raspberry Pi OS bookworm: CPython 3.11, glibc 2.36.
PI_PYTHON = "3.11"
PI_GLIBC_MINOR = 36


class BundleError(RuntimeError):
    """The wheelhouse or bundle is not usable; the message says what to do."""


def wheel_name_version(path: Path) -> tuple[str, str]:
    """(normalised project name, version) from a wheel file name (PEP 427 / PEP 503)."""
    parts = path.name[:-len(".whl")].split("-")
    if len(parts) < 5 or not path.name.endswith(".whl"):
        raise BundleError(f"{path.name} is not a wheel file name")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1]


def constraints(wheelhouse: Path) -> str:
    pins: dict[str, str] = {}
    for w in sorted(wheelhouse.glob("*.whl")):
        name, version = wheel_name_version(w)
        if name != "lepton-edge":
            pins[name] = version.split("+")[0]  # torch's +cpu is a local build label, not a release
    return "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))


def platform_args(arch: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", PI_PYTHON]
    for minor in range(PI_GLIBC_MINOR, 16, -1):
        args += ["--platform", f"manylinux_2_{minor}_{arch}"]
    return [*args, "--platform", f"manylinux2014_{arch}"]


def add_wheels(bundle: Path, wheelhouse: Path, download: str | None = None) -> list[Path]:
    """Copy the lepton-edge wheel and the version pins into bundle/wheels; with download=ARCH
    also fetch every dependency of the edge extra for that architecture. Returns the wheels."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a directory (make it with: lepton provision DEVICE)")
    ours = sorted([*wheelhouse.glob("lepton_edge-*.whl"), *wheelhouse.glob("lepton/lepton_edge-*.whl")])
    if not ours:
        raise BundleError(f"no lepton_edge wheel in {wheelhouse}: run scripts/wheelhouse.sh first")
    out = bundle / "wheels"
    if out.exists():
        shutil.rmtree(out)  # a stale wheel from an earlier version must not linger
    out.mkdir()
    wheel = Path(shutil.copy2(ours[-1], out))
    pins = out / "constraints.txt"
    pins.write_text(constraints(wheelhouse / "deps" if (wheelhouse / "deps").is_dir() else wheelhouse))
    if download:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               *platform_args(download), "--constraint", str(pins), "--dest", str(out), f"{wheel}[edge]"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise BundleError(f"pip download for {download} failed:\n{res.stderr[-2000:]}")
    wheels = sorted(out.glob("*.whl"))
    if any(wheel_name_version(w)[0] == "torch" for w in wheels):
        raise BundleError("torch ended up in the bundle: the edge install must never pull it")
    return wheels


def run(args: argparse.Namespace) -> int:
    try:
        wheels = add_wheels(Path(args.bundle), Path(args.wheelhouse), args.download)
    except (BundleError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(w.stat().st_size for w in wheels)
    print(f"{args.bundle}/wheels: {len(wheels)} wheel(s), {size / 1e6:.1f} MB, pins in constraints.txt"
          + ("" if args.download else "; the device fetches the third-party wheels it lacks from its index"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bundle", help="add the agent's wheels to a device bundle (for install-pi.sh)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", metavar="DIR", help="device bundle directory (from `lepton provision`)")
    p.add_argument("--wheelhouse", default=str(DEFAULT_WHEELHOUSE),
                   help=f"where scripts/wheelhouse.sh put the wheels (default {DEFAULT_WHEELHOUSE})")
    p.add_argument("--download", metavar="ARCH", choices=("aarch64", "x86_64", "armv7l"),
                   help="also download every edge dependency for this machine type (needs the index)")
    p.set_defaults(func=run)
