"""Per-epoch logs of a fold: a CSV file and TensorBoard scalars, written by rank 0."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


class EpochLog:
    """Appends one row per epoch to ``log.csv`` and the same scalars to ``tb/``.

    A resumed fold keeps appending to the same files; TensorBoard is optional (a warning
    when the ``tensorboard`` package is missing, the CSV is always written).
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "log.csv"
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(folder) / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed; writing %s only", self.path)

    def write(self, row: dict[str, float]) -> None:
        """Append ``row`` (must hold ``epoch``); new columns start a new header."""
        exists = self.path.exists()
        fields = list(row)
        if exists:
            with self.path.open() as f:
                header = next(csv.reader(f), [])
            if header != fields:
                exists = False
        with self.path.open("a" if exists else "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=fields)
            if not exists:
                out.writeheader()
            out.writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and not math.isnan(value):  # NaN: an epoch not validated
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
