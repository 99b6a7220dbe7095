#!/usr/bin/env bash
# `make build`: stage a bundle into the build context and build the submission image.
# The image's first stage verifies every sha256 of the bundle with the runtime it ships
# (`bratskit bundle --copy-to`), so an altered bundle fails the build.
#
# env: BUNDLE (required), IMAGE [bratskit:latest], BACKEND [onnx], BASE_IMAGE [Dockerfile's]
# With wheels in wheelhouse/$BACKEND (make wheelhouse) the build runs with --network none.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${BUNDLE:-}"
IMAGE="${IMAGE:-bratskit:latest}"
BACKEND="${BACKEND:-onnx}"
BASE_IMAGE="${BASE_IMAGE:-}"

fail() { echo "error: $2" >&2; exit "$1"; }
[[ -n "$BUNDLE" ]] || fail 2 "give the bundle: make build BUNDLE=dir (from bratskit export)"
[[ -f "$BUNDLE/manifest.json" ]] || fail 3 "$BUNDLE is not a bundle: it has no manifest.json"
[[ -f "docker/requirements-$BACKEND.txt" ]] || fail 2 "unknown BACKEND $BACKEND: onnx or torchscript"
docker info >/dev/null 2>&1 || fail 4 "no Docker engine answers (start dockerd)"

rm -rf build/image
mkdir -p build/image wheelhouse
touch wheelhouse/.keep
cp -rL "$BUNDLE" build/image/bundle

read -r scheme task sha < <(python3 - "$BUNDLE/manifest.json" <<'PY'
import hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
manifest = json.loads(raw)
print(manifest.get("label_scheme", "2021"), manifest.get("task") or "gli-2021",
      hashlib.sha256(raw).hexdigest())
PY
)
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' submission/__init__.py)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
args=(
    --build-arg "BACKEND=$BACKEND"
    --build-arg "VERSION=$version"
    --build-arg "BUNDLE_SHA256=$sha"
    --build-arg "LABEL_SCHEME=$scheme"
    --build-arg "TASK=$task"
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    --build-arg "REVISION=$revision"
    --tag "$IMAGE"
)
[[ -n "$BASE_IMAGE" ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if compgen -G "wheelhouse/$BACKEND/*.whl" >/dev/null; then
    args+=(--network none)
    echo "offline build: Python packages from wheelhouse/$BACKEND"
fi
echo "building $IMAGE: bundle $BUNDLE (manifest sha256 ${sha:0:12}, task $task, labels $scheme)," \
    "backend $BACKEND, base ${BASE_IMAGE:-python:3.11-slim-bookworm (default)}"
docker build "${args[@]}" .
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE: $(awk -v b="$size" 'BEGIN { printf "%.2f GB", b / 1e9 }')"
