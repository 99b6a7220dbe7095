"""MONAI bundle folders in the model zoo's ``brats_mri_segmentation`` layout, built from a
small MONAI network (SegResNet unless the config names another), random weights:
``configs/inference.json`` (the zoo's 0.5.2 config with its ``$`` expressions and ``@``
references, the network made small), ``configs/metadata.json`` (T1c, T1, T2, FLAIR in;
Tumor core, Whole tumor, Enhancing tumor out) and ``models/model.pt`` (the state dict,
as the zoo ships it).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from monai.networks import nets

NETWORK_DEF: dict[str, Any] = {
    "_target_": "SegResNet",
    "blocks_down": [1, 2, 2, 4],
    "blocks_up": [1, 1, 1],
    "init_filters": 4,
    "in_channels": 4,
    "out_channels": 3,
    "dropout_prob": 0.2,
    "norm": ["GROUP", {"num_groups": 2}],
}

INFERENCE: dict[str, Any] = {
    "imports": ["$import glob", "$import numpy", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "output_dir": "$@bundle_root + '/eval'",
    "data_list_file_path": "$@bundle_root + '/configs/datalist.json'",
    "dataset_dir": "/workspace/data/medical/brats2018challenge",
    "test_datalist": "$monai.data.load_decathlon_datalist(@data_list_file_path, "
    "data_list_key='testing', base_dir=@dataset_dir)",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "amp": True,
    "network_def": NETWORK_DEF,
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key", "image_only": False},
            {
                "_target_": "NormalizeIntensityd",
                "keys": "@image_key",
                "nonzero": True,
                "channel_wise": True,
            },
        ],
    },
    "dataset": {"_target_": "Dataset", "data": "@test_datalist", "transform": "@preprocessing"},
    "inferer": {
        "_target_": "SlidingWindowInferer",
        "roi_size": [32, 32, 24],
        "sw_batch_size": 1,
        "overlap": 0.5,
    },
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "@image_key",
                "meta_keys": "pred_meta_dict",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
            {
                "_target_": "Lambdad",
                "keys": "pred",
                "func": "$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, "
                "torch.where(x[[1]] > 0, 2, 0)))",
            },
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "meta_keys": "pred_meta_dict",
                "output_dir": "@output_dir",
                "output_postfix": "seg",
                "resample": False,
            },
        ],
    },
    "checkpointloader": {
        "_target_": "CheckpointLoader",
        "load_path": "$@bundle_root + '/models/model.pt'",
        "load_dict": {"model": "@network"},
    },
    "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)"],
    "run": ["$@evaluator.run()"],
}

METADATA: dict[str, Any] = {
    "version": "0.5.2",
    "name": "BraTS MRI segmentation",
    "monai_version": "1.4.0",
    "network_data_format": {
        "inputs": {
            "image": {
                "type": "image",
                "num_channels": 4,
                "channel_def": {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"},
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "num_channels": 3,
                "channel_def": {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"},
            }
        },
    },
}

#: The zoo bundle's input order in bratskit names, and its outputs.
CHANNELS = ("t1c", "t1n", "t2w", "t2f")
REGIONS = ("TC", "WT", "ET")


def network(network_def: dict[str, Any] = NETWORK_DEF, seed: int = 0) -> torch.nn.Module:
    """The eval-mode network ``network_def`` describes, random weights from ``seed``."""
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in network_def.items() if k != "_target_"}
    return getattr(nets, network_def["_target_"].rsplit(".", 1)[-1])(**kwargs).eval()


def write_monai_bundle(
    folder: Path,
    inference: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[Path, torch.nn.Module]:
    """Write a zoo-layout bundle into ``folder`` (``brats_mri_segmentation``); returns the
    folder and the network whose state dict ``models/model.pt`` holds."""
    inference = copy.deepcopy(INFERENCE if inference is None else inference)
    bundle = Path(folder) / "brats_mri_segmentation"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference, indent=4))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata or METADATA, indent=4))
    known = hasattr(nets, inference["network_def"]["_target_"].rsplit(".", 1)[-1])
    net = network(inference["network_def"] if known else NETWORK_DEF, seed)
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle, net


def changed(path: str, value: Any) -> dict[str, Any]:
    """A copy of :data:`INFERENCE` with the value at ``path`` (``a.b.0.c``) replaced."""
    config = copy.deepcopy(INFERENCE)
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return config
