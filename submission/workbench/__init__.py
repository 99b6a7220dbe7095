"""The team's workbench around the predict path, never run by the container's job:
synthetic cases (:mod:`.synth`, :mod:`.synth_anatomy`), pictures (:mod:`.view`), tuning a
bundle's defaults (:mod:`.tuning`), checking folders by the challenge rules
(:mod:`.validate`) and zipping validation-phase uploads (:mod:`.package`)."""

__all__ = ["package", "synth", "synth_anatomy", "tuning", "validate", "view"]
