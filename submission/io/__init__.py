"""Case input and output on disk: case discovery and loading (:mod:`.cases`), NIfTI grids and
atomic label-map writes (:mod:`.nifti`), and the MLCube parameters file (:mod:`.parameters`)."""

__all__ = ["cases", "nifti", "parameters"]
