"""unet_teach.cost against hand-computed formulas and independent measurements."""

import pytest
import torch
from torch import nn

from unet_teach.cost import (count_macs, dense_macs, empirical_receptive_field, layer_macs,
                             per_position_macs, receptive_field, redundancy_factor,
                             sliding_window_macs)
from unet_teach.models import UNet
from unet_teach.patches import PatchClassifier, patch_preset

# Ciresan's N4 by hand: 95 -conv4-> 92 -pool-> 46 -conv5-> 42 -pool-> 21 -conv4-> 18 -pool-> 9
# -conv4-> 6 -pool-> 3; 48 maps everywhere; fc 48*3*3 -> 200 -> 2.
N4_CONV = [92 * 92 * 48 * 1 * 4 * 4, 42 * 42 * 48 * 48 * 5 * 5, 18 * 18 * 48 * 48 * 4 * 4,
           6 * 6 * 48 * 48 * 4 * 4]
N4_FC = [48 * 3 * 3 * 200, 200 * 2]


def test_count_macs_n4_by_hand():
    net = patch_preset("n4")
    assert [m for _, m in layer_macs(net, (1, 1, 95, 95))] == N4_CONV + N4_FC
    assert count_macs(net, (1, 1, 95, 95)) == sum(N4_CONV + N4_FC)
    assert count_macs(net, (3, 1, 95, 95)) == 3 * sum(N4_CONV + N4_FC)     # batch scales


def test_count_macs_layers_by_hand():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=True)   # 16x16 -> 8x8
    assert count_macs(conv, (1, 4, 16, 16)) == 6 * 8 * 8 * (4 // 2) * 9
    up = nn.ConvTranspose2d(8, 4, 2, stride=2)                             # every input -> 4*2*2
    assert count_macs(up, (2, 8, 5, 5)) == 2 * 8 * 5 * 5 * 4 * 2 * 2
    assert count_macs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), (1, 3, 8, 8)) == 0


def test_sliding_and_dense_macs_n4_by_hand():
    net = patch_preset("n4")
    per_pos = 1 * 48 * 16 + 48 * 48 * 25 + 48 * 48 * 16 + 48 * 48 * 16 + sum(N4_FC)
    assert per_position_macs(net) == per_pos
    assert sliding_window_macs(net, 512, 512) == 512 * 512 * sum(N4_CONV + N4_FC)
    assert dense_macs(net, 512, 300) == 512 * 300 * per_pos
    assert redundancy_factor(net) == pytest.approx(sum(N4_CONV + N4_FC) / per_pos)
    assert redundancy_factor(net) > 100          # the point of chapter 3


def test_redundancy_is_one_without_overlap():
    # a 1x1 "window": nothing is shared between neighbouring pixels
    net = PatchClassifier(window=1, convs=(), fc=(4,))
    assert redundancy_factor(net) == 1.0


@pytest.mark.parametrize("layers, expected", [
    ([nn.Conv2d(1, 1, 3)], (3, 1)),
    ([nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3)], (5, 1)),
    ([nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)], (8, 2)),
    ([nn.Conv2d(1, 1, 3, dilation=2)], (5, 1)),
    ([nn.Conv2d(1, 1, 3, stride=2), nn.AvgPool2d(3, stride=1), nn.Conv2d(1, 1, 1)], (7, 2)),
    ([nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)], (8, 8)),
])
def test_receptive_field_simple_stacks(layers, expected):
    assert receptive_field(layers) == expected
    assert receptive_field(nn.Sequential(*layers, nn.ReLU())) == expected


def test_receptive_field_n4_by_hand():
    # size: 1 +3 =4, +1 =5 (jump 2), +4*2 =13, +1*2 =15 (jump 4), +3*4 =27, +1*4 =31
    # (jump 8), +3*8 =55, +1*8 =63 (jump 16)
    assert receptive_field(patch_preset("n4").features) == (63, 16)


@pytest.mark.parametrize("name", ["n4", "w65", "w33", "w17"])
def test_empirical_equals_formula_on_presets(name):
    features = patch_preset(name).features
    size, _ = receptive_field(features)
    assert empirical_receptive_field(features, size=129) == size


def test_empirical_equals_formula_on_strided_dilated_stack():
    stack = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3, dilation=2),
                          nn.BatchNorm2d(4), nn.MaxPool2d(3, stride=2), nn.Conv2d(4, 3, 1))
    assert empirical_receptive_field(stack, in_channels=2, size=65) == receptive_field(stack)[0] == 15


def test_empirical_on_patch_classifier_and_unet():
    # the fully connected head sees the used part of the window
    assert empirical_receptive_field(patch_preset("w33")) == 33
    # a depth-1 'same' U-Net: two 3x3 convs (5), 2x2 pool (6, jump 2), two 3x3 convs at
    # jump 2 (+8 = 14), a 2x2 up-conv (one bottleneck feature per output pixel), then two
    # 3x3 convs at full resolution (+4 = 18)
    assert empirical_receptive_field(UNet(depth=1, base_width=2, padding="same"), size=64) == 18


def test_clear_errors():
    with pytest.raises(ValueError, match="empirical_receptive_field"):
        receptive_field(patch_preset("w17"))                       # has Linear layers
    with pytest.raises(ValueError, match="empirical_receptive_field"):
        receptive_field([nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)])
    with pytest.raises(ValueError, match="non-square"):
        receptive_field([nn.Conv2d(1, 1, (3, 5))])
    with pytest.raises(ValueError, match="larger size"):
        empirical_receptive_field(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1)] * 20), size=21)
    with pytest.raises(TypeError, match="PatchClassifier"):
        sliding_window_macs(nn.Conv2d(1, 1, 3), 8, 8)


def test_count_macs_leaves_model_state_alone():
    net = patch_preset("w17").train()
    before = [p.clone() for p in net.parameters()]
    count_macs(net, (1, 1, 17, 17))
    empirical_receptive_field(net)
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
