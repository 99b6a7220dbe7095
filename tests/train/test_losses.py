"""Hand-computed values and empty-mask conventions of train.losses."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import (
    LOSSES,
    barlow_twins,
    bce,
    bce_dice,
    ce_minus_dice,
    dice_coefficient,
    dice_loss,
    get_loss,
)

# Four voxels, one sample, one region: probabilities p and target t.
P = [0.8, 0.2, 0.6, 0.5]
T = [1.0, 0.0, 1.0, 0.0]
EPS = 1e-5
BIG = 30.0  # sigmoid(30) = 1 - 9.4e-14: "near one"; sigmoid(-30): "near zero"


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _tiny_pair() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([_logit(p) for p in P], dtype=torch.float64).reshape(1, 1, 1, 2, 2)
    target = torch.tensor(T, dtype=torch.float64).reshape(1, 1, 1, 2, 2)
    return logits, target


# BCE: -(1/4) [ln 0.8 + ln(1 - 0.2) + ln 0.6 + ln(1 - 0.5)]
BCE_EXPECTED = -(math.log(0.8) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
# plain: sum p t = 0.8 + 0.6 = 1.4; sum p = 2.1; sum t = 2
DICE_PLAIN_EXPECTED = (2 * 1.4 + EPS) / (2.1 + 2.0 + EPS)
# squared: sum p^2 = 0.64 + 0.04 + 0.36 + 0.25 = 1.29; sum t^2 = 2
DICE_SQUARED_EXPECTED = 2 * 1.4 / (2.0 + 1.29 + EPS)


def test_bce_hand_computed():
    logits, target = _tiny_pair()
    assert math.isclose(BCE_EXPECTED, 0.4125650, abs_tol=1e-6)
    assert bce(logits, target).item() == pytest.approx(BCE_EXPECTED, rel=1e-9)


def test_dice_plain_hand_computed():
    logits, target = _tiny_pair()
    assert math.isclose(DICE_PLAIN_EXPECTED, 2.8 / 4.1, abs_tol=1e-6)
    assert dice_loss(logits, target).item() == pytest.approx(1 - DICE_PLAIN_EXPECTED, rel=1e-9)


def test_dice_squared_hand_computed():
    logits, target = _tiny_pair()
    assert math.isclose(DICE_SQUARED_EXPECTED, 2.8 / 3.29, abs_tol=1e-5)  # eps shifts it 3e-6
    loss = dice_loss(logits, target, form="squared").item()
    assert loss == pytest.approx(1 - DICE_SQUARED_EXPECTED, rel=1e-9)
    assert LOSSES["dice_squared"](logits, target).item() == pytest.approx(loss, rel=1e-12)


def test_bce_dice_is_sum():
    logits, target = _tiny_pair()
    expected = BCE_EXPECTED + 1 - DICE_PLAIN_EXPECTED
    assert bce_dice(logits, target).item() == pytest.approx(expected, rel=1e-9)
    assert bce_dice(logits, target).item() == pytest.approx(
        (bce(logits, target) + dice_loss(logits, target)).item(), rel=1e-12
    )


def test_ce_minus_dice_hand_computed_and_negative():
    logits, target = _tiny_pair()
    # 0.41257 - 0.85106 = -0.43850: negative, the Dice coefficient outweighs the BCE.
    expected = BCE_EXPECTED - DICE_SQUARED_EXPECTED
    value = ce_minus_dice(logits, target).item()
    assert value == pytest.approx(expected, rel=1e-9)
    assert value < 0


def test_dice_is_mean_over_sample_region_not_global():
    target = torch.ones(2, 1, 1, 2, 2)
    # Sample 0 perfect (Dice 1), sample 1 predicts nothing (Dice ~0): mean 0.5.
    logits = torch.cat([torch.full((1, 1, 1, 2, 2), BIG), torch.full((1, 1, 1, 2, 2), -BIG)])
    assert dice_loss(logits, target).item() == pytest.approx(0.5, abs=1e-5)
    assert dice_coefficient(logits, target).shape == (2, 1)


def test_empty_target_plain_convention():
    target = torch.zeros(1, 1, 1, 2, 2)
    near_zero = torch.full_like(target, -BIG)
    near_one = torch.full_like(target, BIG)
    # Dice = eps / (sum p + eps) = 1e-5 / (4 * 9.4e-14 + 1e-5) ~ 1: loss 0.
    assert dice_loss(near_zero, target).item() == pytest.approx(0.0, abs=1e-6)
    # Dice = eps / (4 + eps) ~ 2.5e-6: loss ~1.
    assert dice_loss(near_one, target).item() == pytest.approx(1 - EPS / (4 + EPS), abs=1e-6)


def test_empty_target_squared_convention_constant_one():
    target = torch.zeros(1, 1, 1, 2, 2)
    for value in (-BIG, 0.0, BIG):
        logits = torch.full_like(target, value, requires_grad=True)
        loss = dice_loss(logits, target, form="squared")
        assert loss.item() == 1.0
        loss.backward()
        assert torch.count_nonzero(logits.grad) == 0


def test_perfect_prediction():
    target = torch.tensor([1.0, 0.0, 1.0, 1.0]).reshape(1, 1, 1, 2, 2)
    logits = (2 * target - 1) * BIG
    assert bce(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(logits, target, form="squared").item() == pytest.approx(0.0, abs=1e-5)
    assert ce_minus_dice(logits, target).item() == pytest.approx(-1.0, abs=1e-5)


def test_bool_target_accepted():
    logits, target = _tiny_pair()
    assert bce(logits, target.bool()).item() == pytest.approx(BCE_EXPECTED, rel=1e-9)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_with_saturated_logits(name):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 3, 4, 4, 3, generator=gen) * 100).requires_grad_()
    target = torch.rand(2, 3, 4, 4, 3, generator=gen) > 0.5
    target[1, 2] = False  # one empty region
    loss = get_loss(name)(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_registry_and_errors():
    assert set(LOSSES) == {"bce", "dice", "dice_squared", "bce_dice", "ce_minus_dice"}
    assert get_loss("bce_dice") is bce_dice
    with pytest.raises(ValueError, match="unknown loss 'focal'.*bce_dice"):
        get_loss("focal")
    with pytest.raises(ValueError, match="unknown Dice form"):
        dice_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), form="cubed")
    with pytest.raises(ValueError, match="differ"):
        bce(torch.zeros(1, 3, 2, 2, 2), torch.zeros(1, 2, 2, 2, 2))


# Centred, mutually orthogonal columns (a 4x4 Hadamard matrix without its ones column).
HADAMARD_COLS = torch.tensor(
    [[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]]
)


def test_barlow_twins_identity_is_zero():
    z = HADAMARD_COLS
    assert barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-6)
    # Per-dimension centring and normalisation: affine changes of a view keep C = I.
    assert barlow_twins(z, 3 * z + 5).item() == pytest.approx(0.0, abs=1e-6)


def test_barlow_twins_anticorrelated():
    # C = -I: sum_i (1 - (-1))^2 = 4 K = 12.
    assert barlow_twins(HADAMARD_COLS, -HADAMARD_COLS).item() == pytest.approx(12.0, abs=1e-5)


def test_barlow_twins_redundant_dims():
    k, lambd = 4, 0.005
    v = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.1])
    z = v[:, None].repeat(1, k)  # every dimension identical: C is all ones
    expected = lambd * k * (k - 1)  # diagonal terms vanish, 12 off-diagonal ones
    assert barlow_twins(z, z, lambd=lambd).item() == pytest.approx(expected, rel=1e-5)
    batched = barlow_twins(
        torch.stack([z[:4, :3], HADAMARD_COLS]), torch.stack([z[:4, :3], HADAMARD_COLS])
    )
    assert batched.item() == pytest.approx((lambd * 3 * 2 + 0.0) / 2, rel=1e-5)


def test_barlow_twins_matches_equation_loop():
    gen = torch.Generator().manual_seed(1)
    z_a = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    z_b = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    a, b = z_a - z_a.mean(0), z_b - z_b.mean(0)
    expected = 0.0
    for i in range(3):
        for j in range(3):
            c_ij = (a[:, i] * b[:, j]).sum() / (a[:, i].norm() * b[:, j].norm())
            expected += (1 - c_ij) ** 2 if i == j else 0.005 * c_ij**2
    assert barlow_twins(z_a, z_b).item() == pytest.approx(expected.item(), rel=1e-6)


def test_barlow_twins_constant_dimension_gradient_finite():
    z_a = torch.zeros(5, 3, requires_grad=True)
    z_b = torch.randn(5, 3)
    loss = barlow_twins(z_a, z_b)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all()


def test_barlow_twins_errors():
    with pytest.raises(ValueError, match="equal shape"):
        barlow_twins(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        barlow_twins(torch.zeros(1, 3), torch.zeros(1, 3))


def test_batch_dice_pools_samples_so_an_empty_patch_does_not_score_zero():
    p = torch.tensor([0.8, 0.8, 0.2, 0.2]).reshape(2, 1, 2)
    logits = torch.log(p / (1 - p)).double()
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(2, 1, 2).double()
    # Per sample: A = 3.2 / 3.6, B = eps / (0.4 + eps) ~ 0; pooled: 3.2 / (2.0 + 2.0) = 0.8.
    per_sample = dice_coefficient(logits, target)
    assert per_sample[0, 0].item() == pytest.approx((3.2 + 1e-5) / (3.6 + 1e-5))
    assert per_sample[1, 0].item() < 1e-4
    pooled = dice_coefficient(logits, target, batch=True)
    assert pooled.shape == (1,) and pooled.item() == pytest.approx((3.2 + 1e-5) / (4.0 + 1e-5))
    assert bce_dice(logits, target).item() == pytest.approx(
        bce(logits, target).item() + 1 - pooled.item()
    )


def test_loss_params_weigh_the_dice_term_of_bce_dice():
    logits = torch.randn(1, 3, 6, 5, 4, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(1, 3, 6, 5, 4, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    plain = get_loss("bce_dice")(logits, target)
    weighted = get_loss("bce_dice", {"dice_weight": 3.0})(logits, target)
    dice = dice_loss(logits, target, form="plain", batch=True)
    torch.testing.assert_close(weighted - plain, 2.0 * dice)
    with pytest.raises(ValueError, match="takes no dice_weigth"):
        get_loss("bce_dice", {"dice_weigth": 2.0})
    with pytest.raises(ValueError, match="takes no dice_weight"):
        get_loss("dice_squared", {"dice_weight": 2.0})
