"""Paper rules pinned by hand: the 002 residual block's layer sequence, the global batch
split under torchrun, and what a plateau schedule watches (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from train.config import ConfigError
from train.describe import describe_recipe
from train.distributed import split_batch
from train.models.blocks import ResidualBlock3d
from train.recipe_files import load_config, recipe_names
from train.trainer import _step_schedule, make_optimizer
from train.validation import Validation


def test_002_residual_block_is_three_convolutions_with_the_residual_from_the_first():
    """002 §2.2 (after Lee et al.): GN before each convolution, ReLU after the first two, the
    first convolution's output added after the last one, then ReLU."""
    torch.manual_seed(0)
    block = ResidualBlock3d(2, 4).eval()
    assert [type(m) for m in block.children()] == [
        nn.GroupNorm, nn.Conv3d, nn.GroupNorm, nn.Conv3d, nn.GroupNorm, nn.Conv3d, nn.ReLU
    ]  # fmt: skip
    assert [c.in_channels for c in (block.conv1, block.conv2, block.conv3)] == [2, 4, 4]
    assert all(c.kernel_size == (3, 3, 3) for c in (block.conv1, block.conv2, block.conv3))
    x = torch.randn(1, 2, 4, 4, 4)
    relu = torch.relu
    residual = relu(block.conv1(block.norm1(x)))
    h = block.conv3(block.norm3(relu(block.conv2(block.norm2(residual)))))
    torch.testing.assert_close(block(x), relu(h + residual))
    # 3 convolutions of 27 weights per (in, out) pair, no bias, and GN's affine (2 per channel)
    assert sum(p.numel() for p in block.parameters()) == 27 * (2 * 4 + 4 * 4 + 4 * 4) + 2 * (
        2 + 4 + 4
    )


@pytest.mark.parametrize(
    ("batch", "world", "accumulate", "micro"),
    [(4, 1, 1, 4), (4, 4, 1, 1), (4, 2, 1, 2), (4, 1, 4, 1), (8, 2, 2, 2), (1, 1, 1, 1)],
)
def test_the_recipe_batch_is_the_global_batch(batch, world, accumulate, micro):
    assert split_batch(batch, world, accumulate) == micro
    assert micro * world * accumulate == batch


@pytest.mark.parametrize(("batch", "world", "accumulate"), [(1, 4, 1), (4, 3, 1), (4, 2, 4)])
def test_a_global_batch_that_does_not_split_is_refused_with_the_sizes_that_do(
    batch, world, accumulate
):
    with pytest.raises(ConfigError, match=rf"batch_size {batch} is the global batch") as err:
        split_batch(batch, world, accumulate)
    assert "processes x accumulate = 1" in str(err.value)


def _plateau(monitor: str):
    cfg = load_config("resunet-localization").members[1].optimizer
    cfg = type(cfg)(**{**cfg.__dict__, "monitor": monitor, "patience": 0, "cooldown": 0})
    model = nn.Linear(1, 1)
    optimizer, scheduler = make_optimizer(model.parameters(), cfg, epochs=10)
    return optimizer, scheduler


def test_plateau_on_the_loss_cuts_the_rate_when_the_validation_loss_stops_falling():
    """003 §2.5: "reduced by a factor of 10 whenever the loss has not improved"; the Dice
    improving does not keep the rate up when the loss watched got worse."""
    optimizer, scheduler = _plateau("loss")
    lr = optimizer.param_groups[0]["lr"]
    _step_schedule(scheduler, Validation({"WT": 0.5}, loss=1.0), "loss")
    _step_schedule(scheduler, Validation({"WT": 0.6}, loss=0.9), "loss")
    assert optimizer.param_groups[0]["lr"] == lr
    _step_schedule(scheduler, Validation({"WT": 0.7}, loss=0.95), "loss")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.4)


def test_plateau_on_dice_ignores_the_loss():
    optimizer, scheduler = _plateau("dice")
    lr = optimizer.param_groups[0]["lr"]
    _step_schedule(scheduler, Validation({"WT": 0.5}, loss=1.0), "dice")
    _step_schedule(scheduler, Validation({"WT": 0.6}, loss=2.0), "dice")
    assert optimizer.param_groups[0]["lr"] == lr
    _step_schedule(scheduler, Validation({"WT": 0.55}, loss=0.1), "dice")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.4)


def test_paper_recipes_say_what_their_plateau_watches():
    for name in ("resunet-localization", "effunet"):
        for member in load_config(name).members:
            assert member.optimizer.schedule == "plateau"
            assert member.optimizer.monitor == "loss"
    with pytest.raises(ConfigError, match="optimizer.monitor must be one of loss, dice"):
        type(member.optimizer)(monitor="val_dice")


def _readme_recipe_rows() -> dict[str, str]:
    """recipe name -> its row of the README's recipe table (the table under ``| recipe |``)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("\n| recipe | paper |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name = re.match(r"\| `([\w-]+)` \|", line)
        if name:
            rows[name.group(1)] = line
    return rows


def test_readme_recipe_table_gives_the_parameter_counts_describe_prints():
    """Every shipped recipe has a README row whose parameters column holds exactly the
    exported parameter counts ``bratskit train --describe`` prints for its members."""
    rows = _readme_recipe_rows()
    assert set(rows) == set(recipe_names())
    for name in recipe_names():
        printed = describe_recipe(load_config(name))
        counts = {
            int(n.replace(",", "")) for n in re.findall(r"exported parameters: ([\d,]+)", printed)
        }
        cell = rows[name].split(" | ")[3]
        assert {
            int(n.replace(",", "")) for n in re.findall(r"\d{1,3}(?:,\d{3})+", cell)
        } == counts, name
