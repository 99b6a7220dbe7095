"""The real submission container, run as the organisers run it: arbitrary non-root uid,
no network, read-only input, 16 GB memory, 4 GB shared memory (CONTRACT.md 1, 3, 4)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import MODALITIES, modality_filename
from submission.workbench.validate import validate_output
from tests.conftest import real_inputs, write_nifti
from tests.docker.conftest import RUN_USER, logs, output_folder, run_image

pytestmark = pytest.mark.docker


def assert_valid(input_dir: Path, output_dir: Path, scheme: str, ids: list[str]) -> None:
    """Exactly ``<id>.nii.gz`` per case, nothing else (hidden files included), and the
    organisers' checks pass (grid, affine, dtype, labels of ``scheme``)."""
    assert sorted(p.name for p in output_dir.iterdir()) == sorted(f"{i}.nii.gz" for i in ids)
    report = validate_output(input_dir, output_dir, scheme)
    assert report.ok, "\n".join(report.lines())


def label_values(path: Path) -> set[int]:
    return set(np.unique(np.asarray(nib.load(path).dataobj)).tolist())


@pytest.mark.parametrize(
    ("layout", "ids", "args", "scheme"),
    [
        ("2021-flat", ["BraTS2021_00042"], [], "2021"),
        ("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"], [], "2021"),
        (
            "2023-folders",
            ["BraTS-GLI-00003-000", "BraTS-GLI-00004-100"],
            ["--labels", "2023", "--et-threshold", "5"],
            "2023",
        ),
    ],
)
def test_every_input_layout_gives_one_valid_file_per_case(
    image, case_factory, tmp_path, layout, ids, args, scheme
):
    inp = case_factory(layout, ids=ids)
    if layout == "2021-folders":  # training layout: the reference must be ignored
        write_nifti(inp / ids[0] / f"{ids[0]}_seg.nii.gz", np.zeros((32, 32, 24), np.uint8))
    out = output_folder(tmp_path / "out")
    proc = run_image(image, *args, input_dir=inp, output_dir=out)
    assert proc.returncode == 0, logs(proc)
    assert_valid(inp, out, scheme, ids)
    written = set().union(*(label_values(out / f"{i}.nii.gz") for i in ids))
    assert written - {0} and written <= ({0, 1, 2, 3} if scheme == "2023" else {0, 1, 2, 4})
    assert f"options: {' '.join(args)}" in proc.stderr if args else "options" not in proc.stderr


def test_real_cases_in_both_label_schemes(image, real_data, tmp_path):
    """BraTS-GLI-00001-000 as a 2023 case with --labels 2023, and TCGA-FG-6692 arranged as
    a 2021 flat case with the bundle's 2021 scheme."""
    gli, tcga = real_inputs(real_data, tmp_path)
    for inp, case_id, args, scheme in (
        (gli, "BraTS-GLI-00001-000", ["--labels", "2023"], "2023"),
        (tcga, "TCGA-FG-6692", [], "2021"),
    ):
        out = output_folder(tmp_path / f"out-{scheme}")
        proc = run_image(image, *args, input_dir=inp, output_dir=out)
        assert proc.returncode == 0, logs(proc)
        assert_valid(inp, out, scheme, [case_id])
        assert f"ok {case_id}" in proc.stderr


def _mlcube_run(image, case_factory, tmp_path, parameters: str | None, *extra: str):
    data = case_factory("2023-folders", ids=["BraTS-GLI-00005-000"])
    params = tmp_path / "params"
    params.mkdir()
    if parameters is not None:
        (params / "parameters.yaml").write_text(parameters)
    out = output_folder(tmp_path / "predictions")
    proc = run_image(
        image,
        "infer",
        "--data_path",
        "/mlcube_io0",
        "--parameters_file",
        "/mlcube_io1/parameters.yaml",
        "--output_path",
        "/mlcube_io2",
        *extra,
        mounts=(
            (data, "/mlcube_io0", "ro"),
            (params, "/mlcube_io1", "ro"),
            (out, "/mlcube_io2", "rw"),
        ),
    )
    return data, out, proc


def test_mlcube_infer_reads_the_parameters_file(image, case_factory, tmp_path):
    data, out, proc = _mlcube_run(
        image, case_factory, tmp_path, "labels: 2023\net_threshold: 0\nmodel_name: other\n"
    )
    assert proc.returncode == 0, logs(proc)
    assert_valid(data, out, "2023", ["BraTS-GLI-00005-000"])
    assert 3 in label_values(out / "BraTS-GLI-00005-000.nii.gz")  # ET in the 2023 scheme
    assert "ignoring 'model_name'" in proc.stderr


@pytest.mark.parametrize("parameters", ["", None], ids=["empty", "absent"])
def test_mlcube_infer_with_an_empty_or_absent_parameters_file(
    image, case_factory, tmp_path, parameters
):
    data, out, proc = _mlcube_run(image, case_factory, tmp_path, parameters)
    assert proc.returncode == 0, logs(proc)
    assert_valid(data, out, "2021", ["BraTS-GLI-00005-000"])  # the bundle's scheme
    assert 4 in label_values(out / "BraTS-GLI-00005-000.nii.gz")


def test_mlcube_hotfix_is_a_no_op(image):
    proc = run_image(image, "hotfix")
    assert proc.returncode == 0, logs(proc)
    assert "hotfix: nothing to do" in proc.stderr


def test_a_case_missing_a_modality_fails_alone(image, case_factory, tmp_path):
    ids = ["BraTS2021_00011", "BraTS2021_00012", "BraTS2021_00013"]
    inp = case_factory("2021-folders", ids=ids)
    (inp / ids[1] / modality_filename(ids[1], MODALITIES[1], "2021")).unlink()
    out = output_folder(tmp_path / "out")
    proc = run_image(image, input_dir=inp, output_dir=out)
    assert proc.returncode == 1, logs(proc)
    assert sorted(p.name for p in out.iterdir()) == [f"{ids[0]}.nii.gz", f"{ids[2]}.nii.gz"]
    assert f"FAILED {ids[1]}" in proc.stderr


def test_empty_input_is_an_input_error(image, tmp_path):
    inp = tmp_path / "empty"
    inp.mkdir()
    out = output_folder(tmp_path / "out")
    proc = run_image(image, input_dir=inp, output_dir=out)
    assert proc.returncode == 3, logs(proc)
    assert "no brats case in /input" in proc.stderr.lower()
    assert list(out.iterdir()) == []


def test_unwritable_output_is_an_output_error(image, case_factory, tmp_path):
    inp = case_factory("2021-flat", ids=["BraTS2021_00042"])
    out = tmp_path / "root-owned"
    out.mkdir(mode=0o755)  # owned by the test's user (root in CI), not by 4242
    proc = run_image(image, input_dir=inp, output_dir=out)
    assert proc.returncode == 3, logs(proc)
    assert "not writable" in proc.stderr
    assert list(out.iterdir()) == []


def test_labels_name_version_bundle_and_scheme(image):
    raw = subprocess.run(
        ["docker", "image", "inspect", image.tag], capture_output=True, text=True, check=True
    )
    config = json.loads(raw.stdout)[0]["Config"]
    labels = config["Labels"]
    manifest = (image.bundle / "manifest.json").read_bytes()
    assert labels["org.bratskit.bundle.sha256"] == hashlib.sha256(manifest).hexdigest()
    assert labels["org.bratskit.label-scheme"] == "2021"
    assert labels["org.bratskit.task"] == "gli-2021"  # a bundle of no stated task
    assert labels["org.bratskit.backend"] == "onnx"
    assert labels["org.opencontainers.image.version"]
    assert config["User"] not in ("", "0", "root", "0:0")


def test_runtime_only_no_training_code_no_torch(image):
    probe = (
        "import importlib.util as u, onnxruntime as ort; "
        "print([m for m in ('train', 'export', 'torch') if u.find_spec(m)], "
        "'CUDAExecutionProvider' in ort.get_available_providers())"
    )
    proc = run_image(image, "-c", probe, entrypoint="python")
    assert proc.returncode == 0, logs(proc)
    assert proc.stdout.split() == ["[]", "True"]  # onnxruntime-gpu: the CUDA provider is there
    proc = run_image(image, "train", "/input")
    assert proc.returncode == 4, logs(proc)
    assert "train/ package" in proc.stderr


@pytest.mark.parametrize("user", [None, RUN_USER], ids=["default-user", "uid-4242"])
def test_nothing_writable_outside_tmp(image, user):
    whoami = run_image(image, "-u", user=user, entrypoint="id")
    assert whoami.stdout.strip() not in ("", "0"), logs(whoami)
    # The image's own file system (-xdev: not /proc, /dev or /sys); find exits 1 for the
    # root-only folders it may not read, which are not writable either.
    find = ["/", "-xdev", "-path", "/tmp", "-prune", "-o", "-writable", "-print"]
    proc = run_image(image, *find, user=user, entrypoint="find")
    assert proc.stdout.split() == [], logs(proc)
    unreadable = [line for line in proc.stderr.splitlines() if "Permission denied" not in line]
    assert proc.returncode in (0, 1) and unreadable == [], logs(proc)


def test_other_sub_commands_reach_bratskit(image, case_factory):
    inp = case_factory("2021-folders", ids=["BraTS2021_00021"])
    proc = run_image(image, "validate", "/input", input_dir=inp)
    assert proc.returncode == 0, logs(proc)
    assert "1 valid, 0 invalid" in proc.stdout


def test_docker_stop_mid_run_exits_143_and_leaves_no_temporary_file(image, tmp_path):
    """``docker stop`` sends SIGTERM to the entrypoint's exec'd python (PID 1, which would
    ignore a signal it has no handler for): it must end with 143 well within the grace
    period, every output present complete and nothing temporary left (issue 13, failure 1)."""
    ids = [f"BraTS2021_{i:05d}" for i in range(12)]
    image_cdhw = np.zeros((4, 240, 240, 155), dtype=np.int16)
    image_cdhw[:, 60:180, 50:190, 30:125] = (
        np.arange(4, dtype=np.int16)[:, None, None, None] + 1
    ) * 300
    inp = tmp_path / "in"
    for case_id in ids:
        for i, m in enumerate(MODALITIES):
            write_nifti(inp / case_id / modality_filename(case_id, m, "2021"), image_cdhw[i])
    out = output_folder(tmp_path / "out")
    name = f"bratskit-stop-{tmp_path.name}"
    cmd = ["docker", "run", "-d", "--name", name, "--network", "none", "--user", RUN_USER]
    cmd += ["-v", f"{inp}:/input:ro", "-v", f"{out}:/output", image.tag]
    subprocess.run(cmd, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 300
        while not any(p.name.endswith(".nii.gz") for p in out.iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stop = subprocess.run(["docker", "stop", "-t", "20", name], capture_output=True)
        assert stop.returncode == 0, stop.stderr
        code = int(subprocess.run(["docker", "wait", name], capture_output=True).stdout)
        log = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert code == 143, log.stdout[-3000:] + log.stderr[-3000:]  # not 137: no SIGKILL needed
    assert "SIGTERM: stopping" in log.stderr
    names = sorted(p.name for p in out.iterdir())
    assert all(n.endswith(".nii.gz") and not n.startswith(".") for n in names), names
    assert 0 < len(names) < len(ids)
    for n in names:
        assert nib.load(out / n).get_fdata().shape == (240, 240, 155)  # complete files
