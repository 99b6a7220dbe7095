"""Recipe files: the recipes shipped in ``train/recipes``, YAML files and plain data
(a parsed YAML file, a run's ``config.yaml``, a checkpoint's ``member`` dict) read into
:class:`train.config.TrainConfig` and :class:`train.config.MemberConfig`, and the resolved
config written back as YAML with the run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from submission.predict.bundle import Recommended
from submission.predict.preprocess import Preprocessing
from train.augment import AugmentConfig
from train.config import ConfigError, MemberConfig, OptimConfig, TrainConfig

RECIPE_DIR = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``train/recipes``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_config(name_or_file: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a shipped recipe by name, or a YAML file, then apply top-level overrides.

    Raises:
        ConfigError: unknown recipe, unreadable YAML, unknown or invalid keys.
    """
    path = Path(name_or_file)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_file}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown recipe {name_or_file!r}; choose one of {', '.join(recipe_names())} "
                "or give a YAML file"
            )
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a YAML mapping")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from plain data (a parsed YAML file or a checkpoint)."""
    raw = dict(raw)
    if raw.get("amp") is False:  # YAML 1.1 reads a bare `off` as false
        raw["amp"] = "off"
    try:
        members = tuple(member_from_dict(m) for m in raw.pop("members"))
        raw["preprocessing"] = Preprocessing(**raw.get("preprocessing", {}))
        raw["augment"] = AugmentConfig(**raw.get("augment", {}))
        raw["recommended"] = _build(Recommended, raw.get("recommended") or {})
        return _build(TrainConfig, raw, members=members)
    except KeyError as exc:
        raise ConfigError(f"recipe lacks required key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid recipe: {exc}") from None


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def member_from_dict(raw: dict[str, Any]) -> MemberConfig:
    """Build a :class:`MemberConfig` from a recipe entry or a checkpoint's ``member`` dict.

    Raises:
        ConfigError: unknown or invalid keys. A missing required key raises KeyError.
    """
    raw = dict(raw)
    raw["regions"] = tuple(r.upper() for r in raw["regions"])
    raw["crop"] = tuple(raw.get("crop", (128, 128, 128)))
    if raw.get("channels") is not None:
        channels = raw["channels"]
        raw["channels"] = (channels,) if isinstance(channels, str) else tuple(channels)
    raw["optimizer"] = _build(OptimConfig, raw.get("optimizer", {}))
    return _build(MemberConfig, raw)


def _build(cls, raw: dict[str, Any], **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    return cls(**{**raw, **extra})
