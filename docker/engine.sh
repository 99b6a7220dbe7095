#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io (and debootstrap, for
# `make base-image`) when missing, and start dockerd without bridge networking (the
# containers run with --network none anyway; machines without iptables need this).
# Needs root when it has to install or start anything. Used by .ci/run.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    echo "Docker engine: $(docker info --format '{{.ServerVersion}}')"
    exit 0
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
log=/tmp/bratskit-dockerd.log
echo "starting dockerd (log: $log)"
setsid dockerd --bridge=none --iptables=false >"$log" 2>&1 </dev/null &
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "Docker engine: $(docker info --format '{{.ServerVersion}}')"
        exit 0
    fi
    sleep 1
done
tail -20 "$log" >&2
echo "error: dockerd did not answer within 60 s" >&2
exit 1
