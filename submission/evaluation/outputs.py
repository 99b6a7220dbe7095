"""The files ``bratskit evaluate`` writes from one result: CSV, JSON, Markdown, box plot,
or all four in a report folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from submission.evaluation.plots import write_boxplot
from submission.evaluation.report import EvaluationResult

__all__ = ["write_outputs"]


def write_outputs(
    result: EvaluationResult,
    *,
    csv_path: Path | None = None,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    boxplot_path: Path | None = None,
    report_dir: Path | None = None,
) -> None:
    """Write each output asked for (None: not asked), the report folder's four included.

    Tables are written before plots, so without matplotlib every table is still there.

    Raises:
        ImportError: a plot was asked and matplotlib is missing; the message says the
            other outputs were written.
        OSError: a file or the report folder cannot be written.
        ValueError: a plot of a result that scored no case.
    """

    def write_markdown(path: Path) -> None:
        path.write_text(result.to_markdown(), encoding="utf-8")

    tables: list[tuple[Path | None, Callable[[Path], object]]] = [
        (csv_path, result.to_csv),
        (json_path, result.to_json),
        (markdown_path, write_markdown),
    ]
    plots = [boxplot_path]
    if report_dir is not None:
        tables += [
            (report_dir / "cases.csv", result.to_csv),
            (report_dir / "summary.json", result.to_json),
            (report_dir / "evaluation.md", write_markdown),
        ]
        plots.append(report_dir / "boxplot.png")
        report_dir.mkdir(parents=True, exist_ok=True)
    for path, write in tables:
        if path is not None:
            write(path)
    try:
        for path in plots:
            if path is not None:
                write_boxplot(result, path)
    except ImportError as exc:
        raise ImportError(f"{exc} (the other outputs were written)") from exc
