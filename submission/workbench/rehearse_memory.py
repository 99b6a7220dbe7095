"""The peak memory of a running container, as the engine's memory limit counts it.

Read from the container's cgroup high-water mark (cgroup v1 ``memory.max_usage_in_bytes``,
v2 ``memory.peak``, cgroupfs or systemd driver) every 0.2 s: the mark only grows, so the
last reading is the peak but for the last 0.2 s. In v1 the mark includes the page cache of
the files the container read and wrote. Where this host's cgroups cannot be read (a remote
or rootless engine, Docker Desktop), ``docker stats`` is polled instead (about once a
second, the peak of the samples, page cache excluded).
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

__all__ = ["PeakMemory", "parse_size"]

_CGROUP = Path("/sys/fs/cgroup")
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int | None:
    """Bytes of a size as ``docker stats`` prints it (``512.3MiB``); None if unreadable."""
    match = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", text)
    if not match or match[2].lower() not in _UNITS:
        return None
    return int(float(match[1]) * _UNITS[match[2].lower()])


def _peak_files(container_id: str) -> list[Path]:
    return [
        _CGROUP / "memory" / "docker" / container_id / "memory.max_usage_in_bytes",
        _CGROUP / "docker" / container_id / "memory.peak",
        _CGROUP / "system.slice" / f"docker-{container_id}.scope" / "memory.peak",
    ]


class PeakMemory(threading.Thread):
    """Samples a container's memory until :meth:`stop`; ``peak`` in bytes (None when
    nothing could be read) and ``source``, what was read."""

    def __init__(self, container_id: str):
        super().__init__(daemon=True)
        self.container_id = container_id
        self.peak: int | None = None
        self.source = "not measured"
        self._done = threading.Event()

    def _record(self, value: int | None, source: str) -> bool:
        if not value:  # a stopped container's docker stats say 0B
            return False
        self.peak, self.source = max(self.peak or 0, value), source
        return True

    def _from_cgroup(self) -> bool:
        for path in _peak_files(self.container_id):
            try:
                value = int(path.read_text())
            except (OSError, ValueError):
                continue
            return self._record(value, "cgroup high-water mark, page cache included")
        return False

    def _from_stats(self) -> None:
        fmt = ["--no-stream", "--format", "{{.MemUsage}}", self.container_id]
        try:
            proc = subprocess.run(
                ["docker", "stats", *fmt], capture_output=True, text=True, timeout=30
            )
        except subprocess.TimeoutExpired:
            return
        if proc.returncode == 0:
            self._record(parse_size(proc.stdout), "docker stats samples, page cache excluded")

    def run(self) -> None:
        cgroup = False  # once read there, never docker stats (the cgroup goes at the end)
        while not self._done.is_set():
            cgroup = self._from_cgroup() or cgroup
            if not cgroup:
                self._from_stats()
            self._done.wait(0.2)

    def stop(self) -> None:
        """End the sampling."""
        self._done.set()
        self.join()
