"""The team's workbench around the predict path, never run by the container's job:
synthetic cases of every task (:mod:`.synth`; the brain in :mod:`.synth_anatomy`, each
task's lesions in :mod:`.synth_lesions` and :mod:`.synth_tasks`, intensities in
:mod:`.synth_render`), pictures (:mod:`.view`), tuning a bundle's defaults
(:mod:`.tuning`; one ``bratskit tune`` run in :mod:`.tuning_run`), checking folders by
the challenge rules (:mod:`.validate`), zipping validation-phase uploads (:mod:`.package`)
and the organisers' run of an image (:mod:`.rehearse`)."""

__all__ = [
    "package",
    "rehearse",
    "synth",
    "synth_anatomy",
    "synth_lesions",
    "synth_render",
    "synth_tasks",
    "tuning",
    "tuning_run",
    "validate",
    "view",
]
