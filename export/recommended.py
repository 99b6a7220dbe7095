"""A bundle's recommended ensemble and post-processing defaults, from its runs' recipes.

Each recipe states its paper's defaults in its ``recommended:`` block
(``train/recipes/*.yaml``), and the run's ``config.yaml`` carries it; ``bratskit
predict`` flags override what the bundle recommends. A recipe without the block (the
``tiny`` CPU recipe, paper 003's ``effunet``, most user recipes) gets
:class:`Recommended`'s defaults: the mean of the folds' probabilities and no ET
threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from submission.predict.bundle import Recommended
from train.config import TrainConfig

log = logging.getLogger(__name__)


def recommended_for(configs: Sequence[TrainConfig]) -> Recommended:
    """The defaults of the recipe(s) a bundle was trained with.

    Several runs of one recipe share its defaults; runs whose recipes recommend
    different settings fall back to :class:`Recommended`'s defaults, with a warning.
    """
    choices = [c.recommended for c in configs]
    if all(choice == choices[0] for choice in choices):
        return choices[0]
    log.warning(
        "runs of recipes %s recommend different ensembles; the bundle recommends the "
        "defaults (mean, no ET threshold)",
        ", ".join(sorted({c.name for c in configs})),
    )
    return Recommended()
