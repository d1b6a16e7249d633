#!/usr/bin/env bash
# The deployment tests that need containers, after scripts/test.sh (.ci/run calls both):
#   1. scripts/images.sh: the wheelhouse, the base images (debootstrap stand-ins where no
#      registry answers) and the three Lepton images, with their sizes;
#   2. pytest on tests/deploy/test_{images,compose_script,compose_up,pi_arm64}.py: the images'
#      contents, scripts/compose.sh on a small stack, then the compose stack with it (docker-compose
#      against podman's socket), and the agent installed on an emulated arm64 Pi userland
#      (scripts/pi-userland.sh);
#   3. the broker-backed tests once more with LEPTON_TEST_BROKER=testcontainers: the session
#      broker is the broker image in a container, started through podman's socket.
# Caches (build/wheelhouse, build/base, build/pi, podman's images and layers) make reruns on
# the same machine fast. Where podman cannot run, the tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
export RUN_CONTAINER_TESTS=1
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}"
t0=$SECONDS
stamp() { printf 'test-deploy: %s (%d s so far)\n' "$*" "$((SECONDS - t0))"; }

podman_ok=1
if ! command -v podman >/dev/null; then
    podman_ok=0; stamp "podman is not installed: the container tests will skip (apt-get install podman runc)"
elif ! timeout 60 podman info >/dev/null 2>&1; then
    podman_ok=0; stamp "podman cannot run here ($(timeout 60 podman info 2>&1 | tail -1)): the container tests will skip"
fi

if [[ $podman_ok -eq 1 ]]; then
    # The arm64 userland (qemu: CPU-bound) builds beside the images (mostly I/O); on a cold
    # cache that saves minutes. test_pi_arm64.py reports its failure (or skip) from the cache.
    mkdir -p build/pi
    timeout 1500 bash scripts/pi-userland.sh >build/pi/userland.log 2>&1 &
    userland=$!
    timeout 1800 bash scripts/images.sh 2>&1 | grep -v "is ignored: it is neither a file nor a directory"
    stamp "images built"
    if wait "$userland"; then
        stamp "arm64 Pi userland ready"
    else
        stamp "arm64 Pi userland not built (exit $?; build/pi/userland.log): the Pi test says why"
    fi
fi

# The images, the compose stack and the arm64 Pi install (module by module, one report).
rc=0
timeout 3000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy/test_images.py \
    tests/deploy/test_compose_script.py tests/deploy/test_compose_up.py tests/deploy/test_pi_arm64.py "$@" || rc=$?
stamp "container tests finished (pytest exit $rc)"

# The broker-backed tests against a broker in a container: testcontainers through podman's
# docker-compatible socket. Ryuk (testcontainers' reaper) is an image from Docker Hub, which
# may not be reachable; the fixture stops its container itself.
if [[ $podman_ok -eq 1 ]]; then
    sockdir="$(mktemp -d /tmp/lepton-podman-XXXXXX)"
    podman system service --time=0 "unix://$sockdir/podman.sock" >"$sockdir/service.log" 2>&1 &
    svc=$!
    trap 'kill "$svc" 2>/dev/null || true; wait "$svc" 2>/dev/null || true; rm -rf "$sockdir"' EXIT
    for _ in $(seq 100); do [[ -S "$sockdir/podman.sock" ]] && break; sleep 0.2; done
    DOCKER_HOST="unix://$sockdir/podman.sock" TESTCONTAINERS_RYUK_DISABLED=true LEPTON_TEST_BROKER=testcontainers \
        timeout 1200 .venv/bin/python -m pytest -q -p no:cacheprovider -m "broker and not slow" \
        tests || tc_rc=$?
    stamp "testcontainers pass finished (pytest exit ${tc_rc:-0})"
    [[ $rc -ne 0 ]] || rc=${tc_rc:-0}
else
    stamp "testcontainers pass skipped: podman cannot run here"
fi
exit "$rc"
