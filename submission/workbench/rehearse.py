"""A dress rehearsal of the organisers' run (CONTRACT.md sections 4 and 8).

The organisers do not test-run an image before the test phase, so ``bratskit rehearse``
runs it here exactly as that year's rules say (read-only ``/input``, no network, the
year's memory and shared-memory limits, an arbitrary non-root uid, the GPU when the host
has one, no command, the time limit), checks what it wrote as the organisers will
(:mod:`.rehearse_checks`), and measures what their budget depends on: seconds per case,
peak memory, the image size and the CUDA version it needs.

The rules' ``docker run --rm`` is run without ``--rm``: the container is removed once its
exit state (an out-of-memory kill shows only there) and its logs are read.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from submission.brats import DEFAULT_SCHEME
from submission.exit_codes import UnavailableError, UnusableError
from submission.io.cases import discover_task_cases
from submission.workbench import rehearse_checks as checks
from submission.workbench.rehearse_memory import PeakMemory
from submission.workbench.rehearse_report import Rehearsal

__all__ = ["RehearsalError", "host_gpu", "rehearse"]


class RehearsalError(ValueError, UnusableError):
    """The image, the input or the output folder cannot be rehearsed with (exit 3)."""


def _docker(*args: str, timeout: float | None = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _inspect_image(image: str) -> tuple[int, dict]:
    """The image's size in bytes and its config (Env, User, Labels)."""
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        raise UnavailableError("no Docker engine answers: install docker and start dockerd")
    inspect = _docker("image", "inspect", image)
    if inspect.returncode != 0:
        raise RehearsalError(f"image {image} not found: build it first (make build)")
    info = json.loads(inspect.stdout)[0]
    return int(info["Size"]), info.get("Config") or {}


#: Prints the image's Python packages, name in lower case -> version, as JSON.
_PACKAGES = (
    "import importlib.metadata as m, json; print(json.dumps({(d.metadata['Name'] or '')"
    ".lower(): d.version for d in m.distributions()}))"
)


def _packages(image: str) -> dict[str, str]:
    """The image's Python packages; empty for an image without a Python."""
    for python in ("python3", "python"):
        probe = ["run", "--rm", "--network", "none", "--entrypoint", python, image]
        proc = _docker(*probe, "-c", _PACKAGES)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
    return {}


def host_gpu() -> tuple[str, str] | None:
    """The host's NVIDIA driver version and the newest CUDA it runs; None without a
    working ``nvidia-smi``."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
    driver = re.search(r"Driver Version:\s*([\d.]+)", proc.stdout)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", proc.stdout)
    if proc.returncode != 0 or not driver or not cuda:
        return None
    return driver.group(1), cuda.group(1)


def run_user(image_user: str) -> str:
    """An arbitrary non-root uid:gid, as the organisers' orchestrator may use: random, high,
    and never the image's own USER."""
    own = image_user.split(":")[0]
    while True:
        uid, gid = random.randrange(20000, 60000), random.randrange(20000, 60000)
        if str(uid) != own:
            return f"{uid}:{gid}"


def docker_run_args(
    image: str, input_dir: Path, output_dir: Path, rules: checks.Rules, user: str, gpu: bool
) -> list[str]:
    """The organisers' ``docker run`` of that year (less ``--rm``), with no command."""
    args = ["run", "--network", "none", "--user", user]
    args += ["--memory", rules.memory, "--shm-size", rules.shm_size]
    args += ["--gpus", "all"] if gpu else []
    args += ["-v", f"{input_dir.resolve()}:/input:ro", "-v", f"{output_dir.resolve()}:/output:rw"]
    return [*args, image]


@dataclass
class _Run:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: float
    peak: PeakMemory
    logs: str


def _run_container(args: list[str], limit_s: float) -> _Run:
    """Run detached under a unique name, stop it (SIGTERM, then SIGKILL after 10 s) past
    ``limit_s``, read its exit state and logs, remove it."""
    name = f"bratskit-rehearse-{random.randrange(16**8):08x}"
    start = time.monotonic()
    started = _docker(args[0], "-d", "--name", name, *args[1:])
    if started.returncode != 0:
        _docker("rm", "-f", name)
        raise RehearsalError(f"docker run failed: {started.stderr.strip()}")
    peak = PeakMemory(started.stdout.strip())
    peak.start()
    timed_out = False
    try:
        try:
            _docker("wait", name, timeout=max(limit_s - (time.monotonic() - start), 1))
        except subprocess.TimeoutExpired:
            timed_out = True
            _docker("stop", "-t", "10", name)
        wall = time.monotonic() - start
        peak.stop()
        state = json.loads(_docker("inspect", name).stdout or "[{}]")[0].get("State", {})
        logs = _docker("logs", name)
    finally:  # also on Ctrl-C: no container left behind
        _docker("rm", "-f", name)
    return _Run(
        exit_code=state.get("ExitCode"),
        timed_out=timed_out,
        oom_killed=bool(state.get("OOMKilled")),
        wall_s=_container_seconds(state) or wall,
        peak=peak,
        logs=logs.stdout + logs.stderr,
    )


def _container_seconds(state: dict) -> float | None:
    """The container's own run time from its StartedAt and FinishedAt (RFC 3339, ns)."""
    try:
        ends = [
            datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", state[k]).replace("Z", "+00:00"))
            for k in ("StartedAt", "FinishedAt")
        ]
    except (KeyError, ValueError):
        return None
    seconds = (ends[1] - ends[0]).total_seconds()
    return seconds if seconds > 0 else None


def _output_folder(keep_output: Path | None, tmp: str) -> Path:
    output_dir = Path(keep_output) if keep_output is not None else Path(tmp) / "output"
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise RehearsalError(f"{output_dir} must be an empty folder (or absent) for the run")
    output_dir.mkdir(parents=True, exist_ok=True)
    output_dir.chmod(0o777)  # the run's uid is arbitrary: it must write here as anyone
    return output_dir


def rehearse(
    image: str,
    input_dir: Path,
    rules: str = "2026",
    labels: str | None = None,
    test_cases: int = checks.DEFAULT_TEST_CASES,
    keep_output: Path | None = None,
    time_limit_s: float | None = None,
    task: str | None = None,
) -> Rehearsal:
    """Run ``image`` on ``input_dir`` under ``rules`` and check its outputs in the label
    scheme ``labels`` (default: the ``task``'s, else the one the image's
    ``org.bratskit.label-scheme`` names, else 2021). With a ``task``, the input's cases
    have its modalities (MEN-RT: t1c alone) and outputs follow its name rule.
    ``time_limit_s`` replaces the rules' whole-run limit (a team's own budget)."""
    rule = checks.RULES[rules]
    if time_limit_s is not None:
        rule = replace(rule, time_limit_s=float(time_limit_s))
    input_dir = Path(input_dir)
    found, task_rules = discover_task_cases(input_dir, task)
    if labels is None and task_rules is not None:
        labels = task_rules.scheme
    problems = checks.input_problems(found, input_dir, rule, task)
    if problems:
        raise RehearsalError(f"cannot rehearse with {input_dir}: " + "; ".join(problems))
    image_bytes, config = _inspect_image(image)
    if labels is None:
        labels = (config.get("Labels") or {}).get("org.bratskit.label-scheme", DEFAULT_SCHEME)
    gpu = host_gpu()
    user = run_user(config.get("User") or "")
    limit = checks.run_timeout(rule, len(found.cases))
    with tempfile.TemporaryDirectory(prefix="bratskit-rehearse-") as tmp:
        output_dir = _output_folder(keep_output, tmp)
        args = docker_run_args(image, input_dir, output_dir, rule, user, gpu is not None)
        before = checks.snapshot(input_dir)
        run = _run_container(args, limit)
        touched = checks.changed(before, checks.snapshot(input_dir))
        failures = checks.diagnose(
            run.exit_code, run.logs, (run.timed_out, run.oom_killed), rule, limit
        )
        found_failures, warnings = checks.check_outputs(input_dir, output_dir, labels, task)
    if touched:
        failures.append(f"input: the run changed {', '.join(touched[:5])} in /input")
    result = Rehearsal(
        image=image,
        rules=rule,
        labels=labels,
        command=["docker", *args],
        case_ids=found.case_ids,
        exit_code=run.exit_code,
        wall_s=run.wall_s,
        case_seconds=checks.case_seconds(run.logs, found.case_ids),
        peak_memory_bytes=run.peak.peak,
        memory_source=run.peak.source,
        runtime_peak_rss_gb=checks.runtime_peak_rss_gb(run.logs),
        image_bytes=image_bytes,
        cuda=checks.cuda_needed(_env(config), _packages(image)),
        host_gpu=gpu,
        test_cases=test_cases,
        time_limit_s=rule.time_limit_s,
        failures=failures + found_failures,
        warnings=list(found.warnings) + warnings,
        logs=run.logs,
    )
    result.judge(config.get("User") or "")
    return result


def _env(config: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
