"""The predict path, top to bottom: what ``entrypoint.sh`` -> ``bratskit predict`` runs.

:mod:`.runner` walks the cases (read ahead, write behind); per case :mod:`.engine`
resamples a case of another spacing to the members' (:mod:`.resample`),
preprocesses (:mod:`.preprocess`), localises (:mod:`.tumour_window`, paper 002 section
2.3), runs every member (:mod:`.members`) of the :mod:`.bundle` on a :mod:`.backends`
session (full volume or :mod:`.sliding_window`), combines them (:mod:`.ensemble`) and
assembles the labels (:mod:`.postprocess`), as the :mod:`.options` say. Nothing here
imports the workbench or the evaluation packages.
"""

__all__ = [
    "backends",
    "bundle",
    "engine",
    "ensemble",
    "members",
    "options",
    "postprocess",
    "preprocess",
    "resample",
    "runner",
    "sliding_window",
    "tumour_window",
]
