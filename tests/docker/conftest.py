"""The submission image, built once per session with ``make build`` from a small real ONNX
bundle on the offline base, and run exactly as the organisers run it (CONTRACT.md 4).

Needs a Docker engine, the base image (``make base-image``) and the wheelhouse (``make
wheelhouse``); ``.ci/run`` provides all three and sets BRATSKIT_REQUIRE_DOCKER=1, so that
in CI a missing engine fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.submission.predict.onnx_bundles import channel_bundle

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("BRATSKIT_TEST_IMAGE", "bratskit:test")
BASE_IMAGE = os.environ.get("BRATSKIT_TEST_BASE_IMAGE", "bratskit/base:bookworm")
RUN_USER = "4242:4242"
# CONTRACT.md section 4: no network, 16 GB of memory, 4 GB of shared memory.
ORGANISER_FLAGS = ("--network", "none", "--memory", "16g", "--shm-size", "4g")


def _need(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("BRATSKIT_REQUIRE_DOCKER"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Image:
    tag: str
    bundle: Path


def build_image(bundle: Path, tag: str) -> Image:
    """``make build`` of ``bundle`` on the offline base (skipped, or failed in CI, without
    an engine or the base image)."""
    _need(shutil.which("docker") is not None, "the docker client is not installed")
    info = subprocess.run(["docker", "info"], capture_output=True)
    _need(info.returncode == 0, "no Docker engine answers (dockerd --bridge=none ...)")
    base = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    _need(base.returncode == 0, f"base image {BASE_IMAGE} is missing: make base-image")
    build = subprocess.run(
        ["make", "-C", str(REPO), "build", f"BUNDLE={bundle}", f"IMAGE={tag}"]
        + [f"BASE_IMAGE={BASE_IMAGE}"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    return Image(tag, bundle)


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> Image:
    """``make build`` of a 3-fold pointwise bundle; removed after the session."""
    yield build_image(channel_bundle(tmp_path_factory.mktemp("bundle")), IMAGE)
    subprocess.run(["docker", "image", "rm", "-f", IMAGE], capture_output=True)


def run_image(
    image: Image,
    *args: str,
    input_dir: Path | None = None,
    output_dir: Path | None = None,
    mounts: tuple[tuple[Path, str, str], ...] = (),
    user: str | None = RUN_USER,
    entrypoint: str | None = None,
) -> subprocess.CompletedProcess:
    """``docker run`` with the organisers' flags; ``mounts`` are (host, container, mode)."""
    cmd = ["docker", "run", "--rm", *ORGANISER_FLAGS]
    if user is not None:
        cmd += ["--user", user]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    if input_dir is not None:
        cmd += ["-v", f"{input_dir}:/input:ro"]
    if output_dir is not None:
        cmd += ["-v", f"{output_dir}:/output"]
    for host, container, mode in mounts:
        cmd += ["-v", f"{host}:{container}:{mode}"]
    return subprocess.run([*cmd, image.tag, *args], capture_output=True, text=True, timeout=900)


def output_folder(path: Path) -> Path:
    """An empty folder the container's uid may write."""
    path.mkdir(parents=True)
    uid, gid = (int(x) for x in RUN_USER.split(":"))
    os.chown(path, uid, gid)
    return path


def logs(proc: subprocess.CompletedProcess) -> str:
    """Exit code and the tails of both streams, for assertion messages."""
    out, err = proc.stdout[-4000:], proc.stderr[-4000:]
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
