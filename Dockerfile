# The BraTS submission image: submission/ (the runtime), one verified bundle and its
# inference backend; no training code, no torch (unless BACKEND=torchscript), no network
# needed at run time. Build it with `make build` (docker/build.sh), which stages the bundle
# into build/image/bundle and passes the labels; see README "Submitting to BraTS".
#
#   BASE_IMAGE  any Debian-like image with Python 3.10+ and its venv module. The default
#               is the public python image; `make base-image` builds bratskit/base:bookworm
#               with no registry, for air-gapped sites.
#   BACKEND     onnx (ONNX Runtime GPU, with CUDA and cuDNN) or torchscript (torch).
#
# Written for both the classic builder and BuildKit: no RUN --mount, no COPY --chmod.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- stage 1: the Python environment, and the bundle verified with it -----------------
FROM ${BASE_IMAGE} AS runtime-env
ARG BACKEND=onnx
COPY docker/requirements-${BACKEND}.txt /build/requirements.txt
COPY wheelhouse/ /build/wheelhouse/
# With wheels in the wheelhouse (make wheelhouse) nothing is fetched: --no-index.
RUN set -eu; \
    python3 -m venv /opt/bratskit/venv; \
    if ls /build/wheelhouse/${BACKEND}/*.whl >/dev/null 2>&1; then \
        from="--no-index --find-links /build/wheelhouse/${BACKEND}"; \
    else \
        from=""; \
    fi; \
    /opt/bratskit/venv/bin/pip install --no-cache-dir --disable-pip-version-check $from \
        -r /build/requirements.txt; \
    /opt/bratskit/venv/bin/pip uninstall -q -y pip setuptools; \
    find /opt/bratskit/venv -path '*/nvidia/*' \( -name include -o -name '*.a' \) -prune \
        -exec rm -rf {} +; \
    chmod -R a+rX,go-w /opt/bratskit/venv
COPY submission/ /opt/bratskit/app/submission/
COPY build/image/bundle/ /build/bundle/
# Verify every sha256 and keep only the files this backend runs.
RUN set -eu; \
    case "${BACKEND}" in onnx) formats=onnx,onnx-fp16 ;; *) formats=${BACKEND} ;; esac; \
    PYTHONPATH=/opt/bratskit/app /opt/bratskit/venv/bin/python -m submission bundle \
        /build/bundle --formats "$formats" --copy-to /opt/bratskit/bundle; \
    /opt/bratskit/venv/bin/python -m compileall -q /opt/bratskit/app; \
    chmod -R a+rX,go-w /opt/bratskit/app /opt/bratskit/bundle

# --- stage 2: the image ---------------------------------------------------------------
FROM ${BASE_IMAGE}
# Any uid must read everything and write nothing outside /tmp: files world-readable (set
# in the first stage: a chmod here would copy every file into one more layer), no
# world-writable folder but /tmp, and a default non-root user without a home. The largest
# layer first, so that a new bundle or code change reuses the cached environment.
COPY --from=runtime-env /opt/bratskit/venv/ /opt/bratskit/venv/
RUN set -eu; \
    for d in /var/tmp /run/lock /var/lock; do \
        if [ -d "$d" ] && [ ! -L "$d" ]; then chmod 0755 "$d"; fi; \
    done; \
    chmod 1777 /tmp; \
    mkdir -p /input /output; \
    groupadd --gid 10001 bratskit; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin bratskit
COPY --from=runtime-env /opt/bratskit/app/ /opt/bratskit/app/
COPY --from=runtime-env /opt/bratskit/bundle/ /opt/bratskit/bundle/
# Mode 0755 from the repository (git keeps the executable bit).
COPY entrypoint.sh /opt/bratskit/entrypoint.sh

ARG VERSION=0.0.0
ENV PATH=/opt/bratskit/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/bratskit/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    BRATSKIT_BUNDLE=/opt/bratskit/bundle \
    BRATSKIT_VERSION=${VERSION}
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/opt/bratskit/entrypoint.sh"]

# Last, so that labels that change with every build leave the layers above cached.
ARG BACKEND=onnx
ARG BUNDLE_SHA256=unknown
ARG LABEL_SCHEME=2021
# The bundle's BraTS task (submission/tasks.py): its labels, channels and names are the
# bundle's defaults, so a single-task image needs no flag.
ARG TASK=gli-2021
ARG CREATED=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="bratskit BraTS submission" \
      org.opencontainers.image.description="BraTS tumour segmentation: /input cases to /output/<case-id>.nii.gz" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.bratskit.bundle.sha256="${BUNDLE_SHA256}" \
      org.bratskit.label-scheme="${LABEL_SCHEME}" \
      org.bratskit.task="${TASK}" \
      org.bratskit.backend="${BACKEND}"
