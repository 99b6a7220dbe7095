"""The click parameter types and option groups that several ``bratskit`` commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from submission.brats import SCHEMES
from submission.predict.backends import BACKENDS, DEVICES, PRECISIONS
from submission.predict.options import MAX_THREADS, parse_threshold
from submission.tasks import AUTO, TASKS

SCHEME_CHOICE = click.Choice(list(SCHEMES))
#: ``--task``: a registry key (any case) or ``auto``.
TASK_CHOICE = click.Choice([*TASKS, AUTO], case_sensitive=False)
#: ``predict --task``: a registry key; the container's labels never depend on case names.
TASK_NAME_CHOICE = click.Choice(list(TASKS), case_sensitive=False)
# Paths are not checked by click: a missing folder is an unusable folder (exit 3), with the
# library's message, not a usage error.
dir_path = click.Path(file_okay=False, path_type=Path)
file_path = click.Path(dir_okay=False, path_type=Path)
# A folder the command checks itself, so that a file given for it is unusable (exit 3) too.
any_path = click.Path(path_type=Path)


def runtime_options(precision: bool) -> Callable[[Callable], Callable]:
    """``--device``, ``--backend``, ``--precision`` (when asked) and ``--threads``: where
    and how the members run (:class:`submission.predict.options.RuntimeOptions`)."""
    options = [
        click.option(
            "--device", type=click.Choice(["auto", *DEVICES]), default="auto", show_default=True
        ),
        click.option(
            "--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True
        ),
    ]
    if precision:
        options.append(
            click.option(
                "--precision",
                type=click.Choice(["auto", *PRECISIONS]),
                default="auto",
                show_default=True,
            )
        )
    options.append(
        click.option(
            "--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads [all cores]."
        )
    )

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


class _Threshold(click.ParamType):
    """``--threshold``: :func:`~submission.predict.options.parse_threshold`'s two forms."""

    name = "P|WT=P,TC=P,ET=P"

    def convert(self, value, param, ctx):
        if isinstance(value, (float, dict)):
            return value
        try:
            return parse_threshold(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


THRESHOLD = _Threshold()
