"""SIGTERM and SIGINT during a run: stop at once, leave nothing partial, exit 143 or 130.

``docker stop`` and the organisers' time-outs send SIGTERM, then SIGKILL after a grace
period (10 s for ``docker stop``); a user presses Ctrl-C (SIGINT). Python's default for
SIGTERM kills the process with no clean-up, and a process that is PID 1 in a container
ignores it altogether, so the run would either leave a temporary file or be SIGKILLed
mid-write. Under :func:`interruptible` either signal raises :class:`Interrupted` in the
main thread instead; the runner then abandons the cases still to come, lets the write in
progress finish (the writer thread cannot be stopped half-way, and a write is atomic),
removes its temporary files and re-raises, and the command exits ``128 + signal``, the
shell's convention. What SIGKILL leaves behind (a temporary ``.bratskit-*.partial``) is
removed at the start of the next run (:func:`submission.predict.output_folder.prepare`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: The signals a run handles, each ending it with exit code 128 + its number.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A run stopped by a signal. A ``BaseException`` (as ``KeyboardInterrupt`` is), so the
    runner's per-case ``except Exception`` does not take it for one case's failure.

    Attributes:
        signum: the signal's number.
        written: case ids written before the run stopped (set by the runner).
        left: case ids found but not written.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.written: list[str] = []
        self.left: list[str] = []

    @property
    def exit_code(self) -> int:
        """``128 + signum``: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


class _Deferral:
    """Whether the main thread is inside :func:`uninterrupted`, and the signal that came."""

    depth = 0
    signum: int | None = None


_deferral = _Deferral()


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A signal that arrives inside the block raises :class:`Interrupted` where it ends,
    not half-way: for steps that must not be cut in two, such as a write handed to the
    writer thread and recorded as pending (cut between the two, the write would finish
    unrecorded and the run would report the case as not reached)."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if _deferral.depth == 0 and _deferral.signum is not None:
            signum, _deferral.signum = _deferral.signum, None
            raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """For the block's duration, the first SIGTERM or SIGINT raises :class:`Interrupted` in
    the main thread; a second one while the run cleans up is logged and ignored (SIGKILL is
    what a caller that will not wait sends next). Outside the main thread (where Python
    cannot install handlers) the block runs with the signals as they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handle(signum: int, _frame) -> None:
        nonlocal raised
        name = signal.Signals(signum).name
        if raised:
            log.warning("%s again: still cleaning up", name)
            return
        raised = True
        log.warning("%s: stopping; the case being written is finished, later ones are not", name)
        if _deferral.depth:
            _deferral.signum = signum  # raised where the uninterrupted block ends
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
