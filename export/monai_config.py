"""The config side of ``bratskit import monai`` (:mod:`export.monai_import`): a MONAI
bundle's ``configs/inference.json`` and ``configs/metadata.json`` read and checked against
a whitelist (:func:`read_monai_bundle`) into a :class:`MonaiSpec`.

The configs are read as JSON and never run: no ``$`` expression is evaluated and no
``_target_`` imported by name. Plain ``@id`` references (``#`` or ``::`` separated) are
looked up in the config; a ``$`` expression or ``%`` macro where a value is needed is a
refusal. Only whitelisted components, with literal arguments, are understood:

- network (``network_def``, else a ``network`` component): :data:`NETWORKS`, built from
  ``monai.networks.nets`` with its keyword arguments;
- ``preprocessing`` (a ``Compose``): ``LoadImaged``, ``EnsureChannelFirstd``,
  ``EnsureTyped``/``ToTensord``/``CastToTyped`` (float32), ``Orientationd`` (axcodes),
  ``Spacingd`` (pixdim, its default bilinear, border, voxel-centre geometry),
  ``NormalizeIntensityd`` (nonzero, channel_wise; no subtrahend or divisor), in that
  order, on key ``image``; transforms of other keys only are skipped;
- ``inferer``: ``SlidingWindowInferer`` (roi_size, overlap, mode, sigma_scale,
  sw_batch_size, padding_mode, cval; device and buffering options change nothing);
- ``postprocessing`` on key ``pred``: ``Activationsd(sigmoid=True)`` (required),
  ``Invertd`` of the preprocessing, ``AsDiscreted(threshold=t)`` (``t`` becomes the
  recommended threshold), and ``SaveImaged``/``Lambdad`` (writing files and assembling
  labels, which bratskit does in the task's scheme) are skipped.

Anything else is refused, naming the component and the fix. The channel order comes
from ``metadata.json``'s ``network_data_format.inputs.image.channel_def`` (T1c, T1, T2,
FLAIR -> t1c, t1n, t2w, t2f), unless ``channels`` is given, and the output regions from
``outputs.pred.channel_def`` (Tumor core, Whole tumor, Enhancing tumor -> TC, WT, ET).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.errors import RunError
from export.foreign_json import read_json_object
from submission.predict.monai_pipeline import MonaiPipeline, Normalization

log = logging.getLogger(__name__)

NETWORKS = ("SegResNet", "UNet", "DynUNet")
_CHANNEL_NAMES = {
    "t1c": ("t1c", "t1ce", "t1gd", "t1contrast", "t1postcontrast", "t1post"),
    "t1n": ("t1", "t1n", "t1w", "t1native", "t1pre"),
    "t2w": ("t2", "t2w"),
    "t2f": ("flair", "t2f", "t2flair"),
}
_REGION_NAMES = {
    "TC": ("tc", "tumorcore", "tumourcore"),
    "WT": ("wt", "wholetumor", "wholetumour"),
    "ET": ("et", "enhancingtumor", "enhancingtumour"),
}
_FLOAT32 = (None, "float32", "$torch.float32", "$np.float32", "$numpy.float32")
_IGNORED = ("allow_missing_keys", "_desc_")
_EAGER = (False, None)  # lazy resampling merges transforms: MONAI then resamples differently
_PRE_ARGS = {
    "LoadImaged": {"image_only": None, "ensure_channel_first": None, "simple_keys": None,
                   "reader": (None, "NibabelReader"), "dtype": _FLOAT32,
                   "meta_keys": None, "meta_key_postfix": None, "overwriting": None,
                   "prune_meta_pattern": None, "prune_meta_sep": None, "expanduser": None},
    "EnsureChannelFirstd": {"strict_check": None, "channel_dim": None},
    "EnsureTyped": {"data_type": None, "dtype": _FLOAT32, "device": None, "track_meta": None,
                    "wrap_sequence": None},
    "ToTensord": {"dtype": _FLOAT32, "device": None, "track_meta": None, "wrap_sequence": None},
    "CastToTyped": {"dtype": _FLOAT32[1:]},
    "Orientationd": {"axcodes": None, "as_closest_canonical": (False,), "labels": (None,),
                     "lazy": _EAGER},
    "Spacingd": {"pixdim": None, "diagonal": (False,), "mode": ("bilinear",), "lazy": _EAGER,
                 "padding_mode": ("border",), "align_corners": (False,),
                 "dtype": (None, "float64", "$numpy.float64", "$np.float64", "$torch.float64"),
                 "scale_extent": (False,), "recompute_affine": (False,),
                 "min_pixdim": (None,), "max_pixdim": (None,), "ensure_same_shape": (True,)},
    "NormalizeIntensityd": {"nonzero": None, "channel_wise": None, "dtype": _FLOAT32,
                            "subtrahend": (None,), "divisor": (None,)},
}  # fmt: skip
_ORDER = ("Orientationd", "Spacingd", "NormalizeIntensityd")
_INFERER_ARGS = ("roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale", "padding_mode",
                 "cval", "sw_device", "device", "progress", "cache_roi_weight_map",
                 "cpu_thresh", "buffer_steps", "buffer_dim", "with_coord")  # fmt: skip
_POST_ARGS = {
    "Activationsd": {"sigmoid": (True,), "softmax": (False, None), "other": (None,)},
    "Invertd": {"transform": ("@preprocessing",), "orig_keys": ("image",),
                "nearest_interp": None, "to_tensor": None, "device": None, "meta_keys": None,
                "orig_meta_keys": None, "meta_key_postfix": None, "post_func": (None,)},
    "AsDiscreted": {"threshold": None, "argmax": (False, None), "to_onehot": (None,),
                    "rounding": (None,)},
}  # fmt: skip
_HINTS = {
    ("Activationsd", "softmax"): "only sigmoid (region) models import, not label-based softmax",
    ("Activationsd", "sigmoid"): "only sigmoid (region) models import: set sigmoid true",
    ("Invertd", "transform"): "invert the preprocessing: transform '@preprocessing'",
    ("LoadImaged", "reader"): "bratskit reads cases with nibabel: use NibabelReader",
}
_SKIPPED_POST = ("SaveImaged", "Lambdad", "EnsureTyped", "ToTensord", "CopyItemsd")


@dataclass(frozen=True)
class MonaiSpec:
    """What an imported MONAI bundle is: its network and the record of its inference."""

    network: str
    kwargs: dict[str, Any]
    pipeline: MonaiPipeline
    regions: tuple[str, ...]
    threshold: float
    weights: Path


class _Config:
    """A parsed config: plain reference lookup, literals only where values are needed."""

    def __init__(self, raw: dict[str, Any], path: Path) -> None:
        self.raw, self.path = raw, path

    def refuse(self, where: str, problem: str, fix: str) -> RunError:
        return RunError(f"{self.path}: {where}: {problem}; {fix}")

    def ref(self, value: Any, where: str, depth: int = 0) -> Any:
        """``value`` with ``@id`` references followed (``#``/``::`` separated ids)."""
        while isinstance(value, str) and value.startswith("@"):
            if depth > 20:
                raise self.refuse(where, f"reference cycle at {value!r}", "fix the config")
            node: Any = self.raw
            for part in value[1:].replace("::", "#").split("#"):
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    raise self.refuse(where, f"reference {value!r} is not in the config", "fix it")
            value, depth = node, depth + 1
        return value

    def literal(self, value: Any, where: str) -> Any:
        """A JSON literal (references followed), never an expression or a component."""
        value = self.ref(value, where)
        if isinstance(value, str) and value[:1] in ("$", "%"):
            raise self.refuse(
                where,
                f"{value!r} is an expression, bratskit never evaluates one",
                "write the literal value in the config",
            )
        if isinstance(value, dict):
            if "_target_" in value:
                raise self.refuse(where, "a component where a value is needed", "use a literal")
            return {k: self.literal(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def component(self, key: str) -> tuple[str, dict[str, Any]]:
        """(short class name, raw arguments) of the component at ``key``."""
        value = self.ref(self.raw.get(key), key)
        if not isinstance(value, dict) or not isinstance(value.get("_target_"), str):
            raise self.refuse(key, "missing or not a component", "see the zoo's layout")
        args = {k: v for k, v in value.items() if k != "_target_"}
        return self.short(value["_target_"], key), args

    def short(self, target: str, where: str) -> str:
        """``LoadImaged`` of ``LoadImaged`` or ``monai.transforms.LoadImaged``."""
        if "." in target and not target.startswith("monai."):
            raise self.refuse(where, f"{target} is not a MONAI class", "use MONAI's own")
        return target.rsplit(".", 1)[-1]

    def transforms(self, key: str) -> list[tuple[str, dict[str, Any], str]]:
        """The (name, arguments, where) of a ``Compose`` (or a list of transforms)."""
        value = self.ref(self.raw.get(key), key)
        if isinstance(value, dict):
            name, args = self.component(key)
            lazy = self.literal(args.get("lazy"), f"{key}.lazy")
            if name != "Compose" or set(args) - {"transforms", "lazy", *_IGNORED} or lazy:
                raise self.refuse(key, f"{name} with {sorted(args)}", "use a plain Compose")
            value = self.ref(args.get("transforms"), f"{key}.transforms")
        if not isinstance(value, list):
            raise self.refuse(key, "not a list of transforms", "write the list out, no '$'")
        out = []
        for i, item in enumerate(value):
            where = f"{key}.transforms[{i}]"
            item = self.ref(item, where)
            if not isinstance(item, dict) or not isinstance(item.get("_target_"), str):
                raise self.refuse(where, "not a transform component", "write it out")
            if not self.literal(item.get("_disabled_", False), where):
                name = self.short(item["_target_"], where)
                args = {k: v for k, v in item.items() if k not in ("_target_", "_disabled_")}
                out.append((name, args, f"{where} ({name})"))
        return out


def _args(cfg: _Config, name: str, args: dict, where: str, allowed: dict) -> dict[str, Any]:
    """Literal arguments of a whitelisted component; unknown or unsupported ones refused."""
    out = {}
    for key, raw in args.items():
        if key in _IGNORED or key == "keys":
            continue
        if key not in allowed:
            raise cfg.refuse(where, f"argument {key!r} is not supported", "remove it")
        value = raw if isinstance(raw, str) and raw in (allowed[key] or ()) else None
        value = value if value is not None else cfg.literal(raw, f"{where}.{key}")
        if allowed[key] is not None and value not in allowed[key]:
            hint = _HINTS.get((name, key), "bratskit cannot reproduce it")
            raise cfg.refuse(where, f"{key}={value!r}, bratskit runs {list(allowed[key])}", hint)
        out[key] = value
    return out


def _keys(cfg: _Config, args: dict, where: str) -> set[str]:
    keys = cfg.literal(args.get("keys"), f"{where}.keys")
    return {keys} if isinstance(keys, str) else set(keys or ())


def _preprocessing(cfg: _Config) -> dict[str, Any]:
    """The record's orientation, spacing and normalization from the preprocessing."""
    found: dict[str, dict] = {}
    for name, args, where in cfg.transforms("preprocessing"):
        if "image" not in _keys(cfg, args, where):
            log.info("%s: not applied to 'image', skipped", where)
            continue
        if name not in _PRE_ARGS:
            raise cfg.refuse(where, f"transform {name} is not supported", _WHITELIST_FIX)
        later = [n for n in _ORDER[_ORDER.index(name) :] if n in found] if name in _ORDER else []
        if later:
            raise cfg.refuse(
                where, f"{name} after {', '.join(later)}", f"bratskit runs {', '.join(_ORDER)}"
            )
        found[name] = _args(cfg, name, args, where, _PRE_ARGS[name])
    if "NormalizeIntensityd" not in found:
        raise cfg.refuse("preprocessing", "no NormalizeIntensityd on 'image'", _WHITELIST_FIX)
    norm = found["NormalizeIntensityd"]
    orientation = found.get("Orientationd", {}).get("axcodes")
    spacing = found.get("Spacingd", {}).get("pixdim") if "Spacingd" in found else None
    if "Spacingd" in found:
        spacing = [spacing] * 3 if isinstance(spacing, (int, float)) else spacing
    return {
        "orientation": orientation,
        "spacing": None if spacing is None else tuple(spacing),
        "normalization": Normalization(bool(norm.get("nonzero", False)),
                                       bool(norm.get("channel_wise", False))),
    }  # fmt: skip


_WHITELIST_FIX = "bratskit imports the transforms listed in `bratskit import monai --help`"


def _single(value: Any, where: str, cfg: _Config) -> Any:
    """A scalar, or a list of one value per axis that are all equal."""
    if isinstance(value, list):
        if len(set(map(float, value))) != 1:
            raise cfg.refuse(where, f"per-axis values {value}", "use one value")
        return value[0]
    return value


def _inferer(cfg: _Config) -> dict[str, Any]:
    name, raw = cfg.component("inferer")
    if name != "SlidingWindowInferer":
        raise cfg.refuse("inferer", f"{name} is not supported", "use SlidingWindowInferer")
    args = _args(cfg, name, raw, "inferer", dict.fromkeys(_INFERER_ARGS))
    if args.get("with_coord"):
        raise cfg.refuse("inferer", "with_coord=True", "remove it")
    roi = args.get("roi_size")
    roi = [roi] * 3 if isinstance(roi, int) else roi
    if (
        not isinstance(roi, list)
        or len(roi) != 3
        or not all(isinstance(r, int) and r > 0 for r in roi)
    ):
        raise cfg.refuse("inferer.roi_size", f"{roi!r}", "give three positive sizes")
    fields = {k: args[k] for k in ("sw_batch_size", "mode", "padding_mode", "cval") if k in args}
    for key in ("overlap", "sigma_scale"):
        if key in args:
            fields[key] = float(_single(args[key], f"inferer.{key}", cfg))
    fields.setdefault("overlap", 0.25)  # SlidingWindowInferer's default
    return {"roi": tuple(roi), **fields}


def _postprocessing(cfg: _Config, spatial: bool) -> float:
    """Check the postprocessing; returns AsDiscreted's threshold (0.5 without one)."""
    found: dict[str, dict] = {}
    for name, args, where in cfg.transforms("postprocessing"):
        if name in _SKIPPED_POST or "pred" not in _keys(cfg, args, where):
            log.info("%s skipped (bratskit writes the labels in the task's scheme)", where)
            continue
        if name not in _POST_ARGS:
            raise cfg.refuse(where, f"transform {name} is not supported", _WHITELIST_FIX)
        found[name] = _args(cfg, name, args, where, _POST_ARGS[name])
    if "Activationsd" not in found:
        raise cfg.refuse("postprocessing", "no Activationsd(sigmoid=True)", _WHITELIST_FIX)
    if spatial and found.get("Invertd", {}).get("nearest_interp"):
        raise cfg.refuse("postprocessing", "Invertd(nearest_interp=True)", "set it to false")
    threshold = found.get("AsDiscreted", {}).get("threshold")
    return 0.5 if threshold is None else float(threshold)


def _names(metadata: dict, side: str, key: str, table: dict, path: Path) -> tuple[str, ...] | None:
    """Map ``network_data_format.<side>.<key>.channel_def`` through ``table``; None if absent."""
    fmt = (metadata.get("network_data_format") or {}).get(side) or {}
    entry = fmt.get(key) or (next(iter(fmt.values())) if len(fmt) == 1 else None)
    channel_def = (entry or {}).get("channel_def")
    if not isinstance(channel_def, dict):
        return None
    out = []
    for i in range(len(channel_def)):
        name = str(channel_def.get(str(i), "?"))
        plain = "".join(c for c in name.lower() if c.isalnum())
        match = [k for k, aliases in table.items() if plain in aliases]
        if not match:
            raise RunError(
                f"{path}: {side} channel {i} {name!r} is not one of {list(table)}; "
                + ("pass --channels" if side == "inputs" else "only TC/WT/ET outputs import")
            )
        out.append(match[0])
    return tuple(out)


def _json(path: Path) -> dict[str, Any]:
    yaml = path.with_suffix(".yaml")
    fix = f"convert {yaml.name} to JSON" if yaml.is_file() else "see the model zoo's layout"
    return read_json_object(path, fix)


def read_monai_bundle(bundle_dir: Path, channels: Sequence[str] | None = None) -> MonaiSpec:
    """Parse and check a MONAI bundle folder (see the module docstring).

    Raises:
        RunError: a missing file, or anything outside the whitelist, named with the fix.
    """
    bundle_dir = Path(bundle_dir)
    cfg = _Config(
        _json(bundle_dir / "configs" / "inference.json"), bundle_dir / "configs" / "inference.json"
    )
    metadata = _json(bundle_dir / "configs" / "metadata.json")
    meta_path = bundle_dir / "configs" / "metadata.json"
    key = "network_def" if "network_def" in cfg.raw else "network"
    network, raw_kwargs = cfg.component(key)
    if network not in NETWORKS:
        raise cfg.refuse(key, f"network {network} is not supported", f"bratskit builds {NETWORKS}")
    kwargs = {k: cfg.literal(v, f"{key}.{k}") for k, v in raw_kwargs.items() if k not in _IGNORED}
    names = _names(metadata, "inputs", "image", _CHANNEL_NAMES, meta_path)
    channels = tuple(channels) if channels else names
    if channels is None:
        raise RunError(
            f"{meta_path} names no input channels: pass --channels, e.g. t1c,t1n,t2w,t2f"
        )
    regions = _names(metadata, "outputs", "pred", _REGION_NAMES, meta_path)
    if regions is None:
        raise RunError(f"{meta_path}: outputs.pred.channel_def is missing (e.g. Tumor core, ...)")
    pre = _preprocessing(cfg)
    threshold = _postprocessing(cfg, pre["orientation"] is not None or pre["spacing"] is not None)
    source = f"{bundle_dir.resolve().name} {metadata.get('version', '')}".strip()
    try:
        pipeline = MonaiPipeline(source=source, channels=channels, **pre, **_inferer(cfg))
    except (TypeError, ValueError) as exc:
        raise RunError(f"{cfg.path}: bratskit cannot run this inference: {exc}") from None
    weights = bundle_dir / "models" / "model.pt"
    if not weights.is_file():
        raise RunError(f"{weights} does not exist: the zoo layout keeps the weights there")
    return MonaiSpec(network, kwargs, pipeline, regions, threshold, weights)
