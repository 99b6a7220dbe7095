"""The files ``bratskit evaluate`` writes: each asked one, the report folder's four, tables
before plots. (The command itself, with matplotlib absent too, is tested in test_report.py.)"""

from __future__ import annotations

import json

import pytest

from submission.evaluation import EvaluationResult
from submission.evaluation.outputs import write_outputs

SCORES = {"dice": 1.0, "hd95": 0.0, "sensitivity": 1.0, "specificity": 1.0}


def _result(cases: int) -> EvaluationResult:
    result = EvaluationResult("2021", "2021")
    for i in range(cases):
        result.add_case(f"BraTS2021_{i:05d}", {r: dict(SCORES) for r in ("WT", "TC", "ET")})
    return result


def test_every_output_asked_is_written_and_the_report_holds_the_same(tmp_path):
    result = _result(2)
    report = tmp_path / "out" / "report"  # parent missing too: created
    single = {name: tmp_path / name for name in ("c.csv", "s.json", "e.md", "b.png")}
    write_outputs(
        result,
        csv_path=single["c.csv"],
        json_path=single["s.json"],
        markdown_path=single["e.md"],
        boxplot_path=single["b.png"],
        report_dir=report,
    )
    assert sorted(p.name for p in report.iterdir()) == [
        "boxplot.png",
        "cases.csv",
        "evaluation.md",
        "summary.json",
    ]
    assert (report / "cases.csv").read_text() == single["c.csv"].read_text()
    assert (report / "evaluation.md").read_text() == result.to_markdown()
    assert single["e.md"].read_text() == result.to_markdown()
    assert json.loads((report / "summary.json").read_text()) == result.to_dict()
    assert single["s.json"].read_text() == (report / "summary.json").read_text()
    for png in (report / "boxplot.png", single["b.png"]):
        assert png.read_bytes().startswith(b"\x89PNG")


def test_tables_are_written_before_a_plot_fails(tmp_path):
    """A result that scored no case cannot be plotted; its tables are written first."""
    with pytest.raises(ValueError, match="no scores to plot"):
        write_outputs(_result(0), boxplot_path=tmp_path / "b.png", report_dir=tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "cases.csv",
        "evaluation.md",
        "summary.json",
    ]
    assert not (tmp_path / "b.png").exists()
