"""A dress rehearsal of the organisers' run (CONTRACT.md sections 4 and 8).

The organisers do not test-run an image before the test phase, so ``bratskit rehearse``
runs it here exactly as that year's rules say (read-only ``/input``, no network, the
year's memory and shared-memory limits, an arbitrary non-root uid, the GPU when the host
has one, the whole-run time limit), then checks the output folder as the organisers will
(:mod:`submission.workbench.validate` plus the year's naming rule) and reports what the
organisers' budget depends on: seconds per case, peak memory, the projected time for the
test set, the image size and the CUDA version the image needs against the host's driver.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from submission.brats import DEFAULT_SCHEME
from submission.exit_codes import UnavailableError, UnusableError
from submission.io.cases import discover_cases
from submission.io.nifti import read_label_map
from submission.workbench.validate import validate_output


@dataclass(frozen=True)
class Rules:
    """One year's run: the docker limits and the whole-run time limit (None: unpublished)."""

    year: str
    memory: str
    shm_size: str
    time_limit_s: float | None
    #: Output names must end so (2026: the organisers match predictions by the suffix).
    name_suffix: re.Pattern | None


#: 2025: the Synapse template's flags (CONTRACT.md 8), no whole-run limit published.
#: 2026: the stricter of the two copies of the instructions: 32 GiB RAM (not 48), 16 GiB
#: of shared memory (the only figure given), 8 hours for the whole test set (not 12).
RULES: dict[str, Rules] = {
    "2025": Rules("2025", "16g", "4g", None, None),
    "2026": Rules("2026", "32g", "16g", 8 * 3600.0, re.compile(r"\d{5}-\d{3}\.nii\.gz$")),
}
#: Cases in a test phase, for the projection (BraTS-GLI 2024 had about 570; a round 600).
DEFAULT_TEST_CASES = 600
#: Task names of CONTRACT.md section 7 that map onto a label scheme of this version (the
#: task registry of a later issue adds MEN-RT and the tasks' own modalities).
TASK_SCHEMES = {"GLI": "2024-gli", "MET": "2024-gli", "PED": "2024-ped", "MEN": "2023"}
TASK_SCHEMES |= {"SSA": "2023", "GOAT": "2023"}
#: What a write into the read-only ``/input`` or a needed root looks like in the logs.
_READ_ONLY = "Read-only file system"
_DENIED = "Permission denied"


class RehearsalError(ValueError, UnusableError):
    """The image or the input cannot be rehearsed (no such image, no case)."""


@dataclass
class Rehearsal:
    """What the run measured and what the checks found; ``ok`` when it would pass."""

    image: str
    rules: str
    cases: int
    exit_code: int | None
    seconds: float
    peak_memory_bytes: int | None
    image_bytes: int
    cuda_needed: str | None
    host_driver: str | None
    host_cuda: str | None
    test_cases: int
    time_limit_s: float | None
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    logs: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def seconds_per_case(self) -> float:
        return self.seconds / max(self.cases, 1)

    @property
    def projected_s(self) -> float:
        return self.seconds_per_case * self.test_cases

    def text(self) -> str:
        """The report ``bratskit rehearse`` prints."""
        peak = self.peak_memory_bytes
        limit = "no limit published" if self.time_limit_s is None else f"{self.time_limit_s:.0f} s"
        lines = [
            f"== rehearsal of {self.image} under the {self.rules} rules",
            f"cases: {self.cases}, container exit {self.exit_code}, {self.seconds:.1f} s "
            f"({self.seconds_per_case:.1f} s per case, start-up included)",
            f"peak memory: {'not measured' if peak is None else f'{peak / 2**20:.0f} MiB'}",
            f"projected for {self.test_cases} test cases: {self.projected_s:.0f} s "
            f"(limit: {limit})",
            f"image size: {self.image_bytes / 2**30:.2f} GiB",
            f"CUDA the image needs: {self.cuda_needed or 'none (CPU only)'}; host: "
            + (
                f"driver {self.host_driver}, CUDA up to {self.host_cuda}"
                if self.host_driver
                else "no GPU (the run used the CPU)"
            ),
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"FAIL  {f}" for f in self.failures]
        lines.append("would pass" if self.ok else f"would FAIL: {len(self.failures)} problem(s)")
        return "\n".join(lines)

    def to_json(self) -> str:
        data = asdict(self) | {"ok": self.ok, "seconds_per_case": self.seconds_per_case}
        data["projected_s"] = self.projected_s
        data.pop("logs")
        return json.dumps(data, indent=2)


def _docker(*args: str, timeout: float | None = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _image_config(image: str) -> tuple[int, dict]:
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        raise UnavailableError("no Docker engine answers: install docker and start dockerd")
    inspect = _docker("image", "inspect", image)
    if inspect.returncode != 0:
        raise RehearsalError(f"image {image} not found: build it first (make build)")
    info = json.loads(inspect.stdout)[0]
    return int(info["Size"]), info.get("Config") or {}


#: Asks the image's Python which CUDA runtime its packages bring (NVIDIA's pip wheels).
_CUDA_PROBE = (
    "import importlib.metadata as m; print(' '.join(d.version for d in m.distributions() "
    "if (d.metadata['Name'] or '').startswith('nvidia-cuda-runtime')))"
)


def _cuda_needed(image: str, config: dict) -> str | None:
    """The CUDA version the image needs: its CUDA_VERSION (NVIDIA base images), else the
    nvidia-cuda-runtime wheel of its Python; None for a CPU-only image."""
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    if env.get("CUDA_VERSION"):
        return env["CUDA_VERSION"]
    probe = ["run", "--rm", "--network", "none", "--entrypoint", "python", image]
    proc = _docker(*probe, "-c", _CUDA_PROBE)
    versions = proc.stdout.split() if proc.returncode == 0 else []
    return max(versions, key=_version) if versions else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def host_gpu() -> tuple[str, str] | None:
    """The host's NVIDIA driver version and the newest CUDA it runs, None without a
    working ``nvidia-smi``."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
    driver = re.search(r"Driver Version:\s*([\d.]+)", proc.stdout)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", proc.stdout)
    if proc.returncode != 0 or not driver or not cuda:
        return None
    return driver.group(1), cuda.group(1)


def _peak_files(container_id: str) -> list[Path]:
    """The cgroup high-water marks of a container, cgroup v1 and v2 (either driver)."""
    root = Path("/sys/fs/cgroup")
    return [
        root / "memory" / "docker" / container_id / "memory.max_usage_in_bytes",
        root / "docker" / container_id / "memory.peak",
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.peak",
    ]


class _PeakMemory(threading.Thread):
    """Reads a running container's cgroup memory high-water mark every 0.2 s; ``peak`` in
    bytes (None where this host's cgroups cannot be read). The mark only grows, so the last
    reading before the container ends is its peak but for the last 0.2 s."""

    def __init__(self, container_id: str):
        super().__init__(daemon=True)
        self.files, self.peak, self.done = _peak_files(container_id), None, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for path in self.files:
                try:
                    self.peak = max(self.peak or 0, int(path.read_text()))
                except (OSError, ValueError):
                    continue
            self.done.wait(0.2)


def run_user() -> str:
    """The uid:gid of the run: the caller's, as the organisers' orchestrator does, or an
    arbitrary one when the caller is root; never the image's own USER."""
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    uid = random.randrange(10000, 60000)
    return f"{uid}:{uid}"


def _check_readable(input_dir: Path) -> None:
    """As root the run's uid is arbitrary: every entry of the input must be readable by all
    (the organisers' input is; a folder of mode 0700 would fail here and not there)."""
    if os.getuid() != 0:
        return
    for path in [input_dir, *input_dir.rglob("*")]:
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if path.stat().st_mode & need != need:
            raise RehearsalError(
                f"{path} is not readable by an arbitrary uid, as the organisers' input is: "
                f"chmod -R o+rX {input_dir}"
            )


def _run_container(
    image: str, input_dir: Path, output_dir: Path, rules: Rules, gpu: bool
) -> tuple[int | None, float, int | None, str]:
    """Run the image as the organisers do; (exit code or None on time-out, seconds, peak
    memory, logs)."""
    name = f"bratskit-rehearse-{random.randrange(16**8):08x}"
    cmd = ["run", "-d", "--name", name, "--network", "none", "--user", run_user()]
    cmd += ["--memory", rules.memory, "--shm-size", rules.shm_size]
    cmd += ["--gpus", "all"] if gpu else []
    cmd += ["-v", f"{input_dir.resolve()}:/input:ro", "-v", f"{output_dir}:/output:rw", image]
    start = time.monotonic()
    started = _docker(*cmd)
    if started.returncode != 0:
        raise RehearsalError(f"docker run failed: {started.stderr.strip()}")
    monitor = _PeakMemory(started.stdout.strip())
    monitor.start()
    try:
        try:
            waited = _docker("wait", name, timeout=rules.time_limit_s)
            code = int(waited.stdout.strip()) if waited.returncode == 0 else None
        except subprocess.TimeoutExpired:
            _docker("kill", name)
            code = None
        seconds = time.monotonic() - start
        monitor.done.set()
        monitor.join()
        logs = _docker("logs", name)
    finally:  # also on Ctrl-C: no container is left running
        monitor.done.set()
        _docker("rm", "-f", name)
    return code, seconds, monitor.peak, logs.stdout + logs.stderr


def check_outputs(
    input_dir: Path, output_dir: Path, labels: str, rules: Rules
) -> tuple[list[str], list[str]]:
    """The organisers' checks of an output folder: (failures, warnings)."""
    report = validate_output(input_dir, output_dir, labels)
    failures = [f"{f.subject}: {f.problem}" for f in report.failures]
    warnings = list(report.warnings)
    for path in sorted(output_dir.glob("*.nii.gz")):
        if rules.name_suffix and not rules.name_suffix.search(path.name):
            failures.append(
                f"{path.name}: the {rules.year} rules match predictions by a name ending in "
                "NNNNN-NNN.nii.gz (name each output after the case folder's full name)"
            )
    return failures, warnings + _empty_predictions(output_dir)


def _empty_predictions(output_dir: Path) -> list[str]:
    empty = []
    for path in sorted(output_dir.glob("*.nii.gz")):
        try:
            labels, _ = read_label_map(path)
        except ValueError:
            continue  # validate_output has named it already
        if not labels.any():
            empty.append(f"{path.name}: all background (the organisers score it 0 / inf)")
    return empty


def _diagnose(code: int | None, logs: str, rules: Rules) -> list[str]:
    if code is None:
        return [f"the run exceeded the {rules.year} time limit ({rules.time_limit_s:.0f} s)"]
    if code == 0:
        return []
    reasons = [f"the container exited {code} (the organisers' run fails)"]
    if code == 137:
        reasons.append(f"killed: most likely out of memory (the {rules.memory} limit)")
    if _READ_ONLY in logs:
        reasons.append("the image writes into /input, which is read-only in the organisers' run")
    elif _DENIED in logs:
        reasons.append(
            "permission denied as an arbitrary non-root uid: the image needs root or its own "
            "USER (make every path it writes world-writable or under /tmp)"
        )
    return reasons


def rehearse(
    image: str,
    input_dir: Path,
    rules: str = "2026",
    labels: str | None = None,
    test_cases: int = DEFAULT_TEST_CASES,
    keep_output: Path | None = None,
) -> Rehearsal:
    """Run ``image`` on ``input_dir`` under ``rules`` and check its outputs in the label
    scheme ``labels`` (default: the one the image's bratskit label names, else 2021)."""
    rule = RULES[rules]
    image_bytes, config = _image_config(image)
    if labels is None:
        labels = (config.get("Labels") or {}).get("org.bratskit.label-scheme", DEFAULT_SCHEME)
    found = discover_cases(input_dir)
    if not found.cases:
        raise RehearsalError(f"no usable case in {input_dir} to rehearse with")
    _check_readable(Path(input_dir))
    gpu = host_gpu()
    with tempfile.TemporaryDirectory(prefix="bratskit-rehearse-") as tmp:
        output_dir = Path(keep_output) if keep_output else Path(tmp) / "output"
        output_dir.mkdir(parents=True, exist_ok=True)
        output_dir.chmod(0o777)  # the organisers' uid owns its output folder; ours is random
        code, seconds, peak, logs = _run_container(
            image, Path(input_dir), output_dir, rule, gpu=gpu is not None
        )
        failures = _diagnose(code, logs, rule)
        checked, warnings = check_outputs(Path(input_dir), output_dir, labels, rule)
    result = Rehearsal(
        image=image,
        rules=rules,
        cases=len(found.cases),
        exit_code=code,
        seconds=seconds,
        peak_memory_bytes=peak,
        image_bytes=image_bytes,
        cuda_needed=_cuda_needed(image, config),
        host_driver=gpu[0] if gpu else None,
        host_cuda=gpu[1] if gpu else None,
        test_cases=test_cases,
        time_limit_s=rule.time_limit_s,
        failures=failures + checked,
        warnings=list(found.warnings) + warnings,
        logs=logs,
    )
    if rule.time_limit_s is not None and result.projected_s > rule.time_limit_s:
        result.failures.append(
            f"projected {result.projected_s:.0f} s for {test_cases} cases exceeds the "
            f"{rules} limit of {rule.time_limit_s:.0f} s"
        )
    # CUDA's minor-version compatibility: a 13.x runtime runs on any driver of CUDA 13.0
    # and newer (the 2026 rules say "CUDA up to 13.0"), so only the major version decides.
    if gpu and result.cuda_needed and _version(result.cuda_needed)[0] > _version(gpu[1])[0]:
        result.failures.append(
            f"the image needs CUDA {result.cuda_needed}, the host's driver {gpu[0]} runs CUDA "
            f"up to {gpu[1]}: use the CUDA {_version(gpu[1])[0]} wheels"
        )
    return result
