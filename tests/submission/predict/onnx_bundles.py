"""Small real ONNX models and bundles for runtime tests, built with onnx.helper (no torch).

A *pointwise* model is a 1x1x1 convolution from the 4 channels to R regions, then a
sigmoid (``probabilities``) or nothing (``logits``): its output at a voxel depends on that
voxel only, so full-volume, sliding-window and mirrored predictions must agree exactly
and tests can compute the expected result with numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

from submission.predict.bundle import Manifest, Recommended, write_manifest
from submission.predict.bundle_files import sha256_file
from submission.predict.members import Member, ModelFile
from submission.predict.sliding_window import SizeRule


def pointwise_onnx(path: Path, weights_rc: np.ndarray, bias_r: np.ndarray, logits=False) -> Path:
    """Write ``sigmoid(W x + b)`` (or ``W x + b``) per voxel as an ONNX file."""
    weights = np.asarray(weights_rc, dtype=np.float32)
    r, c = weights.shape
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["z"], kernel_shape=[1, 1, 1])]
    if logits:
        nodes.append(helper.make_node("Identity", ["z"], ["probs"]))
    else:
        nodes.append(helper.make_node("Sigmoid", ["z"], ["probs"]))
    dims = ["n", c, "d", "h", "w"]
    graph = helper.make_graph(
        nodes,
        "pointwise",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", r, "d", "h", "w"])],
        initializer=[
            numpy_helper.from_array(weights.reshape(r, c, 1, 1, 1), "w"),
            numpy_helper.from_array(np.asarray(bias_r, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    return path


def pointwise_member(
    bundle: Path,
    key: str,
    fold: int,
    regions: tuple[str, ...],
    weights_rc: np.ndarray,
    bias_r: np.ndarray,
    stage: str = "segmentation",
    logits: bool = False,
    divisor: int = 8,
) -> Member:
    """Write one pointwise member's file into ``bundle`` and describe it."""
    path = pointwise_onnx(bundle / f"{key}-fold{fold}.onnx", weights_rc, bias_r, logits)
    return Member(
        key=key,
        fold=fold,
        stage=stage,
        regions=regions,
        files={"onnx": ModelFile(path.name, sha256_file(path))},
        size_rule=SizeRule((divisor,) * 3),
        patch=(16, 16, 16),
        outputs="logits" if logits else "probabilities",
    )


def write_bundle(bundle: Path, members: list[Member], **fields) -> Path:
    """Write the manifest of ``members`` (fields: Manifest's other attributes)."""
    fields.setdefault("recommended", Recommended())
    write_manifest(bundle, Manifest(members=tuple(members), **fields))
    return bundle


def channel_bundle(bundle: Path, folds: int = 3, scale: float = 4.0) -> Path:
    """A 3-region bundle where region r of fold k is ``sigmoid(scale * (x_c - 0.2 k))``
    for channel c = r (t1n -> WT, t1c -> TC, t2w -> ET): members that disagree a little."""
    members = []
    for fold in range(folds):
        weights = np.zeros((3, 4))
        weights[[0, 1, 2], [0, 1, 2]] = scale
        members.append(
            pointwise_member(
                bundle, "seg", fold, ("WT", "TC", "ET"), weights, np.full(3, -0.2 * fold * scale)
            )
        )
    return write_bundle(bundle, members)
