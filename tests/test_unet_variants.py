"""The no-skip ablation keeps the U-Net's sizes and drops only the concatenated encoder maps."""

import pytest
import torch

from unet_teach.models import PRESETS, UNet, count_parameters, output_size
from unet_teach.unet_variants import NoSkipUNet


@pytest.mark.parametrize("name", ["paper", "keras", "pytorch"])
def test_same_shapes_fewer_parameters(name):
    kwargs = {**PRESETS[name], "base_width": 4}
    full, noskip = UNet(**kwargs), NoSkipUNet(**kwargs)
    size = 188 if kwargs["padding"] == "valid" else 64
    x = torch.zeros(1, kwargs["in_channels"], size, size)
    assert noskip.eval()(x).shape == full.eval()(x).shape
    # each decoder level's first 3x3 conv loses its skip inputs: w * w * 9 weights per level
    lost = sum(w * w * 9 for w in full.widths[:-1])
    assert count_parameters(full) - count_parameters(noskip) == lost


def test_output_does_not_depend_on_encoder_maps_through_skips():
    torch.manual_seed(0)
    net = NoSkipUNet(1, 2, depth=2, base_width=4, padding="valid").double()
    assert net(torch.zeros(1, 1, 76, 76, dtype=torch.float64)).shape[-1] == output_size(76, 2)
    for up in net.ups:
        assert up.conv[0].in_channels == up.up.out_channels
