"""``bratskit import``: models trained with nnU-Net v2 (or MONAI) to a checked bundle.

Registered by :mod:`submission.cli` as the sub-command ``import`` (the group is
:data:`import_group`; ``import`` is a Python keyword, so the module also exposes it under
that name for the lazy table). Only click and light modules are imported here; torch,
onnx, onnxruntime and nnunetv2 are imported when an import runs, and a missing one exits
with 4 and the install command.

Exit codes (:mod:`submission.exit_codes`, by the categories of :mod:`export.errors`): 0 ok;
1 an export or parity check failed (nothing written); 2 usage error, including a bad
option value and a non-empty ``--out`` without ``--force``; 3 a results folder,
checkpoint or model bratskit cannot run faithfully; 4 a missing dependency.
"""

from __future__ import annotations

from pathlib import Path

import click

from export.errors import IMPORT_INSTALL, require_modules
from export.monai_cli import monai
from submission.exit_codes import BadValueError, exit_on_error
from submission.tasks import TASKS


def _require_dependencies() -> None:
    require_modules(
        "bratskit import nnunet needs torch, nnunetv2, onnx and onnxruntime",
        ("nnunetv2", "onnx", "onnxruntime", "torch"),
        IMPORT_INSTALL,
    )


def _folds(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        folds = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"comma-separated fold numbers, got {value!r}") from None
    if not folds or min(folds) < 0:
        raise click.BadParameter(f"comma-separated fold numbers >= 0, got {value!r}")
    return folds


@click.group(name="import")
def import_group() -> None:
    """Import models trained with nnU-Net v2 or MONAI into a model bundle whose predictions
    match their framework's own predictor."""


@import_group.command(name="nnunet")
@click.argument("results_dir", metavar="RESULTS_DIR", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle folder.")
@click.option("--folds", help="Folds to import, e.g. 0,1,2,3,4 [every fold_k with a checkpoint].")
@click.option(
    "--checkpoint",
    type=click.Choice(["final", "best"]),
    default="final",
    show_default=True,
    help="checkpoint_final.pth or checkpoint_best.pth.",
)
@click.option(
    "--task",
    default="gli-2021",
    show_default=True,
    help=f"BraTS task whose labels the model predicts ({', '.join(TASKS)}).",
)
@click.option("--channels", help="Modality of each input channel, e.g. t1n,t1c,t2w,t2f.")
@click.option("--label-map", help="nnU-Net label=challenge label, e.g. 1=2,2=1,3=4.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
# The import steps check their options with ValueError: a bad value of a flag.
@exit_on_error({ValueError: BadValueError})
def nnunet(results_dir, out, folds, checkpoint, task, channels, label_map, force):
    """Import the folds of an nnU-Net v2 results folder
    (<trainer>__<plans>__<configuration>/ with plans.json, dataset.json and
    fold_k/checkpoint_final.pth): each fold's network rebuilt from the plans, exported to
    ONNX and parity-checked; nnU-Net's preprocessing, sliding window, mirroring, fold
    averaging, label conversion and post-processing recorded for the runtime.

    \b
    bratskit import nnunet RESULTS_DIR --out BUNDLE [--folds 0,1,2,3,4] [--checkpoint best]
    """
    _require_dependencies()
    from export.nnunet_import import import_nnunet
    from export.nnunet_labels import parse_label_map
    from submission.predict.bundle_description import describe

    manifest = import_nnunet(
        results_dir,
        out,
        folds=_folds(folds),
        checkpoint=checkpoint,
        task=task,
        channels=None
        if channels is None
        else tuple(c.strip().lower() for c in channels.split(",")),
        label_map=None if label_map is None else parse_label_map(label_map),
        force=force,
    )
    click.echo(describe(manifest, out))


import_group.add_command(monai)
# ``getattr(module, "import")``: the name submission.cli's table looks the command up by.
globals()["import"] = import_group
