"""A bundle's members: one trained network each, the files it was exported to, and their
form in ``manifest.json`` (the manifest itself, its checks and the files on disk are
:mod:`submission.predict.bundle`'s).

A *member* is one fold of one recipe member; its ``files`` are the same network in
different formats. Stage ``localization`` members predict WT on the whole cropped brain
to place the stage-2 window (paper 002, section 2.3); ``segmentation`` members predict
their regions on the window (or the whole crop without localisation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from submission.predict.sliding_window import SizeRule, training_window

#: The file formats a member may have, keyed as in its ``files``
#: (:func:`submission.predict.backends.file_format` says which one a backend loads).
FILE_FORMATS = ("onnx", "onnx-fp16", "torchscript")
#: A member's stage: the optional localisation stage, then segmentation.
STAGES = ("localization", "segmentation")
#: What a member outputs: sigmoid probabilities, or logits the engine turns into them.
OUTPUT_KINDS = ("probabilities", "logits")
#: How a member sees a volume: ``volume``, in one call when it fits in memory (a sliding
#: window only after running out of it); ``patch``, in sliding windows of its training
#: ``patch`` from the start (members trained on random patches, see
#: :func:`submission.predict.sliding_window.training_window`).
WINDOWS = ("volume", "patch")


@dataclass(frozen=True)
class ModelFile:
    """One exported file of a member.

    Attributes:
        path: relative to the bundle folder, with forward slashes.
        sha256: hex digest of the file.
        precision: ``fp32`` or ``fp16`` (the weights and arithmetic; inputs and outputs
            are float32 either way).
        parity: the export check (max_abs_diff, tolerance, input_shape, reference), or
            None for files imported without a reference model.
    """

    path: str
    sha256: str
    precision: str = "fp32"
    parity: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # The sha256 sits in the same manifest, so it protects nothing when the path may
        # point anywhere: a path must name a file inside the bundle (symlinks that leave it
        # are refused when the file is verified).
        path = PurePosixPath(str(self.path))
        if (
            not self.path
            or str(path) != self.path
            or path.is_absolute()
            or "\\" in self.path
            or any(part in ("..", ".") for part in path.parts)
        ):
            raise ValueError(
                f"file path {self.path!r} must be relative to the bundle folder, normalised, "
                "with forward slashes and no '..' (e.g. 'seg/fold0.onnx')"
            )


@dataclass(frozen=True)
class Member:
    """One trained network of the ensemble (see the module docstring).

    ``channels`` are the bundle channels this member's files take, in their input order
    (paper 003's single-modality networks: ``("t2f",)``); None, and absent from the
    manifest, means all of the manifest's ``channels``.

    ``pipeline`` names the manifest's ``pipelines`` entry that runs an imported member
    (nnU-Net v2, MONAI: :mod:`submission.predict.pipelines`) on the raw case, with that
    framework's own preprocessing, sliding window and fold combination; None: bratskit's.
    ``labels`` is the challenge label of each output channel of a label-based (softmax)
    member, background included (``(0, 2, 1, 4)``); its ``regions`` are the scheme's
    regions those labels make up, each region's probability the sum of its labels'.
    None: the outputs are ``regions``, one channel each.
    ``window`` is one of :data:`WINDOWS`; the manifest lists it only when it is ``patch``.
    """

    key: str
    fold: int
    regions: tuple[str, ...]
    files: dict[str, ModelFile]
    stage: str = "segmentation"
    architecture: dict[str, Any] | None = None
    size_rule: SizeRule = field(default_factory=SizeRule)
    patch: tuple[int, int, int] | None = None
    outputs: str = "probabilities"
    channels: tuple[str, ...] | None = None
    pipeline: str | None = None
    labels: tuple[int, ...] | None = None
    window: str = "volume"

    def prediction_window(self, shape_dhw: tuple[int, ...]) -> tuple[int | None, ...] | None:
        """The sliding window of a ``window: patch`` member for a volume of ``shape_dhw``
        (:func:`submission.predict.sliding_window.training_window`); None: one call."""
        if self.window != "patch":
            return None
        return training_window(self.size_rule, self.patch, shape_dhw)

    @property
    def name(self) -> str:
        """``key/fold<k>``, as log lines name it."""
        return f"{self.key}/fold{self.fold}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as the manifest lists it (``channels``, ``pipeline`` and ``labels``
        only when the member has them)."""
        own = {} if self.channels is None else {"channels": list(self.channels)}
        if self.pipeline is not None:
            own["pipeline"] = self.pipeline
        if self.labels is not None:
            own["labels"] = list(self.labels)
        if self.window != "volume":
            own["window"] = self.window
        return {
            "key": self.key,
            "fold": self.fold,
            "stage": self.stage,
            "regions": list(self.regions),
            **own,
            "architecture": self.architecture,
            "size_rule": {
                "divisors": list(self.size_rule.divisors),
                "fixed": list(self.size_rule.fixed),
            },
            "patch": None if self.patch is None else list(self.patch),
            "outputs": self.outputs,
            "files": {fmt: asdict(f) for fmt, f in self.files.items()},
        }


def member_from_dict(raw: dict[str, Any]) -> Member:
    """Parse one entry of the manifest's ``members``; optional keys take their defaults.

    Raises:
        KeyError, TypeError, ValueError: a missing or malformed key (the manifest's
            parser reports it as a bundle error).
    """
    rule = raw.get("size_rule") or {}
    return Member(
        key=str(raw["key"]),
        fold=int(raw["fold"]),
        stage=str(raw.get("stage", "segmentation")),
        regions=tuple(raw["regions"]),
        architecture=raw.get("architecture"),
        size_rule=SizeRule(
            tuple(rule.get("divisors", (1, 1, 1))), tuple(rule.get("fixed", (None,) * 3))
        ),
        patch=None if raw.get("patch") is None else tuple(int(p) for p in raw["patch"]),
        outputs=str(raw.get("outputs", "probabilities")),
        files={fmt: ModelFile(**f) for fmt, f in raw["files"].items()},
        channels=None if raw.get("channels") is None else tuple(raw["channels"]),
        pipeline=None if raw.get("pipeline") is None else str(raw["pipeline"]),
        labels=None if raw.get("labels") is None else tuple(int(v) for v in raw["labels"]),
        window=str(raw.get("window", "volume")),
    )
