#!/usr/bin/env bash
# The wheelhouse the images and the Pi bundle install from (`pip install --no-index`), as binary
# wheels for CPython 3.11 on Linux (the images' and Raspberry Pi OS bookworm's Python):
#   OUT/lepton/        this repo's lepton-edge wheel (rebuilt on every run)
#   OUT/deps/          every dependency of the extras asked for
#   OUT/deps/requirements/EXTRAS.txt   what `lepton-edge[EXTRAS]` installs, pinned, for each
#                      extras set an image uses (native architecture only)
# The Dockerfiles install deps/ first and the lepton-edge wheel after it, so a code change
# rebuilds only the small last layer. Files are replaced only when their content changes
# (image builds key their layer cache on them), so reruns reuse everything.
#
#   bash scripts/wheelhouse.sh                         # build/wheelhouse: x86_64, all extras
#   bash scripts/wheelhouse.sh --arch aarch64 --extras edge --out build/wheelhouse-aarch64
#
# torch is the CPU build: taken from pip's configured sources when they offer a +cpu file for
# this version (as a local wheel cache does), else from PyTorch's CPU index; the script fails
# if a CUDA build or nvidia-* wheel ends up in the wheelhouse.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH="$(uname -m)"
EXTRAS="edge,hub,cloud,demo,console"
IMAGE_EXTRAS=("edge" "edge,demo" "hub" "cloud" "hub,console,demo")  # Dockerfile defaults + compose's agents, console
if [[ "${LEPTON_IMAGE_DATA:-0}" == 1 ]]; then  # images for the scenario tasks: their data (lepton_tasks)
    EXTRAS="edge,hub,cloud,demo,console,data"
    IMAGE_EXTRAS+=("edge,demo,data" "cloud,data")
fi
OUT="build/wheelhouse"
TORCH_VERSION="${LEPTON_TORCH_VERSION:-2.13.0}"
TORCH_CPU_INDEX="${LEPTON_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PY="${PYTHON:-}"
[[ -n "$PY" ]] || { [[ -x .venv/bin/python ]] && PY=.venv/bin/python; } || PY=python3

while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --extras) EXTRAS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "wheelhouse: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { printf 'wheelhouse: %s\n' "$*"; }
# Copy SRC to DEST only when DEST is missing or differs (keeps mtimes, so layer caches hold).
put() { cmp -s "$1" "$2" || cp "$1" "$2"; }
mkdir -p "$OUT/lepton" "$OUT/deps/requirements"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
# Debian bookworm has glibc 2.36: every manylinux tag up to 2.36 runs there (pip does not
# expand a --platform to the older tags itself).
target=(--only-binary=:all: --implementation cp --python-version 3.11)
for glibc in $(seq 36 -1 17); do target+=(--platform "manylinux_2_${glibc}_${ARCH}"); done
target+=(--platform "manylinux2014_${ARCH}")
[[ "$ARCH" == x86_64 ]] && target+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
t0=$SECONDS

# 1. This repo, as a wheel; a fixed SOURCE_DATE_EPOCH makes it byte-identical for identical sources.
mkdir "$stage/lepton"
SOURCE_DATE_EPOCH=315532800 timeout 300 "$PY" -m pip wheel -q --no-deps --wheel-dir "$stage/lepton" . \
    >"$stage/wheel.log" 2>&1 || { cat "$stage/wheel.log" >&2; exit 1; }
for w in "$stage"/lepton/lepton_edge-*.whl; do
    if ! cmp -s "$w" "$OUT/lepton/$(basename "$w")"; then rm -f "$OUT"/lepton/lepton_edge-*.whl; cp "$w" "$OUT/lepton/"; fi
done
wheel="$(ls "$OUT"/lepton/lepton_edge-*.whl)"

# 2. torch, CPU build, only when an extra needs it.
pins=()
if [[ ",$EXTRAS," == *,cloud,* ]]; then
    pins+=("torch==${TORCH_VERSION}")
    if ! compgen -G "$OUT/deps/torch-${TORCH_VERSION}+cpu-*_${ARCH}.whl" >/dev/null; then
        rm -f "$OUT"/deps/torch-*.whl
        timeout 900 "$PY" -m pip download -q --no-deps "${target[@]}" -d "$OUT/deps" "torch==${TORCH_VERSION}" 2>&1 | quiet
        if ! compgen -G "$OUT/deps/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then
            rm -f "$OUT"/deps/torch-*.whl
            say "no CPU torch ${TORCH_VERSION} in pip's sources; taking it from ${TORCH_CPU_INDEX}"
            timeout 900 "$PY" -m pip download -q --no-deps "${target[@]}" --index-url "$TORCH_CPU_INDEX" \
                -d "$OUT/deps" "torch==${TORCH_VERSION}"
        fi
    fi
fi

# 3. Everything else, staged and then added: a file already there stays untouched. torch stays
#    pinned (the extras' range admits newer CUDA builds) and --find-links makes the CPU file the
#    candidate pip picks (its +cpu local version sorts above the index's plain one).
timeout 900 "$PY" -m pip download -q "${target[@]}" --find-links "$OUT/deps" -d "$stage/deps" \
    "${wheel}[${EXTRAS}]" ${pins[@]+"${pins[@]}"} 2>&1 | quiet
for w in "$stage"/deps/*.whl; do
    [[ "$(basename "$w")" == lepton_edge-* ]] || [[ -e "$OUT/deps/$(basename "$w")" ]] || cp "$w" "$OUT/deps/"
done
if compgen -G "$OUT/deps/nvidia_*.whl" >/dev/null || compgen -G "$OUT/deps/torch-*" | grep -qv '+cpu'; then
    echo "wheelhouse: error: a CUDA build of torch or nvidia-* wheels in $OUT/deps; remove them and rerun" >&2
    exit 1
fi

# 4. What each image's extras install, resolved offline against the wheelhouse.
if [[ "$ARCH" == "$(uname -m)" ]]; then
    for extras in "${IMAGE_EXTRAS[@]}"; do
        [[ ",$EXTRAS," == *",${extras%%,*},"* ]] || continue
        timeout 300 "$PY" -m pip install -q --dry-run --ignore-installed --no-index --find-links "$OUT/deps" \
            --find-links "$OUT/lepton" --report "$stage/report.json" "lepton-edge[${extras}]" 2>&1 | quiet
        "$PY" - "$stage/report.json" >"$stage/req.txt" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
for i in sorted(items, key=lambda i: i["metadata"]["name"].lower()):
    if i["metadata"]["name"] != "lepton-edge":
        print(f'{i["metadata"]["name"]}=={i["metadata"]["version"]}')
PY
        put "$stage/req.txt" "$OUT/deps/requirements/${extras}.txt"
    done
fi
say "$OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1), for cp311 ${ARCH}, extras ${EXTRAS} ($((SECONDS - t0)) s)"
