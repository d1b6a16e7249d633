# Sourced by scripts/images.sh and scripts/pi-userland.sh: the container engine (docker or
# podman with the project's containers.conf), timeouts on every engine call, and Debian
# bookworm base images made with debootstrap and cached in build/base/.
# shellcheck shell=bash

BUILD="${LEPTON_BUILD_DIR:-build}"
STEP_TIMEOUT="${LEPTON_STEP_TIMEOUT:-900}"
LOG_PREFIX="${LOG_PREFIX:-containers}"
say() { printf '%s: %s\n' "$LOG_PREFIX" "$*"; }
die() { printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2; exit 1; }

# ---- engine ----------------------------------------------------------------------------------
engine="${LEPTON_ENGINE:-}"
if [[ -z "$engine" ]]; then
    if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then engine=docker
    elif command -v podman >/dev/null; then engine=podman
    else die "neither a docker daemon nor podman (Debian: apt-get install podman runc)"; fi
fi
if [[ "$engine" == podman ]]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}"
    # A bridge left by podman's CNI backend (before netavark was installed) holds the default
    # network's subnet, and containers on it become unreachable; netavark makes its own.
    if [[ $EUID -eq 0 ]] && ip link show cni-podman0 >/dev/null 2>&1 \
        && [[ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" == netavark ]]; then
        ip link delete cni-podman0 && printf '%s: removed the stale CNI bridge cni-podman0\n' "$LOG_PREFIX"
    fi
fi
E() { timeout "$STEP_TIMEOUT" "$engine" "$@"; }
# Podman's default OCI image format has no HEALTHCHECK; the docker format keeps it.
# shellcheck disable=SC2034 # used by the scripts that source this file
if [[ "$engine" == podman ]]; then build_opts=(--format docker); else build_opts=(); fi
has_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# ---- the Debian mirror apt uses here (debootstrap) -------------------------------------------
debian_mirror() {
    [[ -n "${LEPTON_DEBIAN_MIRROR:-}" ]] && { echo "$LEPTON_DEBIAN_MIRROR"; return; }
    local m
    m="$(grep -hsE '^(URIs:|deb ) *http' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 \
         | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ .*//')" || true
    echo "${m:-http://deb.debian.org/debian}"
}

# debian_base ARCH IMAGE: a minbase bookworm root file system as IMAGE, cached as a tarball.
debian_base() {
    local arch="$1" image="$2" tarball="$BUILD/base/debian-bookworm-$1.tar"
    if has_image "$image"; then return 0; fi
    if [[ ! -s "$tarball" ]]; then
        [[ $EUID -eq 0 ]] || die "debootstrap needs root to make the local base image"
        command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
        local rootfs="$BUILD/base/rootfs-$arch" mirror t0=$SECONDS
        mirror="$(debian_mirror)"
        rm -rf "$rootfs"
        mkdir -p "$BUILD/base"
        say "debootstrap bookworm ($arch) from $mirror"
        if [[ "$arch" == "$(dpkg --print-architecture)" ]]; then
            timeout "$STEP_TIMEOUT" debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
                >"$BUILD/base/debootstrap-$arch.log" 2>&1 || die "debootstrap failed: $BUILD/base/debootstrap-$arch.log"
        else
            # Foreign architecture: first stage here, second stage inside the root under qemu-user.
            timeout "$STEP_TIMEOUT" debootstrap --arch="$arch" --foreign --variant=minbase bookworm "$rootfs" "$mirror" \
                >"$BUILD/base/debootstrap-$arch.log" 2>&1 || die "debootstrap failed: $BUILD/base/debootstrap-$arch.log"
            timeout "$STEP_TIMEOUT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$rootfs" \
                /debootstrap/debootstrap --second-stage >>"$BUILD/base/debootstrap-$arch.log" 2>&1 \
                || die "debootstrap second stage failed: $BUILD/base/debootstrap-$arch.log"
        fi
        # No daemons started by package scripts during image builds; no package lists kept;
        # no manuals, docs or translations, now or from later installs (as Debian's slim images).
        printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
        chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-lepton-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
        find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
        rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
            "$rootfs"/usr/share/lintian/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
        say "base root file system $tarball ($(du -sh "$tarball" | cut -f1), $((SECONDS - t0)) s)"
    fi
    local archopt=()
    [[ "$engine" == podman && "$arch" != "$(dpkg --print-architecture)" ]] && archopt=(--arch "$arch")
    E import "${archopt[@]}" "$tarball" "$image" >/dev/null
    say "imported $image from $tarball"
}

