"""unet_teach.losses against independent references: hand-worked cases, torch's own
log-softmax, a brute-force per-pixel weight map, and metrics.dice on hard predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unet_teach import metrics
from unet_teach.losses import (cross_entropy, default_loss, dice_ce_loss, dice_loss,
                               probabilities, to_labels, weight_map)


def _confident(target: torch.Tensor, k: int = 2, margin: float = 30.0) -> torch.Tensor:
    """Scores N x k x H x W that put all probability on ``target``."""
    onehot = torch.nn.functional.one_hot(target, k).permute(0, 3, 1, 2).float()
    return (2 * onehot - 1) * margin


# ----------------------------------------------------------------------- activations, labels

def test_probabilities_pick_the_activation_from_the_number_of_maps():
    torch.manual_seed(0)
    one, many = torch.randn(2, 1, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(probabilities(one), torch.sigmoid(one))
    torch.testing.assert_close(probabilities(many), torch.softmax(many, dim=1))
    torch.testing.assert_close(probabilities(many).sum(1), torch.ones(2, 3, 3))


def test_to_labels_agrees_with_the_probabilities():
    torch.manual_seed(1)
    one, many = torch.randn(2, 1, 5, 5), torch.randn(2, 3, 5, 5)
    assert torch.equal(to_labels(one), (probabilities(one)[:, 0] > 0.5).long())
    assert torch.equal(to_labels(many), probabilities(many).argmax(1))
    assert to_labels(one).dtype == torch.int64 and to_labels(one).shape == (2, 5, 5)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.long)])
def test_scores_of_the_wrong_shape_or_dtype_are_refused(bad):
    with pytest.raises(ValueError, match="scores"):
        probabilities(bad)


# ----------------------------------------------------------------------- cross-entropy

def test_cross_entropy_is_the_mean_negative_log_likelihood():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    nll = -scores.log_softmax(1).gather(1, target[:, None])[:, 0]          # N x H x W
    assert cross_entropy(scores, target).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert default_loss(scores, target).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    weight = torch.rand(2, 4, 4) * 5
    expected = (weight * nll).sum() / nll.numel()          # the mean over pixels, not / sum(w)
    assert cross_entropy(scores, target, weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_binary_cross_entropy_for_one_map_matches_the_two_class_softmax():
    torch.manual_seed(2)
    logit = torch.randn(2, 1, 4, 4)
    target = torch.randint(0, 2, (2, 4, 4))
    p = torch.sigmoid(logit[:, 0])
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    assert cross_entropy(logit, target).item() == pytest.approx(bce.mean().item(), rel=1e-5)
    # a sigmoid of s is a softmax over (0, s): both are the same likelihood, same level
    two = torch.cat([torch.zeros_like(logit), logit], dim=1)
    assert cross_entropy(logit, target).item() == pytest.approx(cross_entropy(two, target).item(),
                                                                rel=1e-5)
    w = torch.rand(2, 4, 4)
    assert cross_entropy(logit, target, w).item() == pytest.approx((w * bce).mean().item(),
                                                                   rel=1e-5)


def test_cross_entropy_refuses_mismatched_target_and_weight():
    with pytest.raises(ValueError, match="center_crop"):
        cross_entropy(torch.zeros(1, 2, 8, 8), torch.zeros(1, 6, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="one weight per pixel"):
        cross_entropy(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long),
                      torch.ones(4, 4))


# ----------------------------------------------------------------------- Dice

@pytest.mark.parametrize("k", [1, 2, 3])
def test_dice_loss_perfect_and_opposite(k):
    target = torch.tensor([[[0, 1, 1], [1, 0, 1]]]) % max(k, 2)
    if k == 1:
        scores = (2 * target[:, None].float() - 1) * 30                    # N x 1 x H x W
    else:
        scores = _confident(target, k)
    assert dice_loss(scores, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-scores, target).item() == pytest.approx(1.0, abs=1e-5)   # smoothing


def test_dice_loss_on_an_empty_mask():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    right = _confident(target)                       # predicts no foreground: nothing to miss
    assert dice_loss(right, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = -right                                   # foreground everywhere: 0 overlap
    assert dice_loss(wrong, target).item() == pytest.approx(1.0, abs=1e-5)
    # an all-foreground mask with a perfect prediction
    full = torch.ones(1, 4, 4, dtype=torch.long)
    assert dice_loss(_confident(full), full).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_of_hard_predictions_is_the_dice_coefficient():
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 2, (2, 8, 8)))
    pred = torch.from_numpy(rng.integers(0, 2, (2, 8, 8)))
    loss = dice_loss(_confident(pred), target, smooth=0.0)
    assert 1 - loss.item() == pytest.approx(metrics.dice(pred.numpy(), target.numpy()), rel=1e-5)
    both = dice_loss(_confident(pred), target, smooth=0.0, include_background=True)
    mean = metrics.mean_dice(pred.numpy(), target.numpy(), num_classes=2)
    assert 1 - both.item() == pytest.approx(mean, rel=1e-5)


def test_dice_loss_hand_worked_soft_case():
    # one pixel of each class, p(class 1) = 0.75 on the first, 0.25 on the second
    scores = torch.tensor([[[[math.log(3), -math.log(3)]]]])            # 1 x 1 x 1 x 2 logits
    target = torch.tensor([[[1, 0]]])
    # class 1: 2 * 0.75 / (0.75 + 0.25 + 1) = 0.75
    assert dice_loss(scores, target, smooth=0.0).item() == pytest.approx(0.25, rel=1e-6)
    # both classes counted: class 0 also 0.75
    assert dice_loss(scores, target, smooth=0.0,
                     include_background=True).item() == pytest.approx(0.25, rel=1e-6)


def test_dice_ce_loss_is_the_sum():
    torch.manual_seed(3)
    scores, target = torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 4, 4))
    w = torch.rand(2, 4, 4)
    expected = dice_loss(scores, target) + cross_entropy(scores, target, w)
    assert dice_ce_loss(scores, target, w).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_loss_has_gradients():
    scores = torch.zeros(1, 2, 4, 4, requires_grad=True)
    dice_loss(scores, torch.ones(1, 4, 4, dtype=torch.long)).backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


# ----------------------------------------------------------------------- the weight map

def _brute_force_weights(instances, w0=10.0, sigma=5.0, balance=True):
    """w(x) pixel by pixel: distances to every pixel of every cell, the two nearest cells."""
    h, w = instances.shape
    cells = [i for i in np.unique(instances) if i != 0]
    coords = {i: np.argwhere(instances == i) for i in cells}
    fg = instances > 0
    out = np.ones((h, w))
    for y in range(h):
        for x in range(w):
            if balance:
                same = fg == fg[y, x]
                out[y, x] = fg.size / (2 * same.sum())
            if fg[y, x] or len(cells) < 2:
                continue
            d = sorted(np.sqrt(((coords[i] - (y, x)) ** 2).sum(1)).min() for i in cells)
            out[y, x] += w0 * math.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2))
    return out


def test_weight_map_two_touching_squares():
    inst = np.zeros((12, 15), np.int64)
    inst[2:9, 1:7] = 1
    inst[3:10, 8:14] = 2                    # a one-pixel gap at column 7
    got = weight_map(inst)
    assert got.dtype == np.float32 and got.shape == inst.shape
    np.testing.assert_allclose(got, _brute_force_weights(inst), rtol=1e-5)
    # the gap between the cells carries the largest weights, w0 * exp(-(1+1)^2/50) + w_c
    gap = got[3:9, 7]
    assert gap.min() > got[inst > 0].max()
    np.testing.assert_allclose(got[5, 7], 10 * math.exp(-4 / 50) + inst.size / (2 * (inst == 0).sum()),
                               rtol=1e-5)


def test_weight_map_one_cell_and_no_cell():
    one = np.zeros((6, 6), np.int64)
    one[1:3, 1:4] = 7                                       # labels need not start at 1
    np.testing.assert_allclose(weight_map(one), _brute_force_weights(one), rtol=1e-6)
    assert np.allclose(weight_map(one, balance=False), 1.0)  # no border term with one cell
    none = np.zeros((5, 4), np.int64)
    np.testing.assert_allclose(weight_map(none), _brute_force_weights(none))   # 0.5: N / 2N
    np.testing.assert_allclose(weight_map(none, balance=False), np.ones((5, 4)))


def test_weight_map_options_and_class_balance():
    inst = np.zeros((10, 10), np.int64)
    inst[1:4, 1:4], inst[1:4, 5:9], inst[6:9, 2:8] = 1, 2, 3
    np.testing.assert_allclose(weight_map(inst, w0=3.0, sigma=2.0, balance=False),
                               _brute_force_weights(inst, 3.0, 2.0, balance=False), rtol=1e-5)
    wc = weight_map(inst, w0=0.0)
    # balanced: both classes weigh half of all pixels in total
    assert wc[inst > 0].sum() == pytest.approx(inst.size / 2)
    assert wc[inst == 0].sum() == pytest.approx(inst.size / 2)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((2, 4, 4), np.int64)])
def test_weight_map_refuses_non_instance_maps(bad):
    with pytest.raises(ValueError, match="instance map"):
        weight_map(bad)
