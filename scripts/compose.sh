#!/usr/bin/env bash
# The compose stack (docker-compose.yml) with whichever container engine this machine has:
# it waits until every service is up, saying what it waits for and for how long.
#
#   bash scripts/compose.sh up             # start it (detached) and wait until every service is healthy
#   bash scripts/compose.sh down           # stop and remove the containers; keep the volumes
#   bash scripts/compose.sh down -v        # ... and the volumes: a new signing key, model v1 again, empty broker
#   bash scripts/compose.sh ps             # (or logs -f worker, exec worker ..., any compose command)
#
# Engines, in this order (LEPTON_ENGINE=docker or podman picks one): Docker with its compose plugin
# (`docker compose`) or the standalone docker-compose, when the Docker daemon answers; else podman,
# driven by docker-compose through podman's Docker-compatible API on a private socket this script
# starts and stops. Under podman it also runs the images' health checks: podman schedules them with
# systemd timers, so where systemd is not PID 1 nothing runs them, no service ever becomes healthy
# and `depends_on: condition: service_healthy` waits forever.
#
# Environment: LEPTON_COMPOSE_PROJECT (compose project name, default lepton), LEPTON_COMPOSE_TIMEOUT
# (seconds `up` waits, default 600: the worker trains model v1 on its first start),
# LEPTON_COMPOSE_FILE (default docker-compose.yml; several joined by ':' as in compose's own
# COMPOSE_FILE: docker-compose.yml:docker-compose.monitoring.yml adds Prometheus), and what
# docker-compose.yml reads: LEPTON_BROKER_PORT (default 1883), LEPTON_TASK (default digits).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'compose: %s\n' "$*"; }
die() { printf 'compose: error: %s\n' "$1" >&2; exit "${2:-1}"; }
EX_UNAVAILABLE=69

project="${LEPTON_COMPOSE_PROJECT:-lepton}"
file="${LEPTON_COMPOSE_FILE:-docker-compose.yml}"
IFS=: read -r -a files <<<"$file"
file_args=()
for f in "${files[@]}"; do
    [[ -f "$f" ]] || die "no compose file $f" 2
    file_args+=(-f "$f")
done
timeout_s="${LEPTON_COMPOSE_TIMEOUT:-600}"
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "LEPTON_COMPOSE_TIMEOUT must be a number of seconds, not '$timeout_s'" 2
[[ $# -gt 0 ]] || die "usage: bash scripts/compose.sh up | down [-v] | ps | logs [-f] [SERVICE] | COMPOSE-COMMAND ..." 2

# ---- which engine ------------------------------------------------------------------------------
engine="" compose=() missing=()
want="${LEPTON_ENGINE:-}"
[[ -z "$want" || "$want" == docker || "$want" == podman ]] || die "LEPTON_ENGINE is docker or podman, not '$want'" 2
if [[ -z "$want" || "$want" == docker ]]; then
    if ! command -v docker >/dev/null; then
        missing+=("docker is not installed")
    elif ! timeout 20 docker info >/dev/null 2>&1; then
        missing+=("docker is installed but its daemon does not answer (\`docker info\` fails)")
    elif timeout 20 docker compose version >/dev/null 2>&1; then
        engine=docker compose=(docker compose)
    elif command -v docker-compose >/dev/null; then
        engine=docker compose=(docker-compose)
    else
        missing+=("docker has no compose plugin (\`docker compose\` is not a docker command here) and docker-compose is not installed")
    fi
fi
if [[ -z "$engine" && ( -z "$want" || "$want" == podman ) ]]; then
    if ! command -v podman >/dev/null; then
        missing+=("podman is not installed")
    elif ! command -v docker-compose >/dev/null; then
        missing+=("podman is installed but docker-compose, which drives it here, is not")
    else
        engine=podman compose=(docker-compose)
    fi
fi
if [[ -z "$engine" ]]; then
    {
        printf 'compose: error: no container engine to run docker-compose.yml with:\n'
        printf '  - %s\n' "${missing[@]}"
        printf '%s\n' "Install one: Docker Engine with its compose plugin (https://docs.docker.com/engine/install/)," \
            "or podman with docker-compose (Debian, Ubuntu; prefix sudo unless you are root):" \
            "  apt-get install -y --no-install-recommends podman runc netavark aardvark-dns catatonit docker-compose" \
            "See docs/DEPLOY.md."
    } >&2
    exit "$EX_UNAVAILABLE"
fi

# ---- podman: its API for docker-compose, and the health checks nothing else runs ---------------
workdir="$(mktemp -d /tmp/lepton-compose-XXXXXX)"
service_pid="" checks_pid="" up_pid=""
cleanup() {
    local pid
    for pid in "$up_pid" "$checks_pid" "$service_pid"; do
        if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$engine" == podman ]]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}"
    if [[ -z "${DOCKER_HOST:-}" ]]; then
        podman system service --time=0 "unix://$workdir/podman.sock" >"$workdir/service.log" 2>&1 &
        service_pid=$!
        for _ in $(seq 150); do [[ -S "$workdir/podman.sock" ]] && break; sleep 0.2; done
        [[ -S "$workdir/podman.sock" ]] || die "podman's API service did not start: $(tail -3 "$workdir/service.log")"
        export DOCKER_HOST="unix://$workdir/podman.sock"
    fi
fi
C() { "${compose[@]}" "${file_args[@]}" -p "$project" "$@"; }

ids() { "$engine" ps -aq --filter "label=com.docker.compose.project=$project"; }

run_healthchecks() {  # once, for every running container of the project that declares one
    local id
    for id in $("$engine" ps -q --filter "label=com.docker.compose.project=$project"); do
        podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
}

# "SERVICE STATE EXIT RESTART HEALTH" per container (RESTART "no" for a one-shot; HEALTH "-" without a check)
states() {
    local all
    all="$(ids)"
    [[ -n "$all" ]] || return 0
    # shellcheck disable=SC2086 # one argument per id
    "$engine" inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.State.ExitCode}} {{if .HostConfig.RestartPolicy.Name}}{{.HostConfig.RestartPolicy.Name}}{{else}}no{{end}} {{if .State.Health}}{{if .State.Health.Status}}{{.State.Health.Status}}{{else}}-{{end}}{{else}}-{{end}}' $all
}

# ---- up: start, then wait until every service is healthy (one-shots: exited 0) -----------------
# The images must be there: compose would otherwise try to pull or build them (build needs the wheelhouse).
check_images() {
    local image missing_images=()
    for image in $(C config | awk '$1 == "image:" { print $2 }' | sort -u); do
        "$engine" image inspect "$image" >/dev/null 2>&1 || missing_images+=("$image")
    done
    [[ ${#missing_images[@]} -eq 0 ]] || die "no image ${missing_images[*]} in $engine: build them first with \`bash scripts/images.sh\` (minutes; docs/DEPLOY.md)"
}

cmd_up() {
    local t0=$SECONDS services names last=-100 elapsed svc state code restart health line key waiting npending
    services="$(C config --services)" || die "$file does not load (\`${compose[*]} ${file_args[*]} config\`)"
    names="$(tr '\n' ' ' <<<"$services")"
    [[ " $* " == *" --build "* ]] || check_images
    say "engine: ${compose[*]} ($engine), project $project; broker on 127.0.0.1:${LEPTON_BROKER_PORT:-1883}"
    if [[ "$engine" == podman ]]; then
        say "podman schedules health checks with systemd timers: running them here every 3 s while waiting"
        (while sleep 3; do run_healthchecks; done) &
        checks_pid=$!
    fi
    # compose itself waits on depends_on health before it starts the next services, so it runs aside
    C up -d "$@" >"$workdir/up.log" 2>&1 &
    up_pid=$!
    say "waiting up to $timeout_s s (LEPTON_COMPOSE_TIMEOUT) for: $names"
    while true; do
        elapsed=$((SECONDS - t0))
        declare -A st=() group=()
        while read -r svc state code restart health; do
            [[ -n "$svc" ]] && st[$svc]="$state $code $restart $health"
        done < <(states)
        local failed=()
        npending=0
        for svc in $services; do
            line="${st[$svc]:-}"
            if [[ -z "$line" ]]; then
                key="not created yet"
            else
                read -r state code restart health <<<"$line"
                if [[ "$health" == healthy || ( "$health" == "-" && "$state" == running ) ]]; then
                    key=up
                elif [[ "$restart" == no && "$state" == exited && "$code" == 0 ]]; then
                    key="done"  # a one-shot (keygen; its image's health check is moot)
                elif [[ "$state" == exited || "$state" == dead ]]; then
                    failed+=("$svc ($state, exit code $code)")
                    continue
                else
                    key="$state, health $health"
                fi
            fi
            [[ "$key" == up || "$key" == "done" ]] || npending=$((npending + 1))
            group[$key]="${group[$key]:+${group[$key]}, }$svc"
        done
        if [[ ${#failed[@]} -gt 0 ]]; then
            say "failed: ${failed[*]}"
            C logs --tail 30 2>&1 | tail -60 || true
            die "the stack did not come up; \`bash scripts/compose.sh logs SERVICE\` shows more, \`bash scripts/compose.sh down\` stops it"
        fi
        if [[ -n "$up_pid" ]] && ! kill -0 "$up_pid" 2>/dev/null; then
            if ! wait "$up_pid"; then
                up_pid=""
                cat "$workdir/up.log" >&2
                die "\`${compose[*]} up -d\` failed"
            fi
            up_pid=""
        fi
        [[ -n "$up_pid" || $npending -gt 0 ]] || break
        waiting="$(for key in "${!group[@]}"; do
            [[ "$key" == up || "$key" == "done" ]] && continue
            printf '%s: %s; ' "$key" "${group[$key]}"
        done)"
        [[ "$waiting" != *worker* ]] || waiting+="(the worker trains and signs model v1 on its first start)"
        if (( elapsed >= timeout_s )); then
            say "still waiting after $elapsed s: ${waiting:-for compose to finish}"
            C logs --tail 20 2>&1 | tail -60 || true
            die "not every service came up within $timeout_s s (LEPTON_COMPOSE_TIMEOUT); the containers keep running: \`bash scripts/compose.sh ps\`, \`bash scripts/compose.sh down\`"
        fi
        if (( elapsed - last >= 10 )); then
            say "${elapsed} s: ${group[up]:+up: ${group[up]}; }${group[done]:+done: ${group[done]}; }waiting: ${waiting:-for compose to finish}"
            last=$elapsed
        fi
        unset st group
        sleep 2
    done
    say "all services up in $((SECONDS - t0)) s: $names"
    say "watch it: mosquitto_sub -h 127.0.0.1 -p ${LEPTON_BROKER_PORT:-1883} -v -t 'lepton/v1/#'," \
        "or bash scripts/compose.sh logs -f worker"
    say "stop it: bash scripts/compose.sh down (keeps the volumes: signing key, models, broker state);" \
        "down -v starts over"
    if [[ "$engine" == podman ]]; then
        say "podman runs no health checks by itself here: bash scripts/compose.sh ps runs them once, then lists"
    fi
}

case "$1" in
    up)
        shift
        cmd_up "$@"
        ;;
    down)
        shift
        if [[ " $* " == *" -v "* || " $* " == *" --volumes "* ]]; then
            say "stopping and removing the containers and the volumes (signing key, model registry, broker state)"
        else
            say "stopping and removing the containers; the volumes stay (down -v removes them too)"
        fi
        C down "$@"
        ;;
    ps)
        shift
        [[ "$engine" != podman ]] || run_healthchecks
        C ps "$@"
        ;;
    *)
        C "$@"
        ;;
esac
