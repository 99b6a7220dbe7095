#!/bin/bash
# The submission image's fixed contract (CONTRACT.md sections 1 and 4). Every form ends in
# `bratskit predict` with the bundle baked into the image ($BRATSKIT_BUNDLE):
#
#   (no arguments)                  predict /input to /output with the bundle's defaults
#   --flag value ...                the same, with predict's flags overriding the defaults,
#                                   e.g. `docker run ... IMAGE --labels 2023 --et-threshold 600`
#   infer --data_path D --parameters_file F --output_path O [--flag value ...]
#                                   the MLCube form: case folders in D, outputs to O; F is a
#                                   YAML file of predict options, may be empty or absent
#   hotfix                          MLCube no-op
#   anything else                   passed to `bratskit` (e.g. validate, bundle, --help)
#
# Exit codes are bratskit's (submission/exit_codes.py, the README's table), for predict:
# 0 every case written; 1 some case failed (the others are written, each failure named on
# stderr); 2 bad flag or value; 3 input, output or bundle unusable (missing, empty, not
# writable, altered, in use by another run); 4 no backend can run the bundle (or the
# sub-command is unavailable); 130 SIGINT; 143 SIGTERM (`docker stop`): the write in progress
# is finished, nothing temporary is left (python is exec'd, so it gets the signal itself).
set -euo pipefail

BUNDLE="${BRATSKIT_BUNDLE:-/opt/bratskit/bundle}"

log() { printf '%s entrypoint: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

bratskit() { exec python -m submission "$@"; }

predict() {
    local input="$1" output="$2"
    shift 2
    log "bratskit ${BRATSKIT_VERSION:-?} as uid $(id -u):$(id -g): predict $input -> $output" \
        "with $BUNDLE${*:+, options: $*}"
    bratskit predict --input "$input" --output "$output" --bundle "$BUNDLE" "$@"
}

infer() {
    local data="" params="" output="" extra=()
    while (($#)); do
        case "$1" in
        --data_path | --data-path) data="${2-}"; shift 2 || break ;;
        --data_path=* | --data-path=*) data="${1#*=}"; shift ;;
        --parameters_file | --parameters-file) params="${2-}"; shift 2 || break ;;
        --parameters_file=* | --parameters-file=*) params="${1#*=}"; shift ;;
        --output_path | --output-path) output="${2-}"; shift 2 || break ;;
        --output_path=* | --output-path=*) output="${1#*=}"; shift ;;
        *) extra+=("$1"); shift ;;
        esac
    done
    if [[ -z "$data" || -z "$output" ]]; then
        log "usage: infer --data_path DIR --output_path DIR [--parameters_file FILE]"
        exit 2
    fi
    if [[ -n "$params" && -f "$params" ]]; then
        extra+=(--parameters "$params")
    elif [[ -n "$params" ]]; then
        log "parameters file $params is absent: using the bundle's defaults"
    fi
    predict "$data" "$output" ${extra[@]+"${extra[@]}"}
}

case "${1-}" in
"") predict /input /output ;;
-h | --help | --version) bratskit "$@" ;;
-*) predict /input /output "$@" ;;
infer) shift; infer "$@" ;;
hotfix) log "hotfix: nothing to do"; exit 0 ;;
*) bratskit "$@" ;;
esac
