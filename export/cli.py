"""``bratskit export``: training runs or ONNX files to a checked model bundle.

Registered by :mod:`submission.cli` (``from export.cli import export``). Only click and
the runtime's light modules are imported here; torch, onnx and onnxruntime are imported
when an export runs, and a missing one exits with 4 and the install command.

Exit codes (:mod:`submission.exit_codes`, by the categories of :mod:`export.errors`): 0 ok;
1 an export or parity check failed (nothing written); 2 usage error, including a non-empty
``--out`` without ``--force``; 3 an unusable run, checkpoint, ONNX file or bundle; 4 a
missing dependency.
"""

from __future__ import annotations

from pathlib import Path

import click

from export.errors import require_modules
from submission.brats import MODALITIES, SCHEMES
from submission.exit_codes import BadValueError, exit_on_error
from submission.predict.preprocess import CROP_POLICIES

_IMPORT_ONLY = ("regions", "channels", "outputs", "divisor", "crop")
_RUN_ONLY = ("formats", "opset", "fp16")


def _split(value: str, upper: bool = False) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(v.upper() if upper else v.lower() for v in items)


def _require_dependencies() -> None:
    require_modules(
        "bratskit export needs torch, the train/ package, onnx and onnxruntime",
        ("onnx", "onnxruntime", "torch", "train.models"),
        "pip install -e '.[train]' onnx onnxruntime",
    )


def _check_mode(given: dict[str, bool], onnx_mode: bool) -> None:
    flags = {name: f"--{name.replace('formats', 'format')}" for name in given}
    wrong = _RUN_ONLY if onnx_mode else _IMPORT_ONLY
    bad = [flags[n] for n in wrong if given[n]]
    if bad:
        what = "training runs, not --onnx imports" if onnx_mode else "--onnx imports only"
        raise click.UsageError(f"{', '.join(bad)} apply to {what}")


@click.command(name="export")
@click.argument("runs", nargs=-1, metavar="[RUN]...", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Bundle folder to write.")
@click.option("--format", "formats", help="Formats to write: onnx,torchscript [both].")
@click.option("--opset", type=int, help="ONNX opset [17].")
@click.option("--fp16", is_flag=True, help="Also write a float16 ONNX file per member.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@click.option("--labels", type=click.Choice(list(SCHEMES)), help="Label scheme written.")
@click.option(
    "--onnx",
    "onnx_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Bundle ONNX files trained elsewhere, one per fold; further arguments are more files.",
)
@click.option("--regions", help="--onnx: the files' output regions in order, e.g. TC,WT,ET.")
@click.option("--channels", help=f"--onnx: input channel order [{','.join(MODALITIES)}].")
@click.option(
    "--outputs", type=click.Choice(["logits", "probabilities"]), help="--onnx: what they output."
)
@click.option("--divisor", type=click.IntRange(min=1), help="--onnx: size divisor [16].")
@click.option("--crop", type=click.Choice(CROP_POLICIES), help="--onnx: crop policy [brain].")
@click.option("--info", type=click.Path(path_type=Path), help="Describe a bundle and exit.")
# The export steps check their settings with ValueError: a bad value of a flag.
@exit_on_error({ValueError: BadValueError})
def export(runs, out, formats, opset, fp16, force, labels, onnx_files, info, **import_opts):
    """Export training RUNs (every fold, every member) to a model bundle, each file
    checked against the eager model; or bundle ONNX files; or describe a bundle.

    \b
    bratskit export RUN [RUN ...] --out BUNDLE [--format onnx,torchscript] [--fp16]
    bratskit export --onnx FILE [FILE ...] --regions TC,WT,ET --outputs logits --out BUNDLE
    bratskit export --info BUNDLE
    """
    from submission.predict.bundle_description import describe
    from submission.predict.bundle_files import load_bundle

    given = {k: v is not None for k, v in import_opts.items()}
    given |= {"formats": formats is not None, "opset": opset is not None, "fp16": fp16}
    if info is not None:
        if runs or out or onnx_files or any(given.values()):
            raise click.UsageError("--info takes only the bundle folder")
        click.echo(describe(load_bundle(info), info))
        return
    onnx_mode = bool(onnx_files)
    _check_mode(given, onnx_mode)
    if out is None:
        raise click.UsageError("missing --out BUNDLE")
    if not runs and not onnx_mode:
        raise click.UsageError("pass one or more training RUN folders (or --onnx FILE ...)")
    _require_dependencies()
    if onnx_mode:
        manifest = _import(list(onnx_files) + list(runs), out, labels, force, import_opts)
    else:
        manifest = _export(runs, out, formats, opset, fp16, labels, force)
    click.echo(describe(manifest, out))


def _export(runs, out, formats, opset, fp16, labels, force):
    from export.build import export_runs
    from export.convert import DEFAULT_OPSET, EXPORT_FORMATS, ExportSettings

    settings = ExportSettings(
        formats=_split(formats) if formats is not None else EXPORT_FORMATS,
        opset=DEFAULT_OPSET if opset is None else opset,
        fp16=fp16,
    )
    return export_runs(runs, out, settings, labels=labels, force=force)


def _import(files, out, labels, force, opts):
    from export.imported import import_onnx

    missing = [f"--{k}" for k in ("regions", "outputs") if opts[k] is None]
    if missing:
        raise ValueError(f"--onnx needs {' and '.join(missing)}")
    return import_onnx(
        files,
        out,
        regions=_split(opts["regions"], upper=True),
        channels=_split(opts["channels"]) if opts["channels"] else MODALITIES,
        outputs=opts["outputs"],
        divisor=opts["divisor"] or 16,
        crop=opts["crop"] or "brain",
        labels=labels or "2021",
        force=force,
    )
