"""Convert lukemelas' ImageNet EfficientNet-B0 weights into the file effunet's ``weights`` reads.

Paper 003 embeds an ImageNet-trained EfficientNet-B0; nothing is downloaded by bratskit, so
once, on a machine with network access::

    curl -LO https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth
    python scripts/convert_efficientnet_b0.py efficientnet-b0-355c32eb.pth effnet-b0-imagenet.pt

then set ``arch_params: {weights: /abs/path/effnet-b0-imagenet.pt}`` on every member of the
``effunet`` (or ``effunet-joint``) recipe. The input is read with ``weights_only=True``.
lukemelas numbers the blocks ``_blocks.<i>.``, MONAI (whose EfficientNet bratskit uses)
``_blocks.<stage>.<i>.``: the blocks are renamed, the classification head is dropped, and
every tensor's shape is checked against a freshly built encoder before the output, a plain
state dict, is written. A file already in MONAI's layout is checked and copied as it is.
The input's sha256 is printed, and compared with the digits a torch.hub-style file name
carries (``efficientnet-b0-355c32eb.pth``: its sha256 starts with 355c32eb).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from submission.predict.bundle_files import sha256_file
from train.models.effnet_weights import (
    HEAD_PREFIXES,
    check_encoder_state,
    from_lukemelas,
    load_encoder_weights,
)
from train.models.effunet import build_encoder

_HUB_NAME = re.compile(r"-([0-9a-f]{8,})\.\w+$")


def convert(source: Path, out: Path) -> int:
    """Write ``source``'s encoder weights in MONAI's layout to ``out``; returns the tensor count.

    Raises:
        ValueError: not a state dict, or keys/shapes that are not EfficientNet-B0's.
    """
    state = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict")
    own = build_encoder().state_dict()
    if any(key.startswith("_blocks.") and key.split(".")[2].isdigit() for key in state):
        converted = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        check_encoder_state(own, converted, str(source))  # already MONAI's layout
    else:
        converted = from_lukemelas(state, own)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, out)
    load_encoder_weights(build_encoder(), out)  # what effunet will do with it
    return len(converted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="downloaded EfficientNet-B0 .pth file")
    parser.add_argument("out", type=Path, help="converted file for arch_params.weights")
    args = parser.parse_args(argv)
    digest = sha256_file(args.source)
    print(f"{args.source}: sha256 {digest}")
    hub = _HUB_NAME.search(args.source.name)
    if hub and not digest.startswith(hub.group(1)):
        print(
            f"error: the file name says sha256 {hub.group(1)}..., the file has {digest[:12]}...: "
            "an incomplete or altered download; download it again",
            file=sys.stderr,
        )
        return 1
    try:
        count = convert(args.source, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {count} tensors; set arch_params.weights: {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
