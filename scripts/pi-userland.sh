#!/usr/bin/env bash
# An arm64 Raspberry Pi OS (bookworm, 64-bit) userland as a podman image, for the Pi install
# test (tests/deploy/test_pi_arm64.py): Debian bookworm arm64 made with debootstrap (cached in
# build/base/) and docker/base/Dockerfile.pi (python3, venv, systemd), run under qemu-user.
#
#   bash scripts/pi-userland.sh          # prints the image name; reruns reuse the image
#
# Needs root, podman, qemu-user-static and binfmt-support (apt-get install ...). Exit 3 (with
# the reason) when qemu's aarch64 binfmt handler cannot be registered on this kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_PREFIX=pi-userland
LEPTON_ENGINE=podman  # `--arch` runs and imports as the tests use them
# shellcheck source=scripts/lib/containers.sh
. scripts/lib/containers.sh

IMAGE="${LEPTON_PI_IMAGE:-localhost/lepton-pi:bookworm-arm64}"
BINFMT=/proc/sys/fs/binfmt_misc

# qemu-user for aarch64 ELF files, with the F flag (the interpreter is opened now, so it
# also works inside containers and chroots that do not have it).
if [[ ! -e "$BINFMT/register" ]]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || { echo "pi-userland: cannot mount binfmt_misc" >&2; exit 3; }
fi
if [[ ! -e "$BINFMT/qemu-aarch64" ]]; then
    command -v update-binfmts >/dev/null || { echo "pi-userland: binfmt-support is not installed" >&2; exit 3; }
    [[ -e /usr/share/binfmts/qemu-aarch64 ]] || { echo "pi-userland: qemu-user-static is not installed" >&2; exit 3; }
    update-binfmts --enable qemu-aarch64 || { echo "pi-userland: update-binfmts --enable qemu-aarch64 failed" >&2; exit 3; }
fi
grep -q '^enabled' "$BINFMT/qemu-aarch64" || { echo "pi-userland: qemu-aarch64 binfmt handler is disabled" >&2; exit 3; }
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" || { echo "pi-userland: qemu-aarch64 lacks the F (fix binary) flag" >&2; exit 3; }

if ! has_image "$IMAGE"; then
    t0=$SECONDS
    debian_base arm64 localhost/lepton-base/debian:bookworm-arm64
    ctx="$BUILD/pi/context"
    rm -rf "$ctx" && mkdir -p "$ctx/ca-certificates"
    # The host's extra CA certificates (a TLS-inspecting egress proxy), for pip inside.
    find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$ctx/ca-certificates/" \; 2>/dev/null || true
    cp docker/base/Dockerfile.pi "$ctx/Dockerfile"
    E build -q "${build_opts[@]}" --arch arm64 -t "$IMAGE" "$ctx" >/dev/null
    say "built $IMAGE ($((SECONDS - t0)) s)"
fi
echo "$IMAGE"
