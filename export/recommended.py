"""Recommended ensemble and post-processing defaults per recipe: the one table.

``bratskit predict`` flags override what the bundle recommends. Recipes not listed (the
``tiny`` CPU recipe, paper 003's ``effunet``, user recipes) get :class:`Recommended`'s
defaults: the mean of the folds' probabilities and no ET threshold. Paper 003 averages
the per-modality sigmoid outputs inside its model (section 3) and says nothing about
fold ensembles or post-processing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from submission.predict.bundle import Recommended

log = logging.getLogger(__name__)

RECOMMENDED: dict[str, Recommended] = {
    # Paper 004, section 3.2: confidence-based ensembling, the top N/2 members by mean
    # probability over their segmented region, averaged with equal weights.
    "segresnet-redundancy": Recommended(ensemble="confidence", top_k=None),
    # Paper 002, section 2.5: regression voting ensemble (the mean of the 5 folds'
    # probabilities, then binarised); section 2.6 and Table 1: an ET prediction of fewer
    # than 600 voxels is emptied (best ET Dice, 80.22, with localisation).
    "resunet-localization": Recommended(ensemble="mean", et_threshold=600),
}


def recommended_for(recipes: Sequence[str]) -> Recommended:
    """The defaults of the recipe(s) a bundle was trained with.

    Several runs of one recipe share its defaults; runs of different recipes that
    recommend different settings fall back to :class:`Recommended`'s defaults.
    """
    choices = {RECOMMENDED.get(name, Recommended()) for name in recipes}
    if len(choices) == 1:
        return choices.pop()
    log.warning(
        "runs of recipes %s recommend different ensembles; the bundle recommends the "
        "defaults (mean, no ET threshold)",
        ", ".join(sorted(set(recipes))),
    )
    return Recommended()
