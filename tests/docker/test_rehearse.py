"""``bratskit rehearse`` with the real container: the test image passes, and images that
write an extra file, need root or write into ``/input`` fail naming the reason (issue 13,
"A dress rehearsal of the organisers' run")."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.conftest import write_case
from tests.docker.conftest import REPO

IDS = ["BraTS-GLI-00041-000", "BraTS-GLI-00042-100"]
# Entrypoints of images that make the organisers' run fail; each wraps the real one.
ENTRY = "/opt/bratskit/entrypoint.sh"
BAD = {
    "extra-file": (None, f"{ENTRY} && echo done > /output/notes.txt", "notes.txt: unexpected"),
    "needs-root": ("root", f"mkdir -p /var/cache/weights && {ENTRY}", "needs root"),
    "writes-input": (None, f"touch /input/.started && {ENTRY}", "writes into /input"),
}


def rehearse(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "submission", "rehearse", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def cases(tmp_path_factory, image):
    """Two 2023-layout cases (their ids end in NNNNN-NNN, as the 2026 rules want)."""
    root = tmp_path_factory.mktemp("rehearse-in")
    root.chmod(0o755)  # the organisers' input is readable by the run's uid
    for i, case_id in enumerate(IDS):
        write_case(root / case_id, case_id, "2023", seed=i)
    return root


def test_the_test_image_would_pass(image, cases):
    proc = rehearse(image.tag, "--input", str(cases), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["failures"] == [] and report["exit_code"] == 0
    assert report["cases"] == 2 and report["seconds_per_case"] > 0
    assert report["peak_memory_bytes"] is None or report["peak_memory_bytes"] > 2**20
    assert report["image_bytes"] > 10 * 2**20
    assert report["projected_s"] == pytest.approx(report["seconds_per_case"] * 600)
    text = rehearse(image.tag, "--input", str(cases), "--rules", "2025")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "would pass" in text.stdout and "image size:" in text.stdout


def test_a_wrong_label_scheme_fails(image, cases):
    proc = rehearse(image.tag, "--input", str(cases), "--task", "MEN")  # image writes 2021
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "labels [4] are not in the 2023 scheme" in proc.stdout


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_image_fails_naming_the_reason(image, cases, tmp_path, kind):
    user, command, reason = BAD[kind]
    lines = [f"FROM {image.tag}"]
    lines += [f"USER {user}"] if user else []
    lines += [f'ENTRYPOINT ["/bin/sh", "-c", "{command}"]']
    (tmp_path / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"bratskit-rehearse-{kind}:{uuid.uuid4().hex[:8]}"
    build = ["docker", "build", "--network", "none", "-q", "-t", tag, str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True)
    try:
        proc = rehearse(tag, "--input", str(cases))
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert reason in proc.stdout, proc.stdout
    assert "would FAIL" in proc.stdout
    assert sorted(p.name for p in cases.iterdir()) == IDS  # the input is untouched
