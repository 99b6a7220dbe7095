"""Exit codes of every ``bratskit`` command, what each means, and the one guard that gives them.

This module is their only owner: the README's "Exit codes" table, ``bratskit --help`` and
``entrypoint.sh`` say what :data:`MEANINGS` says (tests compare them).

An error a user can cause belongs to a category, an exception base class whose exit code
:data:`EXIT_CODE_OF` gives. Each domain error subclasses one category and keeps its
builtin base, so code that catches the builtin is unaffected: ``BundleError`` is a
``ValueError`` and an :class:`UnusableError`, ``BackendError`` a ``RuntimeError`` and an
:class:`UnavailableError`. Every command runs under :func:`exit_on_error`, which turns such
an error into ``error: <message>`` on stderr and its exit code; any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click

__all__ = [
    "EXIT_CODE_OF",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "MEANINGS",
    "BadValueError",
    "CommandError",
    "FailedError",
    "Reading",
    "UnavailableError",
    "UnusableError",
    "exit_code_of",
    "exit_on_error",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
#: A run stopped by a signal: 128 + the signal's number, the shell's convention
#: (``submission.predict.interruption``).
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

#: What each exit code means, the same for every command (the README's table, word for word).
MEANINGS: dict[int, str] = {
    EXIT_OK: "everything succeeded / is valid",
    EXIT_FAILED: ("at least one case failed or is invalid (every other case was still processed)"),
    EXIT_USAGE: "usage error (unknown flag, bad value)",
    EXIT_INPUT: (
        "the input or output folder as a whole is unusable (missing, no case, not writable), "
        "or the bundle is (missing, altered file, unknown format version)"
    ),
    EXIT_UNAVAILABLE: (
        "the sub-command is not available in this installation or version, or no backend "
        "can run the bundle here (e.g. `--device cuda` without a GPU)"
    ),
    EXIT_SIGINT: "interrupted by SIGINT (Ctrl-C); as 143",
    EXIT_SIGTERM: (
        "interrupted by SIGTERM (`docker stop`, a time-out): the write in progress was "
        "finished, nothing temporary is left, the cases not reached have no new output"
    ),
}


class CommandError(Exception):
    """An error that ends a command with one line and its category's exit code."""


class FailedError(CommandError):
    """Exit 1: the work was done and failed its check (an export failing parity)."""


class BadValueError(CommandError):
    """Exit 2: a value the user gave is wrong (a recipe, a split, a case id, ``--out``)."""


class UnusableError(CommandError):
    """Exit 3: an input, output or bundle as a whole is unusable (missing, altered, empty)."""


class UnavailableError(CommandError):
    """Exit 4: not available here (a package this installation lacks, no backend, no GPU)."""


#: The one table from error to exit code: a category and every error that subclasses it.
EXIT_CODE_OF: dict[type[CommandError], int] = {
    FailedError: EXIT_FAILED,
    BadValueError: EXIT_USAGE,
    UnusableError: EXIT_INPUT,
    UnavailableError: EXIT_UNAVAILABLE,
}

#: Builtin exception types a command's library raises where it has no domain error yet,
#: and the category each means in that command (e.g. ``{ValueError: UnusableError}``).
Reading = Mapping[type[Exception], type[CommandError]]

# click's own exits (usage errors, --help, ctx.exit) keep their codes and their output.
_CLICK_EXITS = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def exit_code_of(exc: BaseException, reading: Reading | None = None) -> int | None:
    """The exit code of ``exc``: its category's, else that of the category ``reading``
    gives its nearest builtin type; None for anything else (a bug, or click's own exit)."""
    if isinstance(exc, _CLICK_EXITS):
        return None
    mro = type(exc).__mro__
    category = next((c for c in mro if c in EXIT_CODE_OF), None)
    if category is None and reading:
        category = next((reading[c] for c in mro if c in reading), None)
    return None if category is None else EXIT_CODE_OF[category]


@contextmanager
def exit_on_error(reading: Reading | None = None) -> Iterator[None]:
    """Run a command's body; an error of a category ends it with ``error: <message>`` on
    stderr and the category's exit code.

    Used as a decorator on every command (``@exit_on_error()``) or as a ``with`` block.

    Args:
        reading: builtin exceptions that the command's library raises instead of a domain
            error, and the category each means there (see :data:`Reading`); a category
            always wins over a reading (a ``BundleError`` is 3 even where ``ValueError``
            reads as a bad value).
    """
    try:
        yield
    except Exception as exc:
        code = exit_code_of(exc, reading)
        if code is None:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(code)
