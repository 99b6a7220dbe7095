"""Scoring as the BraTS organisers score (CONTRACT.md section 5).

Three evaluation schemes:

- ``2021``: CaPTk overlap metrics per region (Dice, HD95, sensitivity, specificity),
  :mod:`.overlap_2021`;
- ``2023``: lesion-wise Dice and HD95 of the organisers' 2023 script,
  :mod:`.lesionwise_2023`;
- ``2025``: the official brats-evaluation package (panoptica), :mod:`.panoptica_2025`,
  needing ``pip install bratskit[eval]``; panoptica is imported only when used.

:func:`evaluate_folders` matches prediction files to references and returns an
:class:`EvaluationResult` (rows, summaries, CSV, JSON, table);
:func:`~submission.evaluation.outputs.write_outputs` writes the files ``bratskit evaluate``
asks for, :mod:`.plots` the box plot. The ``score_*`` functions score arrays directly
(label maps in, ``{region: {metric: value}}`` out).
"""

from submission.evaluation.evaluate import DEFAULT_LABELS, EVALUATION_SCHEMES, evaluate_folders
from submission.evaluation.lesionwise_2023 import score_2023
from submission.evaluation.overlap_2021 import score_2021
from submission.evaluation.panoptica_2025 import score_2025
from submission.evaluation.report import SCHEME_METRICS, EvaluationResult

__all__ = [
    "DEFAULT_LABELS",
    "EVALUATION_SCHEMES",
    "SCHEME_METRICS",
    "EvaluationResult",
    "evaluate_folders",
    "score_2021",
    "score_2023",
    "score_2025",
]
