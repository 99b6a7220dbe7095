"""`bratskit evaluate` Markdown summary, box plot and report folder, through the real command."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from submission.brats import get_scheme
from submission.evaluation import EvaluationResult
from tests.conftest import write_nifti

BRATSKIT = [sys.executable, "-m", "submission"]
SHAPE = (24, 24, 16)
PERFECT, NO_ET, MISSING = "BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"


def _reference() -> np.ndarray:
    """Edema box around a necrotic core with an enhancing centre (2021 labels)."""
    labels = get_scheme("2021").labels
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[4:18, 4:18, 3:13] = labels["ED"]
    seg[7:15, 7:15, 5:11] = labels["NCR"]
    seg[9:13, 9:13, 6:10] = labels["ET"]
    return seg


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict[str, Path]:
    """One real `evaluate` run over three cases of known Dice.

    WT, TC, ET Dice: PERFECT 1, 1, 1 (prediction = reference); NO_ET 1, 1, 0 (enhancing
    tumour relabelled necrotic core); MISSING 0, 0, 0 with HD95 374 (no prediction).
    """
    root = tmp_path_factory.mktemp("evaluate")
    labels = get_scheme("2021").labels
    for case in (PERFECT, NO_ET, MISSING):
        write_nifti(root / "ref" / f"{case}_seg.nii.gz", _reference())
    write_nifti(root / "pred" / f"{PERFECT}.nii.gz", _reference())
    no_et = _reference()
    no_et[no_et == labels["ET"]] = labels["NCR"]
    write_nifti(root / "pred" / f"{NO_ET}.nii.gz", no_et)
    paths = {
        "markdown": root / "summary.md",
        "boxplot": root / "boxplot.png",
        "report": root / "out" / "report",  # parent missing too: created
    }
    result = subprocess.run(
        [*BRATSKIT, "evaluate", "--pred", root / "pred", "--ref", root / "ref"]
        + [arg for name, path in paths.items() for arg in (f"--{name}", path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote report to {paths['report']}" in result.stdout
    return {**paths, "root": root}


def _section(markdown: str, heading: str) -> list[str]:
    """The lines under ``heading`` up to the next heading."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return [line for line in lines[start:end] if line]


def test_markdown_has_run_facts_and_summary_tables(evaluated):
    text = evaluated["markdown"].read_text()
    assert text.startswith("# Evaluation: BraTS 2021 (CaPTk overlap metrics)\n")
    for fact in ("label scheme: 2021", "cases scored: 3", "missing predictions: 1"):
        assert f"- {fact}" in text
    assert _section(text, "### Dice")[2:] == [
        "| WT | 0.6667 | 0.5774 | 1.0000 | 0.5000 | 1.0000 | 3 |",
        "| TC | 0.6667 | 0.5774 | 1.0000 | 0.5000 | 1.0000 | 3 |",
        "| ET | 0.3333 | 0.5774 | 0.0000 | 0.0000 | 0.5000 | 3 |",
    ]
    assert _section(text, "### Dice")[0].startswith("| region | mean | std | median | 25% | 75%")
    # HD95 of WT: 0, 0 and the missing case's 374.
    assert "| WT | 124.67 | 215.93 | 0.00 | 0.00 | 187.00 | 3 |" in _section(text, "### HD95")
    for metric in ("Sensitivity", "Specificity"):
        assert f"### {metric}" in text


def test_markdown_lists_every_case_and_the_missing_one(evaluated):
    text = evaluated["markdown"].read_text()
    rows = _section(text, "## Per case")
    assert rows[0] == (
        "| case | WT Dice | WT HD95 | TC Dice | TC HD95 | ET Dice | ET HD95 | note |"
    )
    by_case = {row.split(" | ")[0].lstrip("| "): row for row in rows[2:]}
    assert list(by_case) == [PERFECT, NO_ET, MISSING]
    assert by_case[PERFECT] == f"| {PERFECT} | 1.0000 | 0.00 | 1.0000 | 0.00 | 1.0000 | 0.00 |  |"
    assert by_case[NO_ET].startswith(f"| {NO_ET} | 1.0000 | 0.00 | 1.0000 | 0.00 | 0.0000 | ")
    assert by_case[MISSING] == (
        f"| {MISSING} | 0.0000 | 374.00 | 0.0000 | 374.00 | 0.0000 | 374.00 | missing |"
    )
    assert _section(text, "## Missing predictions") == [f"- {MISSING}"]


def _assert_picture(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    pixels = imread(path)
    height, width, channels = pixels.shape
    assert channels in (3, 4) and 300 < height < width  # two panels side by side
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 50  # boxes, points and text, not a blank canvas


def test_boxplot_is_a_real_picture(evaluated):
    _assert_picture(evaluated["boxplot"])


def test_report_folder_holds_the_four_outputs(evaluated):
    report = evaluated["report"]
    assert sorted(p.name for p in report.iterdir()) == [
        "boxplot.png",
        "cases.csv",
        "evaluation.md",
        "summary.json",
    ]
    assert (report / "evaluation.md").read_text() == evaluated["markdown"].read_text()
    with (report / "cases.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["case", "region", "dice"] and len(rows) == 1 + 3 * 3
    summary = json.loads((report / "summary.json").read_text())
    assert summary["missing"] == [MISSING]
    assert summary["summary"]["ET"]["dice"]["mean"] == pytest.approx(1 / 3)
    _assert_picture(report / "boxplot.png")


def test_without_matplotlib_plots_exit_4_after_the_other_outputs(evaluated, tmp_path):
    root = evaluated["root"]
    # A real interpreter in which importing matplotlib fails, as in the runtime image.
    args = ["evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref")]
    args += ["--report", str(tmp_path / "report")]
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from submission.cli import main\n"
        f"main({args!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "matplotlib" in result.stderr and "pip install" in result.stderr
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == ["cases.csv", "evaluation.md", "summary.json"]


def test_importing_the_command_needs_no_matplotlib():
    code = (
        "import sys\n"
        "import submission.cli, submission.evaluation, submission.evaluation.plots\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _result_2025() -> EvaluationResult:
    """Two regions, RC empty in every case (NaN), one WT value NaN."""
    result = EvaluationResult(scheme="2025", labels="2023", missing=["d"])
    metrics = ("lesion_dice", "f1", "global_dice", "lesion_hd95", "global_hd95")
    for case, value in [("a", 0.2), ("b", 0.4), ("c", math.nan), ("d", 0.0)]:
        result.add_case(case, {"WT": dict.fromkeys(metrics, value)})
        result.add_case(case, {"RC": dict.fromkeys(metrics, math.nan)})
    return result


def test_markdown_of_a_2025_result_with_nan_regions():
    text = _result_2025().to_markdown()
    assert text.startswith("# Evaluation: BraTS 2025 (panoptica, brats-evaluation)\n")
    assert "- cohort: gli" in text
    titles = ("Lesion-wise Dice", "Lesion F1", "Global Dice", "Lesion-wise HD95", "Global HD95")
    for title in titles:
        assert f"### {title}" in text
    wt, rc = _section(text, "### Lesion-wise Dice")[2:]
    assert wt == "| WT | 0.2000 | 0.2000 | 0.2000 | 0.1000 | 0.3000 | 3 |"
    assert rc == "| RC | n/a | n/a | n/a | n/a | n/a | 0 |"
    assert _section(text, "## Per case")[0] == (
        "| case | WT Lesion-wise Dice | WT Lesion-wise HD95 | RC Lesion-wise Dice"
        " | RC Lesion-wise HD95 | note |"
    )
    assert "| c | n/a | n/a | n/a | n/a |  |" in text


def test_boxplot_of_a_region_without_values(tmp_path):
    from submission.evaluation.plots import write_boxplot

    _assert_picture(write_boxplot(_result_2025(), tmp_path / "plot.png"))


def test_boxplot_of_nothing_is_an_error(tmp_path):
    from submission.evaluation.plots import write_boxplot

    with pytest.raises(ValueError, match="no scores to plot"):
        write_boxplot(EvaluationResult(scheme="2021", labels="2021"), tmp_path / "plot.png")
