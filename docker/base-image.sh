#!/usr/bin/env bash
# Build the offline base image (default bratskit/base:bookworm) with no container registry:
# debootstrap a minimal Debian bookworm with Python 3.11 from a Debian mirror, then
# `docker import` it. For air-gapped sites (point MIRROR at a local mirror) and for
# machines that can reach Debian's packages but no registry. Needs root and docker.
#
#   docker/base-image.sh [TAG]        (env: MIRROR, SUITE, FORCE=1 to rebuild)
set -euo pipefail
TAG="${1:-bratskit/base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

if [[ -z "${FORCE:-}" ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already exists (FORCE=1 rebuilds it)"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "error: debootstrap is missing: apt-get install -y debootstrap" >&2
    exit 4
}
[[ $(id -u) -eq 0 ]] || { echo "error: debootstrap needs root" >&2; exit 4; }

root=$(mktemp -d /tmp/bratskit-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $SUITE from $MIRROR into $root (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    echo "error: debootstrap failed (full log: $root.log)" >&2
    exit 1
}
rm -f "$root.log"
# What an image needs no copy of: package caches and lists, documentation, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*
# Runtime mounts, not image content.
rm -rf "${root:?}"/dev/* "$root"/proc/* "$root"/sys/*
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $SUITE minbase + python3 ($MIRROR)" \
    - "$TAG"
docker image ls "$TAG"
