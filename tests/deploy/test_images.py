"""The images scripts/images.sh builds: what is (and is not) inside, who they run as, and that
their health checks survive the build. Needs RUN_CONTAINER_TESTS=1 and podman (see
tests/deploy/podman.py); skips with the reason otherwise."""

from __future__ import annotations

import json

import pytest

from . import podman

pytestmark = pytest.mark.slow


def run_in(image: str, *cmd: str, timeout: float = 180) -> tuple[int, str]:
    """(exit status, stdout + stderr) of CMD in a throwaway container of IMAGE."""
    # --no-healthcheck: without systemd, podman says on stderr that it cannot schedule it.
    res = podman.podman("run", "--rm", "--no-healthcheck", image, *cmd, timeout=timeout, check=False)
    return res.returncode, res.stdout + res.stderr


def installed(image: str) -> dict[str, str]:
    res = podman.podman("run", "--rm", "--no-healthcheck", image, "python", "-c", "import importlib.metadata as m, json; "
                        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))",
                        timeout=180)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_edge_image_has_no_torch_but_runs_onnxruntime_and_opencv(lepton_images: dict[str, str]) -> None:
    image = lepton_images["agent"]
    pkgs = installed(image)
    rc, out = run_in(image, "python", "-c", "import torch")
    rc_ok, out_ok = run_in(image, "python", "-c", "import onnxruntime, cv2, edge_agent.agent; print('ok')")

    assert "torch" not in pkgs and not any(p.startswith("nvidia-") for p in pkgs)
    assert rc != 0 and "No module named 'torch'" in out
    assert rc_ok == 0 and out_ok.strip().endswith("ok"), out_ok


def test_the_bridge_image_is_the_protocol_package_only(lepton_images: dict[str, str]) -> None:
    pkgs = installed(lepton_images["bridge"])

    assert "lepton-edge" in pkgs
    assert not {"torch", "onnxruntime", "opencv-python-headless"} & set(pkgs)


def test_the_worker_image_has_the_cpu_torch_from_the_wheelhouse(lepton_images: dict[str, str]) -> None:
    image = lepton_images["worker"]
    pkgs = installed(image)
    rc, out = run_in(image, "python", "-c", "import torch; print(torch.__version__, torch.version.cuda)")

    assert rc == 0, out
    assert out.strip().splitlines()[-1].split() == [pkgs["torch"], "None"]
    assert pkgs["torch"].endswith("+cpu")
    assert not any(p.startswith(("nvidia-", "cuda-", "triton")) for p in pkgs)
    wheel = next((podman.BUILD / "wheelhouse" / "deps").glob("torch-*.whl"))
    assert wheel.name.startswith(f"torch-{pkgs['torch']}-")


@pytest.mark.parametrize("role", ("agent", "bridge", "worker"))
def test_runs_as_the_lepton_user_with_its_health_check(lepton_images: dict[str, str], role: str) -> None:
    image = lepton_images[role]
    rc, out = run_in(image, "id")
    cfg = json.loads(podman.podman("image", "inspect", image).stdout)[0]
    check = (cfg.get("Healthcheck") or cfg.get("Config", {}).get("Healthcheck") or {}).get("Test", [])

    assert rc == 0 and out.startswith("uid=10001(lepton) gid=10001(lepton)"), out
    assert check[:3] == ["CMD", "python", "/usr/local/lib/lepton/healthcheck.py"] and role in check, cfg


def test_sizes_are_recorded(lepton_images: dict[str, str]) -> None:
    sizes = json.loads((podman.BUILD / "images" / "sizes.json").read_text())

    for role in ("agent", "bridge", "worker", "mosquitto"):
        measured = int(podman.podman("image", "inspect", "--format", "{{.Size}}", lepton_images[role]).stdout)
        assert sizes[role] == measured, role
    assert sizes["bridge"] < sizes["agent"] < sizes["worker"]
