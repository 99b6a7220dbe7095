"""The checks ``bratskit rehearse`` makes, its report and its ``docker run``, on real
NIfTI files, folders and the runtime's own log lines (the container runs are in
tests/docker/test_rehearse.py)."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from submission.io.cases import discover_cases
from submission.io.nifti import grid_of, write_label_map
from submission.predict.runner import CaseOutput, RunReport, case_line
from submission.workbench import rehearse_checks as checks
from submission.workbench.rehearse import docker_run_args, run_user
from submission.workbench.rehearse_memory import parse_size
from submission.workbench.rehearse_report import Rehearsal
from tests.conftest import SMALL_SHAPE

GLI = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-100"]
RULES = checks.RULES


def outputs(case_factory, tmp_path, layout, ids, label=2, empty=()):
    root = case_factory(layout, ids)
    out = tmp_path / "out"
    out.mkdir()
    grid = grid_of(nib.load(next(p for p in root.rglob("*.nii.gz"))))
    for case_id in ids:
        seg = np.zeros(SMALL_SHAPE, np.uint8)
        if case_id not in empty:
            seg[10:14, 10:14, 10:14] = label
        write_label_map(seg, grid, out / f"{case_id}.nii.gz")
    return root, out


def test_one_file_per_case_in_the_scheme_passes(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2023-folders", GLI)
    assert checks.check_outputs(root, out, "2023") == ([], [])


def test_an_all_background_prediction_is_a_warning(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2023-folders", GLI, empty=GLI[1:])
    failures, warnings = checks.check_outputs(root, out, "2023")
    assert failures == []
    assert warnings == [f"{GLI[1]}.nii.gz: all background (the organisers score it 0 / inf)"]


def test_an_extra_file_a_hidden_file_a_sub_folder_and_a_missing_case_fail(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2023-folders", GLI)
    (out / f"{GLI[0]}.nii.gz").unlink()
    (out / "log.txt").write_text("x")
    (out / ".cache").write_text("x")
    (out / "sub").mkdir()
    failures, _ = checks.check_outputs(root, out, "2023")
    assert len(failures) == 4, failures
    for name in ("log.txt", ".cache", "sub"):
        assert any(f.startswith(f"{name}: unexpected entry") for f in failures), failures
    assert any(f"missing output for case {GLI[0]}" in f for f in failures)


def test_labels_outside_the_task_scheme_fail(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2023-folders", GLI, label=4)
    failures, _ = checks.check_outputs(root, out, "2023")
    assert len(failures) == 2
    assert all("labels [4] are not in the 2023 scheme" in f for f in failures)


def test_2021_labels_under_the_2024_gli_scheme_are_a_warning(case_factory, tmp_path):
    """{1, 2, 4} is valid in 2024-gli (4 = RC) but almost surely the 2021 scheme."""
    root, out = outputs(case_factory, tmp_path, "2023-folders", GLI, label=4)
    failures, warnings = checks.check_outputs(root, out, "2024-gli")
    assert failures == []
    assert len(warnings) == 1 and "looks like the 2021 scheme" in warnings[0]


def test_the_2026_rules_want_case_folders_named_with_a_case_number(case_factory, tmp_path):
    root = case_factory("2021-folders", ["BraTS2021_00001"])
    found = discover_cases(root)
    assert checks.input_problems(found, root, RULES["2025"]) == []
    (problem,) = checks.input_problems(found, root, RULES["2026"])
    assert "BraTS2021_00001" in problem and "NNNNN-NNN" in problem
    flat = case_factory("2023-flat", ["BraTS-GLI-00003-000"], root=tmp_path / "flat")
    (problem,) = checks.input_problems(discover_cases(flat), flat, RULES["2026"])
    assert "one folder per case" in problem


def test_an_input_an_arbitrary_uid_cannot_read_is_refused(case_factory, tmp_path):
    root = case_factory("2023-folders", GLI)
    (root / GLI[1]).chmod(0o700)
    (problem,) = checks.input_problems(discover_cases(root), root, RULES["2026"])
    assert problem.startswith(f"{root / GLI[1]} is not readable") and "chmod -R a+rX" in problem


def test_an_input_with_an_invalid_case_is_refused(case_factory):
    root = case_factory("2023-folders", GLI)
    (root / GLI[1] / f"{GLI[1]}-t2w.nii.gz").unlink()
    (problem,) = checks.input_problems(discover_cases(root), root, RULES["2026"])
    assert problem.startswith(f"case {GLI[1]}: expected 4 modalities, missing t2w")


def test_a_change_to_the_input_is_found(case_factory):
    root = case_factory("2023-folders", GLI)
    before = checks.snapshot(root)
    assert checks.changed(before, checks.snapshot(root)) == []
    (root / GLI[0] / ".started").write_text("")
    (root / GLI[1] / f"{GLI[1]}-t1c.nii.gz").write_bytes(b"x")
    assert checks.changed(before, checks.snapshot(root)) == [
        f"{GLI[0]}/.started",
        f"{GLI[1]}/{GLI[1]}-t1c.nii.gz",
    ]


def test_per_case_seconds_and_peak_rss_come_from_the_runtimes_own_lines(tmp_path):
    """Parsed from what bratskit predict itself logs (runner.case_line, RunReport.summary)."""
    out = CaseOutput(np.zeros((2, 2, 2), np.uint8), timings={"read": 0.1, "members": 1.0})
    run = RunReport(written=GLI, seconds={GLI[0]: 1.25, GLI[1]: 2.5}, wall_seconds=5.0)
    logs = "\n".join(
        [f"12:00:00 INFO ok {case_line(i, s, out)}" for i, s in run.seconds.items()]
        + ["12:00:00 INFO ok BraTS-GLI-09999-000 9.0 s (read 1.0)", run.summary(tmp_path)]
    )
    assert checks.case_seconds(logs, GLI) == {GLI[0]: 1.2, GLI[1]: 2.5}  # 1.25 printed 1.2
    tiny = CaseOutput(out.labels_dhw, timings={"read": 0.01, "members": 0.03})
    line = f"INFO ok {case_line(GLI[0], 0.04, tiny)}"
    assert checks.case_seconds(line, GLI) == {GLI[0]: 0.04}  # the stages, not "0.0 s"
    assert checks.runtime_peak_rss_gb(logs) > 0
    assert checks.case_seconds("a foreign image's log", GLI) == {}
    assert checks.runtime_peak_rss_gb("") is None


@pytest.mark.parametrize(
    ("code", "log", "stopped", "reason"),
    [
        (0, "", (False, False), None),
        (143, "", (True, False), "time limit: still running after 60 s"),
        (137, "", (False, True), "memory: killed at the 2026 limit of 32g"),
        (137, "", (False, False), "killed by SIGKILL (137)"),
        (1, "touch: cannot touch '/input/x': Read-only file system", (0, 0), "writes into /input"),
        (1, "mkdir: cannot create directory '/var/x': Permission denied", (0, 0), "needs root"),
        (1, "urlopen error [Errno -3] Temporary failure in name resolution", (0, 0), "network"),
        (127, "exec: predict.sh: not found", (0, 0), "does not exist (exit 127)"),
        (3, "error: no BraTS case", (False, False), "container: exited 3"),
    ],
)
def test_a_failed_run_is_diagnosed(code, log, stopped, reason):
    found = checks.diagnose(code, log, stopped, RULES["2026"], 60)
    assert (found == []) if reason is None else any(reason in f for f in found), found


@pytest.mark.parametrize(
    ("env", "packages", "version", "source"),
    [
        ({}, {"numpy": "2.2.6"}, None, "none"),
        ({"CUDA_VERSION": "12.4.1"}, {}, "12.4", "CUDA_VERSION in the image's env"),
        ({}, {"nvidia-cuda-runtime": "13.5.37", "onnxruntime-gpu": "1.31.1"}, "13.5", None),
        ({}, {"nvidia-cuda-runtime-cu12": "12.6.77"}, "12.6", "nvidia-cuda-runtime-cu12 12.6.77"),
        ({}, {"torch": "2.5.1+cu124"}, "12.4", "torch 2.5.1+cu124"),
        ({}, {"torch": "2.13.0+cpu"}, None, "none"),
        ({}, {"onnxruntime-gpu": "1.31.1"}, None, "onnxruntime-gpu: CUDA of the system"),
    ],
)
def test_the_cuda_an_image_needs(env, packages, version, source):
    need = checks.cuda_needed(env, packages)
    assert need.version == version
    assert source is None or need.source == source


def test_cuda_against_the_rules_and_the_driver():
    need = checks.CudaNeed("13.5", "nvidia-cuda-runtime 13.5.37")
    failures, warnings = checks.check_cuda(need, None, RULES["2026"])
    assert failures == [] and "minor-version compatibility" in warnings[0]
    failures, _ = checks.check_cuda(need, "12.4", RULES["2025"])
    assert failures == [
        "CUDA: the image needs 13.5 (nvidia-cuda-runtime 13.5.37); this host run CUDA up to "
        "12.4: build with CUDA 12 packages"
    ]
    failures, _ = checks.check_cuda(checks.CudaNeed("14.0", "x"), "14.1", RULES["2026"])
    assert len(failures) == 1 and "the 2026 rules run CUDA up to 13.0" in failures[0]
    assert checks.check_cuda(checks.CudaNeed(None, "none"), None, RULES["2026"]) == ([], [])


def test_the_docker_run_is_the_years_and_the_uid_arbitrary(tmp_path):
    for _ in range(50):
        user = run_user("10001:10001")
        uid, gid = (int(x) for x in user.split(":"))
        assert uid >= 20000 and gid >= 20000 and uid != 10001
    args = docker_run_args("img:1", tmp_path / "in", tmp_path / "out", RULES["2026"], user, False)
    assert args == [
        "run",
        "--network",
        "none",
        "--user",
        user,
        "--memory",
        "32g",
        "--shm-size",
        "4g",
        "-v",
        f"{tmp_path / 'in'}:/input:ro",
        "-v",
        f"{tmp_path / 'out'}:/output:rw",
        "img:1",
    ]
    assert "--gpus" in docker_run_args("i", tmp_path, tmp_path, RULES["2025"], user, True)


@pytest.mark.parametrize(
    ("text", "size"), [("512.3MiB / 16GiB", int(512.3 * 2**20)), ("1.5GB", 1.5e9), ("-", None)]
)
def test_docker_stats_sizes(text, size):
    assert parse_size(text) == size


def rehearsal(**changes) -> Rehearsal:
    fields = dict(
        image="team/brats:1",
        rules=RULES["2026"],
        labels="2024-gli",
        command=["docker", "run", "--user", "30000:30001", "team/brats:1"],
        case_ids=GLI,
        exit_code=0,
        wall_s=10.0,
        case_seconds={GLI[0]: 3.0, GLI[1]: 5.0},
        peak_memory_bytes=3 * 2**30,
        memory_source="cgroup high-water mark, page cache included",
        runtime_peak_rss_gb=1.5,
        image_bytes=2_870_000_000,
        cuda=checks.CudaNeed(None, "none"),
        host_gpu=None,
        test_cases=600,
        time_limit_s=RULES["2026"].time_limit_s,
    )
    return Rehearsal(**(fields | changes))


def test_the_report_projects_start_up_once_and_the_cases_after():
    report = rehearsal()
    report.judge("10001:10001")
    assert report.ok and report.warnings == []
    assert (report.seconds_per_case, report.startup_s) == (4.0, 2.0)
    assert report.projected_s == 2.0 + 4.0 * 600
    text = report.text()
    for line in (
        "per case: 4.00 s (from the runtime's log lines), start-up 2.0 s",
        "peak memory: 3072 MiB (cgroup high-water mark, page cache included) of 32g; "
        "the runtime's peak RSS 1.50 GB",
        "projected for 600 test cases: 40 min (time limit: 8.0 h)",
        "image size: 2.87 GB",
        "CUDA the image needs: none; host: no GPU on this host",
        "would pass",
    ):
        assert line in text.splitlines(), text
    data = json.loads(report.to_json())
    assert data["ok"] and data["projected_s"] == 2402.0 and data["cases"] == 2


def test_a_projection_past_the_limit_fails_unless_measured_on_the_cpu_for_a_gpu():
    slow = {GLI[0]: 60.0, GLI[1]: 60.0}
    report = rehearsal(case_seconds=slow, wall_s=121.0)
    report.judge("10001")
    assert report.failures == [
        "time: projected 10.0 h for 600 test cases exceeds the limit of 8.0 h"
    ]
    assert "would FAIL: 1 problem(s)" in report.text()
    gpu_image = rehearsal(case_seconds=slow, cuda=checks.CudaNeed("13.5", "wheel"))
    gpu_image.judge("10001")
    assert gpu_image.ok and any("measured on the CPU" in w for w in gpu_image.warnings)


def test_a_failed_run_is_not_projected():
    report = rehearsal(exit_code=1, case_seconds={}, wall_s=1e6)
    report.judge("10001")
    assert report.failures == [] and report.warnings == []


def test_without_a_published_limit_the_2021_per_case_figure_is_the_reference():
    report = rehearsal(rules=RULES["2025"], time_limit_s=None, case_seconds={GLI[0]: 400.0})
    report.judge("")
    assert report.ok
    assert any("over the 390 s per case" in w for w in report.warnings)
    assert any("the image's USER is root" in w and "30000:30001" in w for w in report.warnings)


def bratskit_rehearse(*args, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "submission", "rehearse", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_exit_codes_before_any_container(case_factory, tmp_path):
    """2: a bad option; 3: an input the organisers' would never be; 4: no docker. All are
    found before Docker is asked to run anything."""
    gli = case_factory("2023-folders", GLI)
    bad_task = bratskit_rehearse("img", "--input", gli, "--task", "MEN-XX")
    assert bad_task.returncode == 2 and "unknown task 'MEN-XX'" in bad_task.stderr
    assert bratskit_rehearse("img", "--input", gli, "--rules", "2024").returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    no_case = bratskit_rehearse("img", "--input", empty)
    assert no_case.returncode == 3 and "no BraTS case" in no_case.stderr
    old = case_factory("2021-folders", ["BraTS2021_00001"], root=tmp_path / "old")
    named = bratskit_rehearse("img", "--input", old, "--rules", "2026")
    assert named.returncode == 3 and "NNNNN-NNN" in named.stderr
    env = os.environ | {"PATH": str(tmp_path)}  # no docker client on it
    no_docker = bratskit_rehearse("img", "--input", gli, env=env)
    assert no_docker.returncode == 4, no_docker.stderr
    assert "no Docker engine answers" in no_docker.stderr
