"""bratskit export: training runs (or ONNX files trained elsewhere) to a model bundle.

Imports :mod:`submission` (bundle manifest, preprocessing, synthetic cases) and
:mod:`train` (models, recipes, checkpoints); nothing imports this package but the
``bratskit export`` registration. The pieces live in their modules, so that importing
:mod:`export.cli` stays free of torch:

    ``runs``         run folders, fold checkpoints, eval-mode probability models
    ``convert``      ONNX / float16 ONNX / TorchScript files, each parity-checked
    ``parity``       realistic parity inputs and the check against the eager model
    ``build``        runs to a bundle (:func:`export.build.export_runs`)
    ``imported``     ONNX files to a bundle (:func:`export.imported.import_onnx`)
    ``recommended``  the bundle's ensemble and post-processing defaults, from the recipes
    ``staging``      all-or-nothing output folders
    ``errors``       the exceptions, one per exit code
    ``cli``          the click command
"""

__all__: list[str] = []
