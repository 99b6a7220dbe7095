"""Per-case rows, per-region summaries and CSV/JSON/table/Markdown output (CONTRACT.md section 5).

Summaries are the statistics of the challenge papers' tables: mean, standard deviation,
median and the 25% and 75% quantiles of each region's per-case values. NaN values
(2025: a region empty in both maps) are skipped, as pandas does in brats-parse-metrics;
the standard deviation is the sample one (``ddof=1``, pandas' default), NaN for a single
case; quantiles interpolate linearly (numpy's and pandas' default).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from submission.evaluation.lesionwise_2023 import METRICS_2023
from submission.evaluation.overlap_2021 import METRICS_2021
from submission.evaluation.panoptica_2025 import METRICS_2025

#: Metric names of each evaluation scheme, in output order.
SCHEME_METRICS: dict[str, tuple[str, ...]] = {
    "2021": METRICS_2021,
    "2023": METRICS_2023,
    "2025": METRICS_2025,
}
#: The Dice and HD95 metric of each scheme: per-case Markdown table and box plot.
HEADLINE_METRICS: dict[str, tuple[str, str]] = {
    "2021": ("dice", "hd95"),
    "2023": ("lesion_dice", "lesion_hd95"),
    "2025": ("lesion_dice", "lesion_hd95"),
}
SCHEME_TITLES: dict[str, str] = {
    "2021": "BraTS 2021 (CaPTk overlap metrics)",
    "2023": "BraTS 2023 (lesion-wise metrics)",
    "2025": "BraTS 2025 (panoptica, brats-evaluation)",
}
METRIC_TITLES: dict[str, str] = {
    "dice": "Dice",
    "hd95": "HD95",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "lesion_dice": "Lesion-wise Dice",
    "lesion_hd95": "Lesion-wise HD95",
    "f1": "Lesion F1",
    "global_dice": "Global Dice",
    "global_hd95": "Global HD95",
}
STATISTICS: tuple[str, ...] = ("mean", "std", "median", "q25", "q75")
_TABLE_HEADINGS = ("mean", "std", "median", "25%", "75%")


def _statistics(data: np.ndarray) -> dict[str, float]:
    """Summary statistics of NaN-free values (see the module docstring)."""
    if data.size == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # std of a single value
        std = float(np.std(data, ddof=1)) if data.size > 1 else math.nan
    q25, median, q75 = (float(q) for q in np.percentile(data, [25, 50, 75]))
    return {"mean": float(np.mean(data)), "std": std, "median": median, "q25": q25, "q75": q75}


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities by None, recursively, so the JSON has no NaN tokens."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_metric(metric: str, value: float | None) -> str:
    """A value as the reports print it: distances 2 decimals, the rest 4, NaN as ``n/a``."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if "hd95" in metric else f"{value:.4f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(
    headings: list[str], rows: list[list[str]], text_columns: tuple[int, ...] = (0,)
) -> list[str]:
    """A Markdown table, left-aligned in ``text_columns`` and right-aligned elsewhere."""
    align = [":---" if i in text_columns else "---:" for i in range(len(headings))]
    return [_md_row(headings), _md_row(align), *(_md_row(r) for r in rows)]


@dataclass
class EvaluationResult:
    """Scores of a prediction folder against a reference folder.

    Attributes:
        scheme: evaluation scheme, ``2021``, ``2023`` or ``2025``.
        labels: label scheme the maps were read in.
        rows: one dict per case and region: ``{"case", "region", <metric>: float}``,
            missing and failed cases included with the scores the organisers give them.
        missing: case ids with a reference but no prediction.
        unmatched: prediction file names that match no reference.
        failed: case id -> reason, for cases whose files could not be scored (scored as
            missing predictions when the reference was readable, left out otherwise).
        cohort: cohort whose parameters were used (2023, 2025; ignored by 2021).
        task: the task (:mod:`submission.tasks`) that chose labels and cohort, if any.
    """

    scheme: str
    labels: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cohort: str = "gli"
    task: str | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names of this scheme, in output order."""
        return SCHEME_METRICS[self.scheme]

    @property
    def regions(self) -> list[str]:
        """Regions in the order they first appear in the rows."""
        return list(dict.fromkeys(row["region"] for row in self.rows))

    @property
    def cases(self) -> list[str]:
        """Case ids in the order they first appear in the rows."""
        return list(dict.fromkeys(row["case"] for row in self.rows))

    @property
    def headline_metrics(self) -> tuple[str, ...]:
        """This scheme's Dice and HD95 metric names, those it has (:data:`HEADLINE_METRICS`)."""
        return tuple(m for m in HEADLINE_METRICS[self.scheme] if m in self.metrics)

    def values(self, region: str, metric: str) -> np.ndarray:
        """Per-case values of one region and metric in row order, float64, NaN skipped."""
        data = np.array(
            [
                math.nan if row.get(metric) is None else float(row[metric])
                for row in self.rows
                if row["region"] == region
            ],
            dtype=np.float64,
        )
        return data[~np.isnan(data)]

    def add_case(self, case: str, scores: dict[str, dict[str, float]]) -> None:
        """Append one case's ``{region: {metric: value}}`` scores as rows."""
        for region, values in scores.items():
            self.rows.append({"case": case, "region": region, **values})

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{region: {metric: {"mean", "std", "median", "q25", "q75"}}}``, NaN-skipping."""
        return {
            region: {metric: _statistics(self.values(region, metric)) for metric in self.metrics}
            for region in self.regions
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: NaN and infinities become None."""
        return _json_safe(
            {
                "scheme": self.scheme,
                "labels": self.labels,
                "cohort": self.cohort,
                "task": self.task,
                "rows": self.rows,
                "summary": self.summary(),
                "missing": self.missing,
                "unmatched": self.unmatched,
                "failed": self.failed,
            }
        )

    def to_json(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON (no NaN tokens: missing values are null)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    def to_csv(self, path: Path) -> Path:
        """Write the rows as CSV: ``case, region, <metrics>``; NaN as an empty cell."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "region", *self.metrics])
            for row in self.rows:
                values = [row.get(m, math.nan) for m in self.metrics]
                writer.writerow(
                    [row["case"], row["region"]]
                    + ["" if v is None or math.isnan(v) else repr(float(v)) for v in values]
                )
        return path

    def format_table(self) -> str:
        """Fixed-width summary: one line per region and metric, with the case count."""
        header = (
            (f"task {self.task}, " if self.task else "")
            + f"scheme {self.scheme}, labels {self.labels}"
            + (f", cohort {self.cohort}" if self.scheme != "2021" else "")
            + f": {len(self.cases)} cases, {len(self.missing)} missing, "
            f"{len(self.failed)} failed, {len(self.unmatched)} unmatched predictions"
        )
        width = max([len("metric"), *(len(m) for m in self.metrics)])
        lines = [
            header,
            f"{'region':<7}{'metric':<{width + 2}}"
            + "".join(f"{h:>10}" for h in _TABLE_HEADINGS)
            + f"{'n':>6}",
        ]
        for region, metrics in self.summary().items():
            for metric, stats in metrics.items():
                count = self.values(region, metric).size
                lines.append(
                    f"{region:<7}{metric:<{width + 2}}"
                    + "".join(f"{stats[s]:>10.4f}" for s in STATISTICS)
                    + f"{count:>6}"
                )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """Markdown report: run facts, summary statistics per metric and region, per-case
        Dice and HD95, and the missing, failed and unmatched cases.

        Uses the same statistics as :meth:`summary`; numbers as :func:`format_metric`.
        """
        scored = len(self.cases)
        lines = [
            f"# Evaluation: {SCHEME_TITLES[self.scheme]}",
            "",
            *([f"- task: {self.task}"] if self.task else []),
            f"- label scheme: {self.labels}",
            *([f"- cohort: {self.cohort}"] if self.scheme != "2021" else []),
            f"- cases scored: {scored}",
            f"- missing predictions: {len(self.missing)} (scored as the organisers do)",
            f"- failed cases: {len(self.failed)}",
            f"- unmatched predictions: {len(self.unmatched)}",
            "",
            *self._markdown_summary(),
            *self._markdown_cases(),
        ]
        lists = [
            ("Missing predictions", self.missing),
            ("Failed cases", [f"{case}: {why}" for case, why in self.failed.items()]),
            ("Unmatched predictions", self.unmatched),
        ]
        for title, items in lists:
            if items or title == "Missing predictions":
                lines += [f"## {title}", "", *([f"- {i}" for i in items] or ["None."]), ""]
        return "\n".join(lines)

    def _markdown_summary(self) -> list[str]:
        lines = [
            "## Summary per region",
            "",
            "Over cases, NaN skipped; n: cases with a value.",
            "",
        ]
        summary = self.summary()
        for metric in self.metrics:
            rows = [
                [
                    region,
                    *(format_metric(metric, summary[region][metric][s]) for s in STATISTICS),
                    str(self.values(region, metric).size),
                ]
                for region in self.regions
            ]
            lines += [f"### {METRIC_TITLES.get(metric, metric)}", ""]
            lines += [*_md_table(["region", *_TABLE_HEADINGS, "n"], rows), ""]
        return lines

    def _markdown_cases(self) -> list[str]:
        metrics = self.headline_metrics
        by_key = {(row["case"], row["region"]): row for row in self.rows}
        headings = [
            "case",
            *(f"{r} {METRIC_TITLES.get(m, m)}" for r in self.regions for m in metrics),
            "note",
        ]
        rows = []
        for case in self.cases:
            cells = [
                format_metric(m, by_key.get((case, r), {}).get(m))
                for r in self.regions
                for m in metrics
            ]
            note = "failed" if case in self.failed else "missing" if case in self.missing else ""
            rows.append([case, *cells, note])
        table = _md_table(headings, rows, text_columns=(0, len(headings) - 1))
        return ["## Per case", "", *table, ""]
