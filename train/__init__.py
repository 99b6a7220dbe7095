"""bratskit training: the papers' networks, losses and recipes, k-fold training.

Imports :mod:`submission` for case I/O, preprocessing and inference (one code path with
the container); the container never contains this package. Entry point:
``bratskit train`` (:mod:`train.cli`); the pieces live in their modules (``models``,
``losses``, ``augment``, ``cache``, ``data``, ``splits``, ``trainer``, ``run``).
"""

__all__: list[str] = []
