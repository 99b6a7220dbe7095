"""The rules of the organisers' run and their checks of it, as pure functions of folders,
logs and version strings (CONTRACT.md sections 3, 4, 7 and 8); ``rehearse`` runs the
container and feeds them.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from submission.brats import ENHANCING, get_scheme, has_case_number
from submission.io.cases import Discovery
from submission.io.nifti import NiftiError, read_label_map
from submission.workbench.validate import validate_input, validate_output


@dataclass(frozen=True)
class Rules:
    """One year's run.

    Attributes:
        time_limit_s: for the whole test set in one run; None where none is published.
        case_reference_s: the per-case figure to stay under where no limit is published.
        max_cuda: the newest CUDA the organisers' driver runs, where the rules say.
        case_numbers: case folders are named ``...NNNNN-NNN`` and outputs matched so.
    """

    year: str
    memory: str
    shm_size: str
    time_limit_s: float | None
    case_reference_s: float | None
    max_cuda: str | None
    case_numbers: bool


#: 2025: the Synapse template's flags; no time limit published, so 2021's 390 s per case
#: is the reference (CONTRACT.md 4). 2026, the stricter of the two copies of the
#: instructions: 32 GiB (not 48), 8 hours for the whole test set (not 12), CUDA up to 13.0;
#: one copy gives 16 GiB of shared memory and the other none, so the 4 GB that CONTRACT.md 4
#: assumes (the 2025 template's and the orchestrator's default).
RULES: dict[str, Rules] = {
    "2025": Rules("2025", "16g", "4g", None, 390.0, None, False),
    "2026": Rules("2026", "32g", "4g", 8 * 3600.0, None, "13.0", True),
}
#: Cases in a test phase, for the projection: BraTS 2021's glioma test set had 570, reused
#: since; no year publishes its count in advance.
DEFAULT_TEST_CASES = 600


def run_timeout(rules: Rules, cases: int) -> float:
    """Seconds after which the run is stopped: the whole-run limit, else the per-case
    reference for every case of the rehearsal."""
    if rules.time_limit_s is not None:
        return rules.time_limit_s
    return (rules.case_reference_s or 3600.0) * cases


def input_problems(
    found: Discovery, input_dir: Path, rules: Rules, task: str | None = None
) -> list[str]:
    """Why ``input_dir`` cannot stand for the organisers' input (an invalid case, by the
    ``task``'s modalities when given; a file an arbitrary uid cannot read; the year's
    names); empty when it can."""
    report = validate_input(input_dir, task)
    problems = [f"case {f.subject}: {f.problem}" for f in report.failures]
    if rules.case_numbers:
        for case in found.cases:
            if case.folder == Path(input_dir) or not has_case_number(case.case_id):
                problems.append(
                    f"case {case.case_id}: the {rules.year} test set has one folder per case "
                    "named BraTS-<TASK>-NNNNN-NNN; rehearse with cases named so"
                )
    unreadable = _unreadable_entry(Path(input_dir))
    if unreadable is not None:
        problems.append(
            f"{unreadable} is not readable by an arbitrary uid, as the organisers' input is: "
            f"chmod -R a+rX {input_dir}"
        )
    return problems


def _unreadable_entry(input_dir: Path) -> Path | None:
    for path in [input_dir, *sorted(input_dir.rglob("*"))]:
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if path.stat().st_mode & need != need:
            return path
    return None


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder``: relative path -> (size, mtime in ns) of a file, (-1, -1)
    for a folder (whose mtime says only that an entry changed, which is listed itself)."""
    return {
        str(p.relative_to(folder)): (
            (-1, -1) if p.is_dir() else (p.lstat().st_size, p.lstat().st_mtime_ns)
        )
        for p in Path(folder).rglob("*")
    }


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Entries added, removed or modified between two :func:`snapshot` calls."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def check_outputs(
    input_dir: Path, output_dir: Path, labels: str, task: str | None = None
) -> tuple[list[str], list[str]]:
    """The organisers' checks of an output folder (:func:`validate_output`: one
    ``<case-id>.nii.gz`` per case, nothing else, exact grid, labels in the scheme; with a
    task, its cases and output-name rule), plus warnings for all-background predictions
    and for 2021-looking labels in a scheme where 4 means something else: (failures,
    warnings)."""
    report = validate_output(input_dir, output_dir, labels, task)
    failures = [f"{f.subject}: {f.problem}" for f in report.failures]
    warnings = list(report.warnings)
    present: set[int] = set()
    for path in sorted(output_dir.glob("*.nii.gz")):
        try:
            seg_dhw, _ = read_label_map(path)
        except NiftiError:
            continue  # validate_output has named it
        present |= set(np.unique(seg_dhw).tolist()) - {0}
        if not seg_dhw.any():
            warnings.append(f"{path.name}: all background (the organisers score it 0 / inf)")
    scheme = get_scheme(labels)
    et, et_2021 = scheme.labels.get(ENHANCING), get_scheme("2021").labels[ENHANCING]
    if et is not None and et != et_2021 and et_2021 in present and et not in present:
        warnings.append(
            f"labels {sorted(present)}: {et_2021} and no {et} looks like the 2021 scheme, "
            f"where {et_2021} is ET; in {labels} ET is {et} (is the image's --labels right?)"
        )
    return failures, warnings


#: ``bratskit predict``'s line per written case (runner.case_line):
#: ``ok <id> 12.3 s (read 1.20, preprocess 0.40, ...)``.
_CASE_LINE = re.compile(r"\bok (?P<id>\S+) (?P<s>\d+(?:\.\d+)?) s \((?P<stages>[^)]*)\)")
_STAGE = re.compile(r"[a-z_-]+ (\d+(?:\.\d+)?)")
_PEAK_RSS = re.compile(r"peak RSS (?P<gb>\d+(?:\.\d+)?) GB")


def case_seconds(logs: str, case_ids: list[str]) -> dict[str, float]:
    """Seconds per case from the runtime's own log lines (bratskit images); empty for an
    image that prints none."""
    wanted = set(case_ids)
    found = {}
    for match in _CASE_LINE.finditer(logs):
        # The stages have two decimals, the total one: a case of 0.04 s is not 0.0 s.
        stages = sum(float(x) for x in _STAGE.findall(match["stages"]))
        found[match["id"]] = round(max(float(match["s"]), stages), 2)
    return {k: v for k, v in found.items() if k in wanted}


def runtime_peak_rss_gb(logs: str) -> float | None:
    """The peak resident memory ``bratskit predict`` reports in its closing line."""
    match = _PEAK_RSS.search(logs)
    return None if match is None else float(match["gb"])


#: Log lines that name why a run failed, and the reason each means.
_REASONS: tuple[tuple[re.Pattern, str], ...] = (
    (
        re.compile(r"/input\S*.*Read-only file system|Read-only file system.*/input"),
        "it writes into /input, which is read-only in the organisers' run",
    ),
    (
        re.compile(r"Permission denied|Operation not permitted|must (?:be|run as) root"),
        "permission denied as an arbitrary non-root uid: the image needs root or its own "
        "USER (write only under /tmp and /output, make every file world-readable)",
    ),
    (
        re.compile(
            r"Temporary failure in name resolution|Network is unreachable|Could not resolve"
            r"|Name or service not known|Failed to establish a new connection"
        ),
        "it tries the network, which the organisers' run has none of (bake the weights in)",
    ),
    (
        re.compile(r"/dev/shm|shared memory|Bus error"),
        "shared memory ran out (data loader workers?)",
    ),
    (re.compile(r"No space left on device"), "a disk filled up"),
)
_EXIT_REASONS = {
    126: "the entrypoint cannot be executed (exit 126: not executable?)",
    127: "the entrypoint or a command it runs does not exist (exit 127)",
}


def diagnose(
    exit_code: int | None,
    logs: str,
    stopped: tuple[bool, bool],
    rules: Rules,
    limit_s: float,
) -> list[str]:
    """One line per reason the container's run fails the organisers' run; empty when it
    exited 0 in time. ``stopped``: (timed out, killed for memory)."""
    timed_out, oom_killed = stopped
    if timed_out:
        return [
            f"time limit: still running after {limit_s:.0f} s (the {rules.year} rules' limit "
            "for this run); stopped with docker stop"
        ]
    if oom_killed:
        return [f"memory: killed at the {rules.year} limit of {rules.memory} (out of memory)"]
    if exit_code == 0:
        return []
    reasons = [f"container: exited {exit_code} (the organisers' run fails)"]
    if exit_code in _EXIT_REASONS:
        reasons.append(f"container: {_EXIT_REASONS[exit_code]}")
    for pattern, reason in _REASONS:
        line = next((x for x in logs.splitlines() if pattern.search(x)), None)
        if line is not None:
            reasons.append(f"container: {reason} (log: {line.strip()[:200]!r})")
    if exit_code == 137 and len(reasons) == 1:
        reasons.append("container: killed by SIGKILL (137), perhaps by the memory limit")
    return reasons


@dataclass(frozen=True)
class CudaNeed:
    """The CUDA version an image needs (``major.minor``; None: none or unknown) and how that
    was found; ``source`` is "none" for a CPU-only image."""

    version: str | None
    source: str


def cuda_needed(env: dict[str, str], packages: dict[str, str]) -> CudaNeed:
    """From the image's environment (``CUDA_VERSION`` of NVIDIA's base images) and its
    Python packages (name in lower case -> version): NVIDIA's runtime wheel, torch's
    ``+cuXYZ`` tag, or an unknown version for a GPU package without either."""
    if env.get("CUDA_VERSION"):
        return CudaNeed(_major_minor(env["CUDA_VERSION"]), "CUDA_VERSION in the image's env")
    for name in sorted(packages):
        if name.startswith("nvidia-cuda-runtime"):
            return CudaNeed(_major_minor(packages[name]), f"{name} {packages[name]}")
    torch = re.search(r"\+cu(\d+)(\d)$", packages.get("torch", ""))
    if torch:
        return CudaNeed(f"{torch[1]}.{torch[2]}", f"torch {packages['torch']}")
    gpu = [n for n in ("onnxruntime-gpu", "tensorflow", "jax", "cupy") if n in packages]
    if gpu or any(n.startswith("nvidia-") for n in packages):
        return CudaNeed(None, f"{', '.join(gpu) or 'nvidia packages'}: CUDA of the system")
    return CudaNeed(None, "none")


def _major_minor(version: str) -> str:
    return ".".join(re.findall(r"\d+", version)[:2])


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def check_cuda(need: CudaNeed, host_cuda: str | None, rules: Rules) -> tuple[list[str], list[str]]:
    """The image's CUDA against the rules' and the host's driver: a newer major version
    fails; a newer minor one runs by CUDA's minor-version compatibility (a warning)."""
    failures: list[str] = []
    warnings: list[str] = []
    if need.version is None:
        if need.source != "none":
            warnings.append(f"CUDA: the version the image needs is unknown ({need.source})")
        return failures, warnings
    for limit, whose in ((rules.max_cuda, f"the {rules.year} rules"), (host_cuda, "this host")):
        if limit is None:
            continue
        if _parts(need.version)[0] > _parts(limit)[0]:
            failures.append(
                f"CUDA: the image needs {need.version} ({need.source}); {whose} run CUDA up "
                f"to {limit}: build with CUDA {_parts(limit)[0]} packages"
            )
        elif _parts(need.version) > _parts(limit):
            warnings.append(
                f"CUDA: the image's {need.version} is newer than the {limit} of {whose}: "
                "it runs by minor-version compatibility (no PTX JIT)"
            )
    return failures, warnings
