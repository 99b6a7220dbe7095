#!/usr/bin/env bash
# `make run`: run the image exactly as the organisers do (CONTRACT.md section 4): no
# network, input read-only, 16 GB RAM, 4 GB shared memory, a non-root uid, the GPU when
# there is one. Runs as the caller's uid:gid; a root caller runs it as 4242:4242 (an
# arbitrary uid, as the organisers' orchestrator does), which is given the output folder.
#
# env: IN, OUT (required), IMAGE [bratskit:latest], ARGS (more arguments for the image)
set -euo pipefail
IN="${IN:-}"
OUT="${OUT:-}"
IMAGE="${IMAGE:-bratskit:latest}"
[[ -n "$IN" && -n "$OUT" ]] || { echo "usage: make run IN=dir OUT=dir [ARGS='--labels 2023']" >&2; exit 2; }
[[ -d "$IN" ]] || { echo "error: input folder $IN does not exist" >&2; exit 3; }
mkdir -p "$OUT"
user="$(id -u):$(id -g)"
if [[ $(id -u) -eq 0 ]]; then
    user=4242:4242
    chown 4242:4242 "$OUT"
fi
gpus=()
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    gpus=(--gpus all)
fi
set -x
# shellcheck disable=SC2086  # ARGS is a list of words
exec docker run --rm ${gpus[@]+"${gpus[@]}"} --network none --user "$user" \
    -v "$(realpath "$IN")":/input:ro -v "$(realpath "$OUT")":/output \
    --memory 16g --shm-size 4g "$IMAGE" ${ARGS:-}
