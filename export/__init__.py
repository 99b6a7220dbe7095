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

``bratskit import`` (issue 15: models trained with nnU-Net v2 or MONAI, their own
inference recorded as the manifest's ``pipelines``; needs the ``import`` extra):

    ``nnunet_folder``   results folder, plans, checkpoints (allow-listed unpickling)
    ``nnunet_network``  trainer and architecture checks, the network rebuilt and exported
    ``nnunet_labels``   channel, label and post-processing mapping to the challenge's
    ``nnunet_import``   a results folder to a bundle (:func:`export.nnunet_import.import_nnunet`)
    ``foreign_json``    their JSON files, read as data (failures are exit 3)
    ``monai_config``    a MONAI bundle's configs, read as JSON against a whitelist
    ``monai_import``    a MONAI bundle to a bundle (:func:`export.monai_import.import_monai`)
    ``import_cli``, ``monai_cli``  the click group ``import`` and its commands
"""

__all__: list[str] = []
