"""Issue 15, must show 1 (nnU-Net): on the same cases, ``bratskit predict`` with a bundle
imported by ``bratskit import nnunet`` writes the labels nnU-Net v2's own predictor
(``nnUNetPredictor``, converted back to BraTS labels by Dataset137's
``convert_labels_back_to_BraTS``) writes, on at least 99.9% of the voxels of every case:
region-based and label-based models, mirroring TTA on and off, and with nnU-Net's
post-processing (``postprocessing.json``).

The label-based model's cases are on 2 x 1 x 1 mm voxels, so nnU-Net transposes them, and
one of them is on 1 mm voxels, so nnU-Net resamples it to the plans' spacing and back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from submission.cli import main
from tests.export.nnunet_fixtures import (  # noqa: F401 (the *_fixture are fixtures)
    FOLDS,
    bratskit_labels,
    copy_results,
    import_bundle,
    nnunet_label_bundle_fixture,
    nnunet_label_model_fixture,
    nnunet_region_bundle_fixture,
    nnunet_region_model_fixture,
    predict_with_nnunet,
    write_postprocessing,
)

#: Fraction of voxels on which the two label maps must agree (the issue's figure).
AGREEMENT = 0.999


def bratskit_predict(input_dir, output_dir, bundle, tta: bool) -> dict[str, np.ndarray]:
    """``bratskit predict`` in-process (asserting success); its label maps by case id."""
    args = ["predict", "--input", input_dir, "--output", output_dir, "--bundle", bundle]
    result = CliRunner().invoke(main, [str(a) for a in [*args, *(["--tta"] if tta else [])]])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return bratskit_labels(output_dir)


def assert_agree(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    assert any((labels > 0).any() for labels in expected.values()), "nnU-Net found no tumour"
    for case, labels in expected.items():
        assert got[case].shape == labels.shape, case
        agreement = float(np.mean(got[case] == labels))
        assert agreement >= AGREEMENT, f"{case}: labels agree on {agreement:.5%} of voxels"


@pytest.mark.parametrize("tta", [False, True], ids=["no-tta", "tta"])
@pytest.mark.parametrize("kind", ["region", "label"])
def test_labels_agree_with_nnunets_predictor(kind, tta, request, tmp_path):
    model = request.getfixturevalue(f"nnunet_{kind}_model")
    bundle = request.getfixturevalue(f"nnunet_{kind}_bundle")
    expected = predict_with_nnunet(model, model.test_dir, tmp_path / "nnunet", mirroring=tta)
    got = bratskit_predict(model.test_dir, tmp_path / "bratskit", bundle, tta)
    assert_agree(got, expected)


def test_postprocessing_agrees_with_nnunets(nnunet_region_model, tmp_path):
    """nnU-Net's keep-the-largest-component steps of ``postprocessing.json``: all
    foreground labels, then the enhancing tumour region (as ``determine_postprocessing``
    writes them), applied by nnU-Net's ``apply_postprocessing`` and by bratskit."""
    steps = [{"labels_or_regions": [1, 2, 3]}, {"labels_or_regions": (3,)}]
    results = copy_results(nnunet_region_model, tmp_path)
    write_postprocessing(
        results,
        ["remove_all_but_largest_component_from_segmentation"] * len(steps),
        json.loads(json.dumps(steps)),  # the JSON form: tuples become lists
    )
    bundle = import_bundle(results, tmp_path / "bundle")
    cases = nnunet_region_model.test_dir
    plain = predict_with_nnunet(nnunet_region_model, cases, tmp_path / "nnunet", False, FOLDS)
    expected = predict_with_nnunet(
        nnunet_region_model, cases, tmp_path / "nnunet-pp", False, FOLDS, postprocessing=steps
    )
    assert any((plain[c] != expected[c]).any() for c in plain), "post-processing changed nothing"
    assert_agree(bratskit_predict(cases, tmp_path / "bratskit", bundle, tta=False), expected)
