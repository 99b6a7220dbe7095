"""bratskit runtime, never torch: the ``bratskit`` command and what it runs, by stage.

brats, exit_codes   the BraTS vocabulary and the exit codes, one owner each
io/                 case discovery and loading, NIfTI grids and writes, parameters files
predict/            the container's predict path (``entrypoint.sh`` -> ``bratskit predict``)
evaluation/         the organisers' metrics
workbench/          the team's side: synth, view, tune, validate, package
cli                 the one command, thin over the packages above
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
