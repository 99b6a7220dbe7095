"""The one ``bratskit`` command (DESIGN.md, "One command").

Exit codes, the same for every sub-command:
    0  everything succeeded / is valid
    1  at least one case failed or is invalid (the others were still processed)
    2  usage error (bad flag or value)
    3  the input or output folder as a whole is unusable (missing, empty, not writable)
    4  the sub-command is not available in this installation or version
"""

from __future__ import annotations

import importlib
import logging
import resource
import sys
from pathlib import Path

import click

from submission import __version__
from submission.brats import LAYOUT_YEARS, SCHEMES
from submission.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from submission.io.cases import InputError
from submission.predict.backends import BACKENDS, DEVICES, PRECISIONS
from submission.predict.ensemble import ENSEMBLE_METHODS
from submission.predict.postprocess import ET_REPLACEMENTS
from submission.predict.runner import OutputError
from submission.workbench.validate import Report
from submission.workbench.view import view_command  # matplotlib only when it draws

SCHEME_CHOICE = click.Choice(list(SCHEMES))
# Folders are not checked by click: a missing one is an unusable folder (exit 3), with the
# library's message, not a usage error.
existing_dir = click.Path(file_okay=False, path_type=Path)


def _fail_input(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INPUT)


def _emit(report: Report, title: str) -> bool:
    click.echo(f"== {title}")
    for line in report.lines():
        click.echo(line)
    n_bad = len(report.failures)
    click.echo(f"{len(report.findings) - n_bad} valid, {n_bad} invalid")
    return report.ok


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bratskit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """bratskit: train, export and ship BraTS segmentation ensembles."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cases", default=5, show_default=True, type=click.IntRange(1))
@click.option("--layout", type=click.Choice(LAYOUT_YEARS), default="2021", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--shape", nargs=3, type=click.IntRange(16), default=(240, 240, 155), show_default=True
)
@click.option(
    "--first",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Number the cases from here (a held-out set beside a training set).",
)
def synth(
    out: Path, cases: int, layout: str, seed: int, shape: tuple[int, int, int], first: int
) -> None:
    """Write synthetic BraTS-like cases with ground truth (*_seg / *-seg) to OUT."""
    from submission.workbench.synth import write_synthetic_dataset

    # Per-case progress arrives through logging.
    ids = write_synthetic_dataset(
        out, cases=cases, layout=layout, seed=seed, shape=tuple(shape), first=first
    )
    click.echo(f"wrote {len(ids)} {layout} cases to {out}")


@main.command()
@click.argument("input_dir", metavar="INPUT", type=existing_dir)
@click.option("--output", type=existing_dir, help="Also check this output folder against INPUT.")
@click.option("--labels", type=SCHEME_CHOICE, default="2021", show_default=True)
def validate(input_dir: Path, output: Path | None, labels: str) -> None:
    """Check INPUT (and OUTPUT against it) by the challenge rules; exit 0 only if all valid."""
    from submission.workbench.validate import validate_input, validate_output

    try:
        ok = _emit(validate_input(input_dir), f"input {input_dir}")
        if output is not None:
            ok &= _emit(validate_output(input_dir, output, labels), f"output {output}")
    except InputError as exc:
        _fail_input(exc)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@main.command()
@click.option("--pred", required=True, type=existing_dir, help="Predictions <id>.nii.gz.")
@click.option("--ref", required=True, type=existing_dir, help="References, flat or in folders.")
@click.option(
    "--scheme",
    type=click.Choice(["2021", "2023", "2025"]),
    default="2021",
    show_default=True,
    help="Whose metrics: CaPTk 2021, lesion-wise 2023, panoptica 2025.",
)
@click.option(
    "--labels",
    type=SCHEME_CHOICE,
    default=None,
    help="Label scheme of the files [2021 for --scheme 2021, else 2023].",
)
@click.option(
    "--cohort",
    default="gli",
    show_default=True,
    help="Cohort parameters for 2023/2025 (gli, ssa, ped, men, met).",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Markdown summary: statistics per region, Dice and HD95 per case.",
)
@click.option(
    "--boxplot",
    "boxplot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG box plot of Dice and HD95 per region (needs matplotlib).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write evaluation.md, boxplot.png, cases.csv and summary.json to this folder.",
)
def evaluate(
    pred: Path,
    ref: Path,
    scheme: str,
    labels: str | None,
    cohort: str,
    csv_path: Path | None,
    json_path: Path | None,
    markdown_path: Path | None,
    boxplot_path: Path | None,
    report_dir: Path | None,
) -> None:
    """Score predictions against references as the organisers do."""
    from submission.evaluation import evaluate_folders
    from submission.evaluation.plots import write_boxplot

    try:
        result = evaluate_folders(pred, ref, scheme, labels=labels, cohort=cohort)
    except (InputError, ValueError) as exc:
        _fail_input(exc)
    click.echo(result.format_table())
    for case_id in result.missing:
        click.echo(f"missing prediction: {case_id} (scored as the organisers do)")

    def write_markdown(path: Path) -> None:
        path.write_text(result.to_markdown(), encoding="utf-8")

    tables = [(csv_path, result.to_csv), (json_path, result.to_json)]
    tables.append((markdown_path, write_markdown))
    plots = [boxplot_path]
    if report_dir is not None:
        tables += [
            (report_dir / "cases.csv", result.to_csv),
            (report_dir / "summary.json", result.to_json),
            (report_dir / "evaluation.md", write_markdown),
        ]
        plots.append(report_dir / "boxplot.png")
    # Tables before plots: without matplotlib the other outputs are still written.
    try:
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
        for path, write in tables:
            if path is not None:
                write(path)
        for path in plots:
            if path is not None:
                write_boxplot(result, path)
    except ImportError as exc:
        click.echo(f"error: {exc} (the other outputs were written)", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except (OSError, ValueError) as exc:
        _fail_input(exc)
    if report_dir is not None:
        click.echo(f"wrote report to {report_dir}")


@main.command()
@click.argument("out", type=existing_dir)
@click.option("--zip", "zip_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--labels", type=SCHEME_CHOICE, default="2021", show_default=True)
@click.option(
    "--input",
    "input_dir",
    type=existing_dir,
    help="Input cases, to check shapes, affines and completeness too.",
)
def package(out: Path, zip_path: Path, labels: str, input_dir: Path | None) -> None:
    """Validate the predictions in OUT, then zip them for a validation-phase upload."""
    from submission.workbench.package import package_predictions

    try:
        report = package_predictions(out, zip_path, labels=labels, input_dir=input_dir)
    except (InputError, ValueError, OutputError) as exc:
        _fail_input(exc)
    if not _emit(report, f"predictions {out}"):
        click.echo("nothing packaged: fix the files above first", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"wrote {zip_path} ({len(report.findings)} predictions)")


@main.command(name="bundle")
@click.argument("bundle_dir", metavar="BUNDLE", type=existing_dir)
@click.option("--formats", help="Only these file formats, e.g. onnx,onnx-fp16 [all].")
@click.option(
    "--copy-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the files of --formats and a manifest listing only them to this new folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
def bundle_command(
    bundle_dir: Path, formats: str | None, copy_to: Path | None, as_json: bool
) -> None:
    """Verify a BUNDLE (manifest and every file's sha256) and describe it."""
    import json

    from submission.predict.bundle import (
        FILE_FORMATS,
        MANIFEST,
        BundleError,
        copy_bundle,
        describe,
        load_bundle,
        sha256_file,
    )

    chosen = tuple(f.strip() for f in formats.split(",")) if formats else FILE_FORMATS
    try:
        if copy_to is not None:
            manifest, shown = copy_bundle(bundle_dir, copy_to, chosen), copy_to
        else:
            manifest, shown = load_bundle(bundle_dir, chosen), bundle_dir
    except BundleError as exc:
        _fail_input(exc)
    if not as_json:
        click.echo(describe(manifest, shown))
        return
    summary = {
        "bundle": str(shown),
        "manifest_sha256": sha256_file(Path(shown) / MANIFEST),
        "label_scheme": manifest.label_scheme,
        "members": len(manifest.members),
        "formats": sorted(manifest.formats),
        "bratskit_version": manifest.bratskit_version,
        "recommended": manifest.to_dict()["recommended"],
    }
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.option("--input", "input_dir", required=True, type=existing_dir, help="Input cases.")
@click.option(
    "--output", "output_dir", required=True, type=existing_dir, help="Where <id>.nii.gz go."
)
@click.option("--bundle", required=True, type=existing_dir, help="Model bundle folder.")
@click.option("--ensemble", type=click.Choice(ENSEMBLE_METHODS), help="[bundle's choice]")
@click.option("--top-k", type=click.IntRange(1), help="Members averaged by confidence [N/2].")
@click.option("--et-threshold", type=click.IntRange(0), help="ET minimum voxels [bundle's].")
@click.option("--et-replace", type=click.Choice(ET_REPLACEMENTS), help="What small ET becomes.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), help="[0.5]")
@click.option("--labels", type=SCHEME_CHOICE, help="Label scheme written [bundle's].")
@click.option("--tta", is_flag=True, help="Mirroring test-time augmentation (8 flips).")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), help="Sliding window.")
@click.option(
    "--max-memory",
    type=click.FloatRange(min=0, min_open=True),
    help="GB of activations per call; above it the sliding window is used.",
)
@click.option("--device", type=click.Choice(["auto", *DEVICES]), default="auto", show_default=True)
@click.option(
    "--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True
)
@click.option(
    "--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [all cores].")
@click.option("--sequential", is_flag=True, help="Do not overlap reading and writing with compute.")
@click.option(
    "--parameters",
    "parameters_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of the options above (MLCube parameters_file); flags given here win.",
)
@click.pass_context
def predict(
    ctx: click.Context,
    input_dir: Path,
    output_dir: Path,
    bundle: Path,
    parameters_file: Path | None,
    **flags,
) -> None:
    """Segment every case of INPUT into OUTPUT with a bundle (the container's job)."""
    from submission.predict.backends import BackendError
    from submission.predict.bundle import BundleError
    from submission.predict.engine import Engine, PredictOptions, RuntimeOptions
    from submission.predict.runner import run_cases

    if parameters_file is not None:
        flags.update(_file_parameters(ctx, parameters_file, flags))
    runtime = RuntimeOptions(*(flags.pop(k) for k in ("backend", "device", "precision", "threads")))
    sequential = flags.pop("sequential")
    flags["max_memory_gb"] = flags.pop("max_memory")
    try:
        engine = Engine(bundle, PredictOptions(**flags), runtime)
    except BundleError as exc:
        _fail_input(exc)
    except BackendError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        report = run_cases(input_dir, output_dir, engine, overlap_io=not sequential)
    except (InputError, OutputError) as exc:
        _fail_input(exc)
    n = len(report.written) + len(report.failed)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    mean = sum(report.seconds.values()) / max(len(report.seconds), 1)
    click.echo(
        f"{len(report.written)} of {n} cases written to {output_dir} in "
        f"{report.wall_seconds:.1f} s ({mean:.1f} s per case), peak RSS {peak_gb:.2f} GB"
    )
    for case_id, problem in sorted(report.failed.items()):
        click.echo(f"FAILED {case_id}: {problem}", err=True)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=existing_dir)
@click.option(
    "--data", "data_dir", required=True, type=existing_dir, help="Cases with reference labels."
)
@click.option("--run", "run_dir", type=existing_dir, help="Training run: out-of-fold scores.")
@click.option(
    "--splits",
    "splits_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A splits.json instead of --run.",
)
@click.option("--et-thresholds", help="ET minimum volumes to try [0,50,100,...,1000].")
@click.option("--probability-thresholds", help="Region thresholds to try [0.3,0.4,0.5].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the scores; leave the bundle unchanged.")
@click.option(
    "--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True
)
@click.option("--device", type=click.Choice(["auto", *DEVICES]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [all cores].")
def tune(
    bundle_dir: Path,
    data_dir: Path,
    run_dir: Path | None,
    splits_path: Path | None,
    et_thresholds: str | None,
    probability_thresholds: str | None,
    json_path: Path | None,
    dry_run: bool,
    backend: str,
    device: str,
    threads: int | None,
) -> None:
    """Choose BUNDLE's ensemble, top-k, ET and region thresholds on labelled cases.

    With --run (or --splits) the cases are the run's training cases, each predicted only
    by the members of the fold that held it out; without, --data must be cases no member
    trained on.
    """
    from submission.predict.backends import BackendError
    from submission.predict.bundle import BundleError, with_recommended, write_manifest
    from submission.predict.engine import Engine, RuntimeOptions
    from submission.workbench.tuning import (
        ET_THRESHOLDS,
        PROBABILITY_THRESHOLDS,
        TuningError,
        read_splits,
        score_candidates,
    )

    if run_dir is not None and splits_path is not None:
        raise click.UsageError("give --run or --splits, not both")
    if run_dir is not None:
        splits_path = run_dir / "splits.json"
    et_values = _numbers(et_thresholds, int, ET_THRESHOLDS, "--et-thresholds")
    probabilities = _numbers(
        probability_thresholds, float, PROBABILITY_THRESHOLDS, "--probability-thresholds"
    )
    try:
        splits = None if splits_path is None else read_splits(splits_path)
        engine = Engine(bundle_dir, runtime=RuntimeOptions(backend, device, "fp32", threads))
        result = score_candidates(engine, data_dir, splits, et_values, probabilities)
    except (BundleError, TuningError, InputError, OSError, KeyError) as exc:
        _fail_input(exc)
    except BackendError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    click.echo(f"== {result.mode}: {len(result.cases)} cases, mean Dice of WT, TC and ET")
    click.echo(result.table())
    best, current = result.best, result.current
    gain = result.score(best) - result.score(current)
    click.echo(
        f"best: {best} (mean Dice {result.score(best):.4f}); current defaults: {current} "
        f"({result.score(current):.4f}); improvement {gain:+.4f}"
    )
    if json_path is not None:
        result.to_json(json_path)
    if best == current:
        click.echo("the bundle's defaults are already the best: unchanged")
    elif dry_run:
        click.echo("--dry-run: bundle unchanged")
    else:
        manifest = with_recommended(
            engine.manifest,
            ensemble=best.ensemble,
            top_k=best.top_k,
            et_threshold=best.et_threshold,
            threshold=best.recommended_threshold,
        )
        write_manifest(bundle_dir, manifest)
        click.echo(f"wrote the new defaults into {bundle_dir / 'manifest.json'}")


def _numbers(text: str | None, kind: type, default: tuple, flag: str) -> tuple:
    """A comma-separated list of numbers, or ``default`` when not given."""
    if text is None:
        return default
    try:
        return tuple(kind(t) for t in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"comma-separated numbers, got {text!r}", param_hint=flag
        ) from None


def _file_parameters(ctx: click.Context, path: Path, flags: dict) -> dict:
    """The options of ``path`` that the command line left at their defaults, each checked
    by its flag's type (a bad value is a usage error naming the file)."""
    from submission.io.parameters import ParametersError, read_parameters

    params = {p.name: p for p in ctx.command.params if p.name in flags}
    try:
        values = read_parameters(path, set(params))
    except ParametersError as exc:
        _fail_input(exc)
    chosen = {}
    for name, value in values.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            continue
        # YAML reads `labels: 2023` as a number: choices and ranges convert from text.
        text = value if isinstance(value, bool) or value is None else str(value)
        try:
            chosen[name] = params[name].type_cast_value(ctx, text)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{exc.message} (in {path})", ctx, params[name]) from None
    return chosen


def _unavailable(name: str, provider: str, summary: str) -> click.Command:
    @click.command(
        name=name,
        help=f"{summary} (provided by {provider}).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.pass_context
    def command(ctx: click.Context) -> None:
        click.echo(
            f"bratskit {name} is provided by {provider}, which this installation "
            "does not include yet.",
            err=True,
        )
        ctx.exit(EXIT_UNAVAILABLE)

    return command


def _add_optional_command(module: str, name: str, provider: str, summary: str) -> None:
    """Sub-commands from packages the runtime image leaves out (train/, export/)."""
    try:
        command = getattr(importlib.import_module(module), name)
    except ImportError:
        main.add_command(_unavailable(name, provider, summary))
        return
    main.add_command(command)


_add_optional_command(
    "train.cli", "train", "the train/ package (models and k-fold training)", "k-fold training"
)
_add_optional_command(
    "export.cli", "export", "the export/ package (ONNX/TorchScript bundles)", "export runs"
)
main.add_command(view_command, name="view")
