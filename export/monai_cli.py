"""``bratskit import monai``: a MONAI bundle of BraTS segmentation to a checked bundle
(:mod:`export.monai_import`). :mod:`export.import_cli` adds the command to the ``import``
group. torch, MONAI, onnx and onnxruntime are imported when an import runs; a missing one
exits with 4 and the install command.

Exit codes (:mod:`submission.exit_codes`): 0 ok; 1 the export or its parity check failed
(nothing written); 2 a bad option, or a non-empty ``--out`` without ``--force``; 3 a
bundle bratskit cannot run faithfully (an unknown transform, network or expression); 4 a
missing dependency.
"""

from __future__ import annotations

from pathlib import Path

import click

from export.errors import IMPORT_INSTALL, require_modules
from submission.exit_codes import BadValueError, exit_on_error
from submission.tasks import TASKS


def _require_dependencies() -> None:
    require_modules(
        "bratskit import monai needs torch, monai, onnx and onnxruntime",
        ("monai", "onnx", "onnxruntime", "torch"),
        IMPORT_INSTALL,
    )


@click.command(name="monai")
@click.argument("bundle_dir", metavar="BUNDLE_DIR", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle folder.")
@click.option(
    "--channels",
    help="Modality of each input channel, e.g. t1c,t1n,t2w,t2f [metadata.json's channel_def].",
)
@click.option(
    "--task",
    default="gli-2021",
    show_default=True,
    help=f"BraTS task whose labels the model predicts ({', '.join(TASKS)}).",
)
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
# The import checks its options with ValueError: a bad value of a flag.
@exit_on_error({ValueError: BadValueError})
def monai(bundle_dir, out, channels, task, force):
    """Import a MONAI bundle (configs/inference.json, configs/metadata.json,
    models/model.pt, the model zoo's brats_mri_segmentation layout): its network built
    and exported to ONNX, parity-checked; its inference (Orientationd, Spacingd,
    NormalizeIntensityd, SlidingWindowInferer, sigmoid) recorded for the runtime. The
    configs are read, never run: understood are LoadImaged, EnsureChannelFirstd,
    EnsureTyped, ToTensord, CastToTyped, Orientationd, Spacingd, NormalizeIntensityd;
    SlidingWindowInferer; Activationsd(sigmoid), Invertd, AsDiscreted (SaveImaged and
    Lambdad skipped); networks SegResNet, UNet, DynUNet.

    \b
    bratskit import monai BUNDLE_DIR --out BUNDLE [--channels t1c,t1n,t2w,t2f] [--task T]
    """
    _require_dependencies()
    from export.monai_import import import_monai
    from submission.predict.bundle_description import describe

    manifest = import_monai(
        bundle_dir,
        out,
        channels=None if channels is None else tuple(c.strip() for c in channels.split(",")),
        task=task,
        force=force,
    )
    click.echo(describe(manifest, out))
