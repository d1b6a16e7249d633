"""`lepton bundle` (lepton_cli/bundle.py): the wheels a device bundle carries for install-pi.sh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cli.bundle import BundleError, add_wheels, constraints, platform_args, wheel_name_version

WHEELS = ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
          "paho_mqtt-2.2.0-py3-none-any.whl", "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
          "Pygments-2.21.0-py3-none-any.whl")


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """scripts/wheelhouse.sh's layout, with empty files standing in for the wheels."""
    wh = tmp_path / "wheelhouse"
    (wh / "lepton").mkdir(parents=True)
    (wh / "deps").mkdir()
    (wh / "lepton" / "lepton_edge-0.1.0-py3-none-any.whl").write_bytes(b"ours")
    for name in WHEELS:
        (wh / "deps" / name).write_bytes(b"")
    return wh


def test_wheel_names_give_normalised_name_and_version() -> None:
    assert wheel_name_version(Path(WHEELS[1])) == ("paho-mqtt", "2.2.0")
    assert wheel_name_version(Path(WHEELS[3])) == ("pygments", "2.21.0")
    with pytest.raises(BundleError):
        wheel_name_version(Path("not-a-wheel.tar.gz"))


def test_constraints_pin_every_dependency_without_local_labels(wheelhouse: Path) -> None:
    assert constraints(wheelhouse / "deps") == "numpy==2.4.6\npaho-mqtt==2.2.0\npygments==2.21.0\ntorch==2.13.0\n"


def test_add_wheels_copies_our_wheel_and_the_pins_and_drops_stale_files(wheelhouse: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "cam-1"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "wheels" / "lepton_edge-0.0.9-py3-none-any.whl").write_bytes(b"old")

    wheels = add_wheels(bundle, wheelhouse)

    assert [w.name for w in wheels] == ["lepton_edge-0.1.0-py3-none-any.whl"]
    assert wheels[0].read_bytes() == b"ours"
    assert "paho-mqtt==2.2.0\n" in (bundle / "wheels" / "constraints.txt").read_text()


def test_add_wheels_says_what_to_do_without_a_wheelhouse_or_bundle(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match="run scripts/wheelhouse.sh first"):
        add_wheels(tmp_path / "b", tmp_path / "empty")
    with pytest.raises(BundleError, match="lepton provision"):
        add_wheels(tmp_path / "missing", tmp_path)


def test_download_targets_the_pi_python_and_every_glibc_up_to_bookworms() -> None:
    args = platform_args("aarch64")

    assert args[:5] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11"]
    plats = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert plats[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in plats
    assert plats[-1] == "manylinux2014_aarch64"


def test_cli_reports_and_fails_with_exit_2(wheelhouse: Path, tmp_path: Path) -> None:
    lepton = str(Path(sys.executable).parent / "lepton")
    (tmp_path / "cam-2").mkdir()

    ok = subprocess.run([lepton, "bundle", str(tmp_path / "cam-2"), "--wheelhouse", str(wheelhouse)],
                        capture_output=True, text=True, timeout=60)
    bad = subprocess.run([lepton, "bundle", str(tmp_path / "nope"), "--wheelhouse", str(wheelhouse)],
                         capture_output=True, text=True, timeout=60)

    assert ok.returncode == 0 and "1 wheel(s)" in ok.stdout, ok.stderr
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
