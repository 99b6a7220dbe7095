"""Per-case rows, per-region summaries and CSV/JSON/table output (CONTRACT.md section 5).

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
STATISTICS: tuple[str, ...] = ("mean", "std", "median", "q25", "q75")
_TABLE_HEADINGS = ("mean", "std", "median", "25%", "75%")


def _statistics(values: list[float]) -> dict[str, float]:
    data = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    data = data[~np.isnan(data)]
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
    """

    scheme: str
    labels: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cohort: str = "gli"

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

    def add_case(self, case: str, scores: dict[str, dict[str, float]]) -> None:
        """Append one case's ``{region: {metric: value}}`` scores as rows."""
        for region, values in scores.items():
            self.rows.append({"case": case, "region": region, **values})

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{region: {metric: {"mean", "std", "median", "q25", "q75"}}}``, NaN-skipping."""
        return {
            region: {
                metric: _statistics(
                    [row.get(metric) for row in self.rows if row["region"] == region]
                )
                for metric in self.metrics
            }
            for region in self.regions
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: NaN and infinities become None."""
        return _json_safe(
            {
                "scheme": self.scheme,
                "labels": self.labels,
                "cohort": self.cohort,
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
            f"scheme {self.scheme}, labels {self.labels}"
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
                count = sum(
                    1
                    for row in self.rows
                    if row["region"] == region and not math.isnan(row.get(metric, math.nan))
                )
                lines.append(
                    f"{region:<7}{metric:<{width + 2}}"
                    + "".join(f"{stats[s]:>10.4f}" for s in STATISTICS)
                    + f"{count:>6}"
                )
        return "\n".join(lines)
