"""``bratskit train``: k-fold training from a recipe (registered by :mod:`submission.cli`).

Only click is imported here, so ``bratskit --help`` stays fast and works without torch;
the training stack is imported when the command runs, and a missing training dependency
exits with 4 and the install command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from submission.brats import REGION_NAMES
from submission.exit_codes import BadValueError, UnavailableError, exit_on_error
from submission.io.cases import InputError

log = logging.getLogger(__name__)


def _folds(value: str | None) -> tuple[int, ...] | None:
    if value is None or value == "all":
        return None
    try:
        folds = tuple(sorted({int(v) for v in value.split(",")}))
    except ValueError:
        raise click.BadParameter(f"expected 'all' or fold numbers like 0,1 got {value!r}") from None
    if any(f < 0 for f in folds):
        raise click.BadParameter(f"fold numbers must be >= 0, got {value!r}")
    return folds


def _regions(value: str | None) -> tuple[str, ...] | None:
    if value is None or value == "all":
        return None
    regions = tuple(v.strip().upper() for v in value.split(","))
    bad = [r for r in regions if r not in REGION_NAMES]
    if bad:
        raise click.BadParameter(
            f"regions must be from {','.join(REGION_NAMES).lower()} or 'all', got {value!r}"
        )
    return regions


@click.command(name="train")
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    help="Training folder: BraTS case folders with their _seg/-seg label maps.",
)
@click.option("--config", "config_name", help="Recipe name (see --describe) or YAML file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--folds", default="all", show_default=True, help="Folds to train: all or 0,1,...")
@click.option(
    "--regions",
    default="all",
    show_default=True,
    help="Members predicting these regions: all or wt,tc,et (rc, cc, gtv for the tasks "
    "that have them).",
)
@click.option(
    "--task",
    metavar="TASK",
    help="BraTS task the recipe is retargeted to: its regions, modalities and labels "
    "(gli-2021 default; gli-post, met, ped, men, men-rt, ...; see the README's tasks).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Override the global batch (samples per optimiser step, split across torchrun processes).",
)
@click.option("--workers", type=click.IntRange(min=0), help="Data-loader worker processes.")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), help="Override mixed precision."
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Preprocessed-cache folder (default RUN/cache), shareable between runs.",
)
@click.option("--resume", is_flag=True, help="Continue each fold after its last checkpoint.")
@click.option(
    "--describe",
    metavar="NAME|FILE",
    help="Print the recipe's architectures and parameter counts, then exit.",
)
# A ValueError of the training stack is a split, recipe or crop that does not fit the data
# or the model: a bad value.
@exit_on_error({ValueError: BadValueError})
def train(
    data,
    config_name,
    out,
    folds,
    regions,
    task,
    epochs,
    batch_size,
    workers,
    device,
    amp,
    cache,
    resume,
    describe,
) -> None:
    """K-fold training of a recipe: resunet-localization, segresnet-redundancy, effunet,
    effunet-joint, tiny."""
    try:
        from train.describe import describe_recipe
        from train.recipe_files import load_config
        from train.run import RunRequest, train_run
    except ModuleNotFoundError as exc:
        raise UnavailableError(
            f"bratskit train needs the training extra ({exc.name} is missing): "
            "pip install torch==2.13.0 -e '.[train]' (CPU) or with your CUDA torch"
        ) from None
    overrides = {"epochs": epochs, "batch_size": batch_size, "num_workers": workers, "amp": amp}
    if describe:
        recipe = load_config(describe)
        click.echo(describe_recipe(recipe.for_task(task) if task else recipe))
        return
    missing = [
        n for n, v in (("--data", data), ("--config", config_name), ("--out", out)) if v is None
    ]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --describe NAME)")
    config = load_config(config_name, overrides)
    if task:
        config = config.for_task(task)
    if not data.is_dir():
        raise InputError(f"training folder {data} does not exist")
    request = RunRequest(data, out, config, _folds(folds), _regions(regions), device, resume, cache)
    summary = train_run(request)
    for fold, entry in sorted(summary.get("folds", {}).items(), key=lambda kv: int(kv[0])):
        scores = " ".join(f"{r} {d:.4f}" for r, d in entry["dice"].items())
        click.echo(f"fold {fold}: best epoch {entry['best_epoch']}  Dice {scores}")
    click.echo(f"summary: {out / 'summary.json'}")
