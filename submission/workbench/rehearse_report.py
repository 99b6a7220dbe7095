"""What a rehearsal measured and found, the judgement of its figures against the year's
limits, and the report ``bratskit rehearse`` prints (text, or JSON for machines)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from submission.workbench.rehearse_checks import CudaNeed, Rules, check_cuda

__all__ = ["Rehearsal"]

#: Above this share of the time limit the projection is a warning.
MARGIN = 0.8


@dataclass
class Rehearsal:
    """One rehearsal; ``ok`` when the submission would pass.

    Attributes:
        case_seconds: per case, from the runtime's own log lines (empty: it prints none).
        host_gpu: the host's driver version and newest CUDA; None without a GPU.
        time_limit_s: the run's limit (the rules', or the one given); None: none published.
    """

    image: str
    rules: Rules
    labels: str
    command: list[str]
    case_ids: list[str]
    exit_code: int | None
    wall_s: float
    case_seconds: dict[str, float]
    peak_memory_bytes: int | None
    memory_source: str
    runtime_peak_rss_gb: float | None
    image_bytes: int
    cuda: CudaNeed
    host_gpu: tuple[str, str] | None
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
        """Mean seconds per case: the runtime's own figures, else wall time over cases."""
        if self.case_seconds:
            return sum(self.case_seconds.values()) / len(self.case_seconds)
        return self.wall_s / max(len(self.case_ids), 1)

    @property
    def timing_source(self) -> str:
        if self.case_seconds:
            return "the runtime's log lines"
        return "the container's wall time over the cases, start-up included"

    @property
    def startup_s(self) -> float:
        """The run's seconds outside its cases (start, model loading), counted once."""
        if not self.case_seconds:
            return 0.0
        return max(self.wall_s - sum(self.case_seconds.values()), 0.0)

    @property
    def projected_s(self) -> float:
        """Seconds for the whole test set in one run: start-up once, then every case."""
        return self.startup_s + self.seconds_per_case * self.test_cases

    def judge(self, image_user: str) -> None:
        """Add the failures and warnings of the figures: the projection against the time
        limit, the CUDA version against the rules and the driver, the image's USER."""
        gpu_image = self.cuda.source != "none"
        if self.host_gpu is None and gpu_image:
            self.warnings.append(
                "no GPU on this host: the image ran on the CPU; its GPU path is not tested"
            )
        # Only a complete run projects: a failed one has no time per case to speak of.
        limit = self.time_limit_s if self.exit_code == 0 else None
        over = f"projected {_duration(self.projected_s)} for {self.test_cases} test cases"
        if limit is not None and self.projected_s > limit:
            message = f"time: {over} exceeds the limit of {_duration(limit)}"
            if self.host_gpu is None and gpu_image:  # the organisers' GPU is faster
                self.warnings.append(f"{message}, measured on the CPU")
            else:
                self.failures.append(message)
        elif limit is not None and self.projected_s > MARGIN * limit:
            self.warnings.append(f"time: {over}, over {MARGIN:.0%} of the {_duration(limit)}")
        reference = self.rules.case_reference_s
        slow = self.exit_code == 0 and self.seconds_per_case > (reference or float("inf"))
        if self.time_limit_s is None and slow:
            self.warnings.append(
                f"time: {self.seconds_per_case:.0f} s per case, over the {reference:.0f} s "
                "per case of the last published limit (2021)"
            )
        failures, warnings = check_cuda(self.cuda, self.host_gpu and self.host_gpu[1], self.rules)
        self.failures += failures
        self.warnings += warnings
        if image_user.split(":")[0] in ("", "0", "root"):
            self.warnings.append(
                f"the image's USER is root; the organisers may run it as any uid (here "
                f"{self._user()}): it must not need root"
            )

    def _user(self) -> str:
        return self.command[self.command.index("--user") + 1]

    def text(self) -> str:
        """The human-readable report: figures, then warnings, then one line per failure."""
        n = len(self.case_ids)
        peak = self.peak_memory_bytes
        memory = "not measured (the run was too short?)"
        if peak is not None:
            memory = f"{peak / 2**20:.0f} MiB ({self.memory_source})"
        rss = self.runtime_peak_rss_gb
        limit = "none published" if self.time_limit_s is None else _duration(self.time_limit_s)
        host = "no GPU on this host"
        if self.host_gpu is not None:
            host = f"driver {self.host_gpu[0]}, CUDA up to {self.host_gpu[1]}"
        lines = [
            f"== rehearsal of {self.image} under the {self.rules.year} rules "
            f"(labels {self.labels})",
            f"run: {shlex.join(self.command)}",
            f"cases: {n}, container exit {self.exit_code} after {self.wall_s:.1f} s",
            f"per case: {self.seconds_per_case:.2f} s (from {self.timing_source}), "
            f"start-up {self.startup_s:.1f} s",
            f"peak memory: {memory} of {self.rules.memory}"
            + ("" if rss is None else f"; the runtime's peak RSS {rss:.2f} GB"),
            f"projected for {self.test_cases} test cases: {_duration(self.projected_s)} "
            f"(time limit: {limit})",
            f"image size: {self.image_bytes / 1e9:.2f} GB",
            f"CUDA the image needs: {self.cuda.version or self.cuda.source}"
            + (f" ({self.cuda.source})" if self.cuda.version else "")
            + f"; host: {host}",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"FAIL  {f}" for f in self.failures]
        lines.append("would pass" if self.ok else f"would FAIL: {len(self.failures)} problem(s)")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report for machines (no logs)."""
        data = {
            "ok": self.ok,
            "image": self.image,
            "rules": self.rules.year,
            "labels": self.labels,
            "command": self.command,
            "cases": len(self.case_ids),
            "exit_code": self.exit_code,
            "wall_s": self.wall_s,
            "case_seconds": self.case_seconds,
            "seconds_per_case": self.seconds_per_case,
            "timing_source": self.timing_source,
            "startup_s": self.startup_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "memory_source": self.memory_source,
            "memory_limit": self.rules.memory,
            "shm_size": self.rules.shm_size,
            "runtime_peak_rss_gb": self.runtime_peak_rss_gb,
            "test_cases": self.test_cases,
            "projected_s": self.projected_s,
            "time_limit_s": self.time_limit_s,
            "image_bytes": self.image_bytes,
            "cuda_needed": self.cuda.version,
            "cuda_source": self.cuda.source,
            "host_driver": self.host_gpu and self.host_gpu[0],
            "host_cuda": self.host_gpu and self.host_gpu[1],
            "failures": self.failures,
            "warnings": self.warnings,
        }
        return json.dumps(data, indent=2)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
