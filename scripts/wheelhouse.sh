#!/usr/bin/env bash
# The wheelhouse the images and the Pi bundle install from (`pip install --no-index`):
# this repo's lepton-edge wheel plus every dependency of the extras asked for, as binary
# wheels for CPython 3.11 on Linux (the images' and Raspberry Pi OS bookworm's Python).
#
#   bash scripts/wheelhouse.sh                         # build/wheelhouse: x86_64, all extras
#   bash scripts/wheelhouse.sh --arch aarch64 --extras edge --out build/wheelhouse-aarch64
#
# torch is the CPU build: taken from pip's configured sources when they offer a +cpu file for
# this version (as a local wheel cache does), else from PyTorch's CPU index; the script fails
# if a CUDA build or nvidia-* wheel ends up in the wheelhouse. Reruns reuse what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH="$(uname -m)"
EXTRAS="edge,hub,cloud,demo"
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
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "wheelhouse: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { printf 'wheelhouse: %s\n' "$*"; }
mkdir -p "$OUT"
# Debian bookworm has glibc 2.36: every manylinux tag up to 2.36 runs there (pip does not
# expand a --platform to the older tags itself).
target=(--only-binary=:all: --implementation cp --python-version 3.11)
for glibc in $(seq 36 -1 17); do target+=(--platform "manylinux_2_${glibc}_${ARCH}"); done
target+=(--platform "manylinux2014_${ARCH}")
[[ "$ARCH" == x86_64 ]] && target+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
t0=$SECONDS

# 1. This repo, as a wheel (the version never changes between commits, so always rebuild).
# A fixed SOURCE_DATE_EPOCH makes the wheel byte-identical for identical sources, so image
# builds reuse their cached layers when nothing changed.
# The old file is kept when the new one is identical: image builds key their cache on it.
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
SOURCE_DATE_EPOCH=315532800 timeout 300 "$PY" -m pip wheel -q --no-deps --wheel-dir "$fresh" .
for w in "$fresh"/lepton_edge-*.whl; do
    cmp -s "$w" "$OUT/$(basename "$w")" || { rm -f "$OUT"/lepton_edge-*.whl; cp "$w" "$OUT/"; }
done
wheel="$(ls "$OUT"/lepton_edge-*.whl)"

# 2. torch, CPU build, only when an extra needs it.
pins=()
if [[ ",$EXTRAS," == *,cloud,* ]]; then
    pins+=("torch==${TORCH_VERSION}")
    if ! compgen -G "$OUT/torch-${TORCH_VERSION}+cpu-*_${ARCH}.whl" >/dev/null; then
        rm -f "$OUT"/torch-*.whl
        timeout 900 "$PY" -m pip download -q --no-deps "${target[@]}" -d "$OUT" "torch==${TORCH_VERSION}" || true
        if ! compgen -G "$OUT/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then
            rm -f "$OUT"/torch-*.whl
            say "no CPU torch ${TORCH_VERSION} in pip's sources; taking it from ${TORCH_CPU_INDEX}"
            timeout 900 "$PY" -m pip download -q --no-deps "${target[@]}" --index-url "$TORCH_CPU_INDEX" \
                -d "$OUT" "torch==${TORCH_VERSION}"
        fi
    fi
fi

# 3. Everything else; torch stays pinned (the extras' range admits newer CUDA builds) and
#    --find-links makes the CPU file above the candidate pip picks (its +cpu local version
#    sorts above the index's plain one).
timeout 900 "$PY" -m pip download -q "${target[@]}" --find-links "$OUT" -d "$OUT" "${wheel}[${EXTRAS}]" ${pins[@]+"${pins[@]}"}

if compgen -G "$OUT/nvidia_*.whl" >/dev/null || compgen -G "$OUT/torch-*" | grep -qv '+cpu'; then
    echo "wheelhouse: error: a CUDA build of torch or nvidia-* wheels in $OUT; remove them and rerun" >&2
    exit 1
fi
say "$OUT: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1), for cp311 ${ARCH}, extras ${EXTRAS} ($((SECONDS - t0)) s)"
