#!/usr/bin/env bash
# Build Lepton's four images (lepton/agent, lepton/bridge, lepton/worker, lepton/console, with the tags
# docker-compose.yml uses) from the wheelhouse, and report each one's size.
#
#   bash scripts/images.sh              # docker if its daemon answers, else podman
#   LEPTON_ENGINE=podman bash scripts/images.sh
#
# Base images: python:3.11-slim and eclipse-mosquitto:2 are used when present or pullable.
# When no registry answers (an air-gapped host, or CI here), the script makes a Debian
# bookworm root file system with debootstrap (cached in build/base/), imports it, and builds
# stand-ins from docker/base/ tagged python:3.11-slim and eclipse-mosquitto:2, so the
# unmodified Dockerfiles and docker-compose.yml work. Sizes go to build/images/sizes.json.
# Podman reads the project's docker/podman/containers.conf (CONTAINERS_CONF).
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_PREFIX=images
TAG="${LEPTON_IMAGE_TAG:-local}"
# shellcheck source=scripts/lib/containers.sh
. scripts/lib/containers.sh

# official_or_stand_in NAME DOCKERFILE: NAME present, pulled, or built from DOCKERFILE.
official_or_stand_in() {
    local name="$1" dockerfile="$2" qualified="docker.io/library/$1"
    if has_image "$qualified" || has_image "$name"; then return 0; fi
    if [[ "${LEPTON_OFFLINE:-0}" != 1 ]] && timeout 120 "$engine" pull -q "$qualified" >/dev/null 2>&1; then
        say "pulled $qualified"
        return 0
    fi
    say "no registry answered for $name: building a local stand-in from $dockerfile"
    debian_base amd64 localhost/lepton-base/debian:bookworm
    E build -q "${build_opts[@]}" -f "$dockerfile" -t "$qualified" docker/base >/dev/null
}

t0=$SECONDS
[[ "$(uname -m)" == x86_64 ]] || say "note: the stand-in bases are made for amd64 only"
bash scripts/wheelhouse.sh
official_or_stand_in python:3.11-slim docker/base/Dockerfile.python
official_or_stand_in eclipse-mosquitto:2 docker/base/Dockerfile.mosquitto

# ---- the four images ---------------------------------------------------------------------------
# Same tags and build args as docker-compose.yml, so `docker compose up` uses them unchanged
# (the compose agents add scikit-learn for their replayed dataset: EXTRAS=edge,demo).
declare -A extras=([agent]="edge,demo" [bridge]="hub" [worker]="cloud" [console]="hub,console,demo")
declare -A dockerfile=([agent]=agent [bridge]=bridge [worker]=worker [console]=bridge)  # the console: bridge's
if [[ "${LEPTON_IMAGE_DATA:-0}" == 1 ]]; then  # the scenario tasks' data, for LEPTON_TASK=camera etc.
    extras[agent]="edge,demo,data"
    extras[worker]="cloud,data"
fi
mkdir -p "$BUILD/images"
sizes="{"
for role in agent bridge worker console; do
    t1=$SECONDS
    E build -q "${build_opts[@]}" --build-arg "EXTRAS=${extras[$role]}" --build-arg "BASE_IMAGE=docker.io/library/python:3.11-slim" \
        -f "docker/Dockerfile.${dockerfile[$role]}" -t "lepton/$role:$TAG" . >/dev/null
    bytes="$("$engine" image inspect --format '{{.Size}}' "lepton/$role:$TAG")"
    say "lepton/$role:$TAG $((bytes / 1000000)) MB (built in $((SECONDS - t1)) s)"
    sizes+="\"$role\": $bytes, "
done
bytes="$("$engine" image inspect --format '{{.Size}}' docker.io/library/eclipse-mosquitto:2)"
say "eclipse-mosquitto:2 $((bytes / 1000000)) MB"
printf '%s"mosquitto": %s, "engine": "%s", "seconds": %s}\n' "$sizes" "$bytes" "$engine" "$((SECONDS - t0))" \
    >"$BUILD/images/sizes.json"
# Build stages of earlier runs (untagged, superseded): keep this run's as the layer cache.
E image prune -f --filter until=30m >/dev/null || true
say "done in $((SECONDS - t0)) s; sizes in $BUILD/images/sizes.json"
