#!/usr/bin/env bash
# Install the Lepton edge agent on Raspberry Pi OS (bookworm, 64-bit) as a systemd service.
#
#   sudo ./install-pi.sh --bundle ./cam-1                   # bundle from `lepton provision cam-1`
#                                                           # (+ `lepton bundle`: wheels/ inside)
#   sudo ./install-pi.sh --bundle ./cam-1 --package ./lepton_edge-0.1.0-py3-none-any.whl
#   ./install-pi.sh --bundle ./cam-1 --root /tmp/pi --dry-run   # print the plan, change nothing
#
# What it does (each step is skipped when already done, so reruns are safe and cheap):
#   1. system user `lepton` (member of `video` for /dev/video*)
#   2. venv /opt/lepton and `pip install --upgrade 'lepton-edge[edge]'` (or --package); when the
#      bundle has wheels/ (from `lepton bundle`), its lepton-edge wheel with the edge extra
#      only: offline when wheels/ holds every dependency for this machine, else the missing
#      ones from the package index, at the versions wheels/constraints.txt pins
#   3. /etc/lepton/agent.toml (from the bundle's agent.toml or device.toml) and every other
#      bundle file (certificates, keys, the signing *.pub, optional agent.env) into /etc/lepton/;
#      paths in the config that name a bundle file are rewritten to /etc/lepton/<name>
#   4. /etc/systemd/system/lepton-agent.service (next to this script), enabled; restarted
#      only when something changed (and only where systemd runs: in a container or chroot
#      it is enabled for the next boot)
# --root DIR installs into DIR (an image being built, or a test): no user is created, nothing
# is chowned, systemctl is not called (the unit is enabled by its multi-user.target symlink).
set -euo pipefail

readonly VENV=/opt/lepton
readonly ETC=/etc/lepton
readonly STATE=/var/lib/lepton
readonly UNIT=lepton-agent.service
readonly UNIT_DIR=/etc/systemd/system
readonly SERVICE_USER=lepton

ROOT=/
BUNDLE=""
BUNDLE_CONFIG=""
BUNDLE_WHEELS=""
PACKAGE="lepton-edge[edge]"
PACKAGE_GIVEN=0
PYTHON="${PYTHON:-python3}"
# Exists only while systemd runs as init (sd_booted(3)); tests point it elsewhere.
SYSTEMD_RUN_DIR="${SYSTEMD_RUN_DIR:-/run/systemd/system}"
DRY_RUN=0
DO_PIP=1
DO_START=1
CHANGED=0

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UNIT_SRC="${SCRIPT_DIR}/${UNIT}"

usage() {
    cat <<EOF
usage: install-pi.sh [--bundle DIR] [--package SPEC] [--root DIR] [--dry-run] [--skip-pip] [--no-start]

  --bundle DIR    device bundle from \`lepton provision DEVICE\` (device.toml or agent.toml,
                  ca.crt, client.crt, client.key, the model-signing *.pub, optional agent.env);
                  required unless ${ETC}/agent.toml already exists
  --package SPEC  what pip installs: default the bundle's wheels/lepton_edge-*.whl, else
                  '${PACKAGE}'; a wheel file or source directory gets the [edge] extra appended
  --root DIR      install below DIR instead of / (image building, tests)
  --dry-run       print every action without changing anything
  --skip-pip      do not run pip (the package is already in ${VENV})
  --no-start      install and enable the service but do not (re)start it
  -h, --help      this help
EOF
}

die() { printf 'install-pi: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'install-pi: %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) [[ $# -ge 2 ]] || die "--bundle needs a directory"; BUNDLE="$2"; shift 2 ;;
        --package) [[ $# -ge 2 ]] || die "--package needs a value"; PACKAGE="$2"; PACKAGE_GIVEN=1; shift 2 ;;
        --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --skip-pip) DO_PIP=0; shift ;;
        --no-start) DO_START=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
ROOT="$(cd "$ROOT" && pwd)"
LIVE=0
[[ "$ROOT" == "/" ]] && LIVE=1
[[ $LIVE -eq 1 && $DRY_RUN -eq 0 && $EUID -ne 0 ]] && die "installing onto this system needs root: sudo $0 $*"

# The path DEST will have on disk (below --root).
at() { printf '%s%s' "${ROOT%/}" "$1"; }

# Print (dry run) or run a command.
act() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '[dry-run] would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# install_file SRC DEST MODE GROUP: copy when content or mode differ; owner root, group GROUP
# (only on the live system, where the group exists).
install_file() {
    local src="$1" dest mode="$3" group="$4"
    dest="$(at "$2")"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest" && [[ "$(stat -c '%a' "$dest")" == "${mode#0}" ]]; then
        say "unchanged $dest"
        return 0
    fi
    CHANGED=1
    if [[ $DRY_RUN -eq 1 ]]; then
        say "[dry-run] would write $dest (mode $mode, root:$group)"
        return 0
    fi
    install -D -m "$mode" "$src" "$dest"
    if [[ $LIVE -eq 1 ]]; then
        chown "root:$group" "$dest"
    fi
    say "wrote $dest"
}

ensure_dir() {  # ensure_dir PATH MODE OWNER
    local dir
    dir="$(at "$1")"
    if [[ -d "$dir" ]]; then
        return 0
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        say "[dry-run] would create $dir (mode $2, $3)"
        return 0
    fi
    install -d -m "$2" "$dir"
    if [[ $LIVE -eq 1 ]]; then
        chown "$3" "$dir"
    fi
    say "created $dir"
}

# The bundle's wheels this interpreter can install (pip's own tag rules), one path a line.
bundle_wheels_that_fit() {
    "$1" - "$BUNDLE_WHEELS" <<'PY'
import sys
from pathlib import Path
from pip._vendor.packaging.tags import sys_tags
from pip._vendor.packaging.utils import parse_wheel_filename

ours = set(sys_tags())
for w in sorted(Path(sys.argv[1]).glob("*.whl")):
    if ours & set(parse_wheel_filename(w.name)[3]):
        print(w)
PY
}

# Installed distributions that none of the given wheel files provided: what came from the index.
from_index() {
    local py="$1"
    shift
    "$py" - "$@" <<'PY'
import importlib.metadata as md, sys
from pathlib import Path
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

local = {parse_wheel_filename(Path(w).name)[0] for w in sys.argv[1:]}
got = sorted(f"{d.metadata['Name']} {d.version}" for d in md.distributions()
             if canonicalize_name(d.metadata["Name"]) not in local and d.metadata["Name"] not in ("pip", "setuptools"))
print(", ".join(got) or "nothing")
PY
}

# ---- 0. checks -------------------------------------------------------------------------
[[ -f "$UNIT_SRC" ]] || die "$UNIT_SRC is missing: run the script from its deploy/ directory"
if [[ -n "$BUNDLE" ]]; then
    [[ -d "$BUNDLE" ]] || die "bundle $BUNDLE is not a directory"
    BUNDLE="$(cd "$BUNDLE" && pwd)"
    BUNDLE_CONFIG=""
    for name in agent.toml device.toml; do
        if [[ -f "$BUNDLE/$name" ]]; then
            BUNDLE_CONFIG="$name"
            break
        fi
    done
    [[ -n "$BUNDLE_CONFIG" ]] \
        || die "bundle $BUNDLE has no agent.toml or device.toml (make one with: lepton provision DEVICE)"
    compgen -G "$BUNDLE/*.pub" >/dev/null \
        || say "warning: bundle has no model-signing public key (*.pub): the agent will refuse every model"
    if [[ $PACKAGE_GIVEN -eq 0 ]] && compgen -G "$BUNDLE/wheels/lepton_edge-*.whl" >/dev/null; then
        BUNDLE_WHEELS="$BUNDLE/wheels"
        PACKAGE="$(find "$BUNDLE_WHEELS" -maxdepth 1 -name 'lepton_edge-*.whl' | sort | tail -1)"
    fi
elif [[ ! -f "$(at "$ETC/agent.toml")" ]]; then
    die "first install needs --bundle DIR (from: lepton provision DEVICE)"
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: sudo apt-get install -y python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (Raspberry Pi OS bookworm ships 3.11)"
if [[ -n "$BUNDLE" ]]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # A quoted path naming a bundle file ("ca.crt", "./ca.crt", or the workstation's
    # ".../lepton-devices/cam-1/ca.crt") becomes /etc/lepton/ca.crt, where this script puts
    # that very file (the runtime path, also with --root). The result must parse as TOML.
    "$PYTHON" - "$BUNDLE" "$BUNDLE_CONFIG" "$ETC" "$work/agent.toml" "$work/missing" <<'PY'
import re, sys, tomllib
from pathlib import Path

bundle, config, etc, out, missing_out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])
text = (bundle / config).read_text()
for f in sorted(p.name for p in bundle.iterdir() if p.is_file() and p.name != config):
    for q in ('"', "'"):
        text = re.sub(f"{q}(?:[^{q}\\n]*/)?{re.escape(f)}{q}", lambda _m, f=f: f'"{etc}/{f}"', text)
try:
    data = tomllib.loads(text)
except tomllib.TOMLDecodeError as exc:
    sys.exit(f"install-pi: error: {bundle}/{config} is not valid TOML: {exc}")
# What the agent cannot start without, from the config or the bundle's agent.env (as the unit
# loads it): the full check in step 3 needs the agent installed, which a dry run does not do.
env = {}
if (bundle / "agent.env").is_file():
    for line in (bundle / "agent.env").read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            env[key.strip()] = value.strip().strip("\"'")
missing = []
for path in (("device",), ("task",), ("source", "type")):
    node = data
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    names = ["__".join(path).upper(), path[0].upper()]  # LEPTON_SOURCE__TYPE, or all of LEPTON_SOURCE
    if node is None and not any(f"{pre}{n}" in env for pre in ("LEPTON_AGENT__", "LEPTON_") for n in names):
        missing.append(".".join(path))
if missing:
    missing_out.write_text(f"{bundle}/{config} does not set {', '.join(missing)} and agent.env does not either "
                           f"(e.g. [source] type = \"camera\" in {config}, or LEPTON_SOURCE__TYPE=camera in agent.env)")
out.write_text(text)
PY
fi

# ---- 1. system user --------------------------------------------------------------------
if [[ $LIVE -eq 0 ]]; then
    say "skip system user '$SERVICE_USER' (not the live system; the image's first boot must create it)"
elif id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "user $SERVICE_USER exists"
else
    CHANGED=1
    act useradd --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --comment "Lepton edge agent" "$SERVICE_USER"
fi
if [[ $LIVE -eq 1 ]] && getent group video >/dev/null \
    && ! id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx video; then
    act usermod --append --groups video "$SERVICE_USER"
fi

# ---- 2. venv + package -----------------------------------------------------------------
if [[ -x "$(at "$VENV/bin/python")" ]]; then
    say "venv $(at "$VENV") exists"
else
    "$PYTHON" -c 'import ensurepip' 2>/dev/null \
        || die "python venv support is missing: sudo apt-get install -y python3-venv"
    CHANGED=1
    act "$PYTHON" -m venv "$(at "$VENV")"
fi
if [[ $DO_PIP -eq 1 ]]; then
    spec="$PACKAGE"
    if [[ -e "$PACKAGE" ]]; then  # a local wheel or source tree: pin the path, add the extra
        spec="$(cd "$(dirname "$PACKAGE")" && pwd)/$(basename "$PACKAGE")"
        [[ "$spec" == *"]" ]] || spec="${spec}[edge]"
    fi
    pip=("$(at "$VENV/bin/python")" -m pip install --disable-pip-version-check)
    if [[ -n "$BUNDLE_WHEELS" ]]; then
        pins=()
        [[ -f "$BUNDLE_WHEELS/constraints.txt" ]] && pins=(--constraint "$BUNDLE_WHEELS/constraints.txt")
        # Offline first: everything from the bundle (a `lepton bundle --download` bundle).
        if [[ $DRY_RUN -eq 0 ]] && "${pip[@]}" --upgrade --no-index --find-links "$BUNDLE_WHEELS" "${pins[@]}" "$spec" \
            >"$work/pip-offline.log" 2>&1; then
            say "installed $(basename "${spec%\[edge\]}") and its dependencies from the bundle alone (no index)"
        else
            # The bundle lacks wheels for this machine. Given both, pip may take an index file
            # over an identical bundle one, so the bundle's wheels that fit go in first, by
            # file; then pip fetches only what is still missing, at the pinned versions.
            fits=()
            if [[ -x "$(at "$VENV/bin/python")" ]]; then
                mapfile -t fits < <(bundle_wheels_that_fit "$(at "$VENV/bin/python")")
            fi
            if [[ $DRY_RUN -eq 1 ]]; then
                act "${pip[@]}" --no-index --no-deps "<the bundle's wheels that fit this machine>"
            else
                say "the bundle lacks wheels for this machine: installing its ${#fits[@]} that fit, the rest from the package index"
                [[ ${#fits[@]} -eq 0 ]] || act "${pip[@]}" --no-index --no-deps "${fits[@]}"
            fi
            act "${pip[@]}" --find-links "$BUNDLE_WHEELS" "${pins[@]}" "$spec"
            if [[ $DRY_RUN -eq 0 ]]; then
                say "from the package index: $(from_index "$(at "$VENV/bin/python")" "${fits[@]}")"
            fi
        fi
    else
        # pip is itself idempotent: an up-to-date install only checks versions.
        act "${pip[@]}" --upgrade "$spec"
    fi
    if [[ -e "$PACKAGE" ]]; then
        # A rebuilt local wheel keeps its version number, so pip would call it installed:
        # reinstall the package itself (not its dependencies) every time.
        act "${pip[@]}" --no-deps --force-reinstall "${spec%\[edge\]}"
    fi
else
    say "skip pip (--skip-pip)"
fi

# ---- 3. configuration from the bundle --------------------------------------------------
ensure_dir "$ETC" 0755 "root:root"
ensure_dir "$STATE" 0750 "$SERVICE_USER:$SERVICE_USER"
if [[ -n "$BUNDLE" ]]; then
    # Check it with the agent's own config model (plus the bundle's agent.env, as the unit
    # loads it) before it replaces a working config.
    agent_bin="$(at "$VENV/bin/lepton-agent")"
    if [[ -x "$agent_bin" ]]; then
        (
            if [[ -f "$BUNDLE/agent.env" ]]; then
                set -a
                # shellcheck source=/dev/null
                . "$BUNDLE/agent.env"
                set +a
            fi
            "$agent_bin" --config "$work/agent.toml" --validate-config >/dev/null
        ) || die "the bundle's $BUNDLE_CONFIG is not a valid agent config (see above); the installed one was kept"
        say "agent.toml validated by $agent_bin"
    elif [[ -s "$work/missing" && $DRY_RUN -eq 1 ]]; then
        # The real run installs the agent first, and its validation would refuse this bundle.
        die "$(cat "$work/missing"); the agent would refuse this config"
    else
        say "skip config validation ($agent_bin is not installed yet)"
        [[ -s "$work/missing" ]] && say "warning: $(cat "$work/missing"): the agent will not start without them"
    fi
    install_file "$work/agent.toml" "$ETC/agent.toml" 0640 "$SERVICE_USER"
    for f in "$BUNDLE"/*; do
        name="$(basename "$f")"
        [[ "$name" == "$BUNDLE_CONFIG" ]] && continue
        [[ "$name" == wheels && -d "$f" ]] && continue  # installed by pip above, not configuration
        if [[ ! -f "$f" ]]; then
            say "warning: ignoring $f (not a regular file)"
            continue
        fi
        case "$name" in
            *.key | *.env | *.toml) install_file "$f" "$ETC/$name" 0640 "$SERVICE_USER" ;;  # secrets: root + agent
            *) install_file "$f" "$ETC/$name" 0644 root ;;
        esac
    done
fi

# ---- 4. systemd unit -------------------------------------------------------------------
before=$CHANGED
install_file "$UNIT_SRC" "$UNIT_DIR/$UNIT" 0644 root
unit_changed=$((CHANGED - before))
if [[ $LIVE -eq 0 ]]; then
    # What `systemctl enable` does, without a running systemd.
    link="$(at "$UNIT_DIR/multi-user.target.wants/$UNIT")"
    if [[ "$(readlink "$link" 2>/dev/null || true)" == "$UNIT_DIR/$UNIT" ]]; then
        say "unchanged $link"
    elif [[ $DRY_RUN -eq 1 ]]; then
        say "[dry-run] would link $link -> $UNIT_DIR/$UNIT"
    else
        mkdir -p "$(dirname "$link")"
        ln -sfn "$UNIT_DIR/$UNIT" "$link"
        say "linked $link -> $UNIT_DIR/$UNIT"
    fi
elif [[ ! -d "$SYSTEMD_RUN_DIR" ]]; then
    # A container or chroot (an image being prepared): systemctl enables offline, and the
    # service starts with the system's next boot.
    act systemctl enable "$UNIT"
    say "systemd is not running here: $UNIT is enabled and starts at the next boot"
else
    [[ $unit_changed -eq 1 ]] && act systemctl daemon-reload
    act systemctl enable "$UNIT"
    if [[ $DO_START -eq 0 ]]; then
        say "not starting (--no-start)"
    elif [[ $CHANGED -eq 1 ]]; then
        act systemctl restart "$UNIT"
    else
        act systemctl start "$UNIT"  # no-op when already running
    fi
fi

device="$("$PYTHON" - "$(at "$ETC/agent.toml")" "${BUNDLE:+$BUNDLE/$BUNDLE_CONFIG}" <<'PY' || true
import sys, tomllib
for p in filter(None, sys.argv[1:]):
    try:
        with open(p, "rb") as f:
            print(tomllib.load(f).get("device", "DEVICE"))
        break
    except OSError:
        continue
PY
)"
if [[ $DRY_RUN -eq 1 ]]; then
    say "dry run finished: nothing was changed"
else
    say "done. Check: systemctl status lepton-agent; journalctl -u lepton-agent -f"
    say "      mosquitto_sub -h HUB -v -t 'lepton/v1/edge/${device:-DEVICE}/#'"
fi
