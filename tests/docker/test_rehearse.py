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
# kind: (USER, entrypoint command, rehearse's extra arguments, the reason it must name)
ENTRY = "/opt/bratskit/entrypoint.sh"
BAD = {
    "extra-file": (None, f"{ENTRY} && echo done > /output/notes.txt", (), "notes.txt: unexpected"),
    "needs-root": ("root", f"mkdir -p /var/cache/weights && {ENTRY}", (), "needs root"),
    "writes-input": (None, f"touch /input/.started && {ENTRY}", (), "writes into /input"),
    "too-slow": (None, "sleep 600", ("--time-limit", "5"), "time limit: still running after 5 s"),
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
    print(proc.stdout)  # the figures, for -s
    assert report["ok"] and report["failures"] == [] and report["exit_code"] == 0
    assert report["rules"] == "2026" and report["labels"] == "2021"  # the image's label
    assert report["cases"] == 2 and sorted(report["case_seconds"]) == IDS
    assert report["timing_source"] == "the runtime's log lines"
    assert 0 < report["seconds_per_case"] < report["wall_s"]
    assert report["projected_s"] == pytest.approx(
        report["startup_s"] + report["seconds_per_case"] * 600
    )
    assert report["peak_memory_bytes"] > 16 * 2**20, report["memory_source"]
    assert report["image_bytes"] > 10 * 2**20
    assert report["cuda_needed"] and report["cuda_needed"].startswith("13.")
    command = report["command"]
    assert command[:4] == ["docker", "run", "--network", "none"]
    assert command[command.index("--user") + 1].split(":")[0] not in ("0", "10001")
    assert "--memory" in command and command[command.index("--memory") + 1] == "32g"
    text = rehearse(image.tag, "--input", str(cases), "--rules", "2025")
    assert text.returncode == 0, text.stdout + text.stderr
    print(text.stdout)
    for start in ("per case: ", "peak memory: ", "image size: ", "projected for 600 "):
        assert any(line.startswith(start) for line in text.stdout.splitlines()), text.stdout
    assert "--memory 16g --shm-size 4g" in text.stdout and text.stdout.endswith("would pass\n")


def test_a_wrong_label_scheme_fails(image, cases):
    proc = rehearse(image.tag, "--input", str(cases), "--task", "MEN")  # image writes 2021
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "labels [4] are not in the 2023 scheme" in proc.stdout


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_image_fails_naming_the_reason(image, cases, tmp_path, kind):
    user, command, args, reason = BAD[kind]
    lines = [f"FROM {image.tag}"]
    lines += [f"USER {user}"] if user else []
    lines += [f'ENTRYPOINT ["/bin/sh", "-c", "{command}"]']
    (tmp_path / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"bratskit-rehearse-{kind}:{uuid.uuid4().hex[:8]}"
    build = ["docker", "build", "--network", "none", "-q", "-t", tag, str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True)
    try:
        proc = rehearse(tag, "--input", str(cases), *args)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
    print(proc.stdout)  # the report, for -s
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAIL  ")]
    assert any(reason in line for line in failed), proc.stdout
    assert "would FAIL" in proc.stdout
    assert sorted(p.name for p in cases.iterdir()) == IDS  # the input is untouched
    if user == "root":
        assert "warning: the image's USER is root" in proc.stdout
