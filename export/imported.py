"""ONNX files trained elsewhere, bundled as they are (``bratskit export --onnx``).

Each file maps the 4 modalities, in the order given as ``channels``, to one output per
region, in the order given as ``regions``: logits or probabilities (``outputs``). Files
are folds of one member (fold = position on the command line, key ``imported``).

Every file is validated before anything is written: it loads in an onnxruntime CPU
session, has one float32 input of rank 5 with 4 channels, and on one realistic input of
an admitted size (:mod:`export.parity`'s synthetic case, channels in the file's order)
returns (N, len(regions), D, H, W) on the input's spatial size, finite, and within
[0, 1] when it claims probabilities. Without a reference model there is no parity
check: ``parity`` is null. The size rule is ``divisor`` on every axis, except axes the
file declares with a static size, which become fixed; a file with all three spatial
sizes static gets them as its patch, otherwise the member has no patch.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.build import BundleFields
from export.errors import RunError
from export.parity import onnx_session, session_forward, synthetic_case, tumour_window
from export.staging import check_output, staged_folder
from submission.brats import MODALITIES, SCHEMES, TUMOUR_REGIONS
from submission.predict.bundle import Manifest, write_manifest
from submission.predict.bundle_files import load_bundle, sha256_file
from submission.predict.members import OUTPUT_KINDS, Member, ModelFile
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule

log = logging.getLogger(__name__)

IMPORTED_KEY = "imported"
_FLOAT32, _FLOAT16 = 1, 10  # onnx.TensorProto data types


@dataclass(frozen=True)
class ImportedFile:
    """A validated ONNX file: its size rule, patch and weight precision."""

    path: Path
    size_rule: SizeRule
    patch: tuple[int, int, int] | None
    precision: str

    @property
    def format_key(self) -> str:
        """Manifest file key: ``onnx`` or ``onnx-fp16``."""
        return "onnx-fp16" if self.precision == "fp16" else "onnx"


def check_import_options(
    regions: Sequence[str], channels: Sequence[str], outputs: str, divisor: int, labels: str
) -> None:
    """Raise ValueError naming a bad option of :func:`import_onnx`."""
    if not regions or len(set(regions)) != len(regions) or set(regions) - set(TUMOUR_REGIONS):
        raise ValueError(
            f"regions must be distinct names from {','.join(TUMOUR_REGIONS)}, got "
            f"{','.join(regions)}"
        )
    missing = [r for r in TUMOUR_REGIONS if r not in regions]
    if missing:
        raise ValueError(
            f"a bundle needs every region, the files predict no {','.join(missing)}: list "
            "their outputs with --regions (e.g. TC,WT,ET)"
        )
    if sorted(channels) != sorted(MODALITIES):
        raise ValueError(
            f"channels must be an order of {','.join(MODALITIES)}, got {','.join(channels)}"
        )
    if outputs not in OUTPUT_KINDS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {outputs!r}")
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    if labels not in SCHEMES:
        raise ValueError(f"label scheme {labels!r} is not one of {', '.join(SCHEMES)}")


def import_onnx(
    files: Sequence[Path],
    out: Path,
    regions: Sequence[str],
    channels: Sequence[str] = MODALITIES,
    outputs: str = "probabilities",
    divisor: int = 16,
    crop: str = "brain",
    labels: str = "2021",
    force: bool = False,
) -> Manifest:
    """Validate ONNX files and bundle them as the folds of one member.

    Args:
        files: one ONNX file per fold.
        out: the bundle folder; must be absent or empty unless ``force``.
        regions: the files' output channels, in order (WT, TC, ET each once).
        channels: the modality of each input channel, in order.
        outputs: ``logits`` or ``probabilities``.
        divisor: every spatial size the files accept is a multiple of this.
        crop: preprocessing crop policy the files expect (``brain`` or ``centre``).
        labels: label scheme the bundle writes by default.
        force: replace a non-empty ``out``.

    Raises:
        ValueError: a bad option.
        RunError: a file that is missing or fails validation.
        OutputExistsError: ``out`` is not empty and ``force`` is False.
    """
    regions, channels = tuple(regions), tuple(channels)
    check_import_options(regions, channels, outputs, divisor, labels)
    if not files:
        raise ValueError("no ONNX file given: pass one file per fold")
    preprocessing = Preprocessing(crop=crop, divisor=divisor)
    check_output(out, force, inputs=files)
    checked = [inspect_onnx(Path(p), regions, channels, outputs, preprocessing) for p in files]
    fields = BundleFields(labels, preprocessing, channels=channels)
    with staged_folder(out, force) as tmp:
        members = []
        for fold, imported in enumerate(checked):
            rel = f"{IMPORTED_KEY}/fold{fold}.onnx"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(imported.path, tmp / rel)
            model_file = ModelFile(rel, sha256_file(tmp / rel), imported.precision, None)
            members.append(
                Member(
                    key=IMPORTED_KEY,
                    fold=fold,
                    regions=regions,
                    files={imported.format_key: model_file},
                    size_rule=imported.size_rule,
                    patch=imported.patch,
                    outputs=outputs,
                )
            )
            log.info("%s/fold%d onnx %s  from %s", IMPORTED_KEY, fold, rel, imported.path)
        manifest = fields.manifest(members)
        write_manifest(tmp, manifest)
        load_bundle(tmp)
    return manifest


def inspect_onnx(
    path: Path,
    regions: Sequence[str],
    channels: Sequence[str],
    outputs: str,
    preprocessing: Preprocessing,
) -> ImportedFile:
    """Validate one ONNX file (see the module docstring).

    Raises:
        RunError: naming the file, what is wrong and the fix.
    """
    if not path.is_file():
        raise RunError(f"ONNX file {path} does not exist")
    try:
        session = onnx_session(path)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise RunError(f"{path} does not load in onnxruntime: {_first_line(exc)}") from None
    if len(session.get_inputs()) != 1:
        names = [i.name for i in session.get_inputs()]
        raise RunError(f"{path} has inputs {names}; expected one image input (N, 4, D, H, W)")
    spec = session.get_inputs()[0]
    shape = list(spec.shape)
    if len(shape) != 5 or spec.type != "tensor(float)":
        raise RunError(
            f"{path} takes {spec.type} of shape {shape}; expected float32 (N, 4, D, H, W)"
        )
    if isinstance(shape[1], int) and shape[1] != len(MODALITIES):
        raise RunError(f"{path} takes {shape[1]} input channels; expected 4 ({','.join(channels)})")
    fixed = tuple(s if isinstance(s, int) and s > 0 else None for s in shape[2:])
    rule = SizeRule((preprocessing.divisor,) * 3, fixed)
    size = rule.fit([2 * preprocessing.divisor] * 3)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    image_cdhw, regions_rdhw = synthetic_case(preprocessing, size)
    window = tumour_window(image_cdhw, regions_rdhw, size)
    order = [MODALITIES.index(c) for c in channels]
    image = np.ascontiguousarray(np.repeat(window[order][None], batch, axis=0))
    try:
        out = np.asarray(session_forward(session)(image))
    except Exception as exc:
        raise RunError(
            f"{path} fails on an input of shape {image.shape}: {_first_line(exc)}"
        ) from None
    _check_output(path, out, image.shape, regions, outputs)
    patch = fixed if all(f is not None for f in fixed) else None
    return ImportedFile(path, rule, patch, _weight_precision(path))


def _check_output(path: Path, out: np.ndarray, shape, regions, outputs: str) -> None:
    expected = (shape[0], len(regions), *shape[2:])
    if out.shape != expected:
        raise RunError(
            f"{path} returns shape {out.shape} for input {shape}; expected {expected} "
            f"(one channel per region {','.join(regions)}, the input's spatial size)"
        )
    if not np.isfinite(out).all():
        raise RunError(f"{path} returns non-finite values on a realistic input")
    if outputs == "probabilities" and (out.min() < 0 or out.max() > 1):
        raise RunError(
            f"{path} returns values in [{out.min():.3g}, {out.max():.3g}], not probabilities: "
            "pass --outputs logits"
        )


def _weight_precision(path: Path) -> str:
    """``fp16`` when most weight elements are float16, else ``fp32``.

    Raises:
        RunError: the weights live in external data files, which a bundle does not copy.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    proto = onnx.load(str(path), load_external_data=False)
    counts = {_FLOAT32: 0, _FLOAT16: 0}
    for tensor in proto.graph.initializer:
        if uses_external_data(tensor):
            raise RunError(
                f"{path} keeps its weights in external data files: save it as one file "
                "(onnx.save(model, path, save_as_external_data=False))"
            )
        if tensor.data_type in counts:
            counts[tensor.data_type] += int(np.prod(tensor.dims))
    return "fp16" if counts[_FLOAT16] > counts[_FLOAT32] else "fp32"


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
