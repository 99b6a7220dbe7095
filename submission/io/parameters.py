"""Prediction settings from a parameters file: the MLCube ``infer --parameters_file`` form.

CONTRACT.md section 1: the 2023/2024 test phases invoke the image as ``infer --data_path
D --parameters_file F --output_path O``, and the file may be empty. bratskit reads it as
a YAML mapping whose keys are ``bratskit predict`` options, with ``-`` or ``_``::

    ensemble: confidence
    top_k: 2
    et_threshold: 600
    threshold: {WT: 0.3, TC: 0.5, ET: 0.4}     # or one number, or "WT=0.3,TC=0.5,ET=0.4"
    labels: "2023"

Keys that are not ``predict`` options are logged and ignored: organisers' files may carry
settings meant for other containers. Values are checked exactly like the command-line
flags; command-line flags win over the file, the file over the bundle's defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import yaml

from submission.exit_codes import UnusableError

log = logging.getLogger(__name__)


class ParametersError(ValueError, UnusableError):
    """A parameters file that cannot be read, or that is not a mapping."""


def read_parameters(path: Path, known: set[str]) -> dict[str, Any]:
    """The ``known`` option names (underscored) set in the YAML file at ``path``.

    An empty file (or one holding only comments, or ``null``) sets nothing.

    Raises:
        ParametersError: the file is missing or unreadable, is not YAML, or is not a
            mapping of option names to values.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ParametersError(f"cannot read parameters file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ParametersError(f"parameters file {path} is not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParametersError(
            f"parameters file {path} must be a mapping of option names to values, "
            f"not a {type(raw).__name__}"
        )
    chosen: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in known:
            chosen[name] = value
        else:
            log.warning("parameters file %s: ignoring %r, not a predict option", path, key)
    return chosen


def flag_values(ctx: click.Context, path: Path, flags: dict[str, Any]) -> dict[str, Any]:
    """The options of the file at ``path`` that the command line of ``ctx`` left at their
    defaults (``flags``: the command's option values by name), each converted and checked by
    its flag's own click type, as if given on the command line.

    Raises:
        ParametersError: as :func:`read_parameters`.
        click.BadParameter: a value its flag refuses (a usage error naming the file).
    """
    params = {p.name: p for p in ctx.command.params if p.name in flags}
    values = read_parameters(path, set(params))
    chosen = {}
    for name, value in values.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            continue
        # YAML reads `labels: 2023` as a number: choices and ranges convert from text, and
        # a mapping (`threshold: {WT: 0.4, TC: 0.5, ET: 0.5}`) is written as on the command
        # line (`WT=0.4,TC=0.5,ET=0.5`).
        if isinstance(value, bool) or value is None:
            text = value
        elif isinstance(value, dict):
            text = ",".join(f"{key}={item}" for key, item in value.items())
        else:
            text = str(value)
        try:
            chosen[name] = params[name].type_cast_value(ctx, text)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{exc.message} (in {path})", ctx, params[name]) from None
    return chosen
