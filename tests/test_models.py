"""U-Net building blocks, the presets' shapes / sizes / parameter counts, and input checks."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from unet_teach.losses import probabilities, to_labels
from unet_teach.models import (PRESETS, DoubleConv, Down, UNet, Up, center_crop, check_size,
                               count_parameters, nearest_valid_sizes, output_size, preset,
                               valid_sizes)

# (preset, demo input shape: the source article's for pytorch and tf, the paper's for
# paper, one grey 256 x 256 image for keras; the output shape it gives)
PRESET_SHAPES = [
    ("keras", (1, 1, 256, 256), (1, 1, 256, 256)),
    ("pytorch", (2, 3, 256, 256), (2, 3, 256, 256)),
    ("tf", (4, 3, 256, 256), (4, 6, 256, 256)),
    ("tf_3x", (4, 3, 256, 256), (4, 3, 768, 768)),
    ("paper", (1, 1, 572, 572), (1, 2, 388, 388)),
]

# No source prints a parameter count: these are the layers' own arithmetic, checked below
# against a formula written out by hand (_expected_param_count).
PARAMETER_COUNTS = {
    "keras": 7_759_521,
    "pytorch": 32_090_627,
    "tf": 7_759_782,
    "tf_3x": 7_760_475,
    "paper": 31_030_658,
}


def _expected_param_count(in_ch, out_ch, depth, base, head_kernel=1, up="transposed",
                          up_bias=True, norm=None, down="maxpool", shuffle=1):
    """Independent count of a UNet's parameters from the architecture's definition."""
    def conv(cin, cout, k, bias=True):
        return cin * cout * k * k + (cout if bias else 0)

    def block(cin, cout):
        n = conv(cin, cout, 3) + conv(cout, cout, 3)
        if norm is not None:
            n += 2 * 2 * cout               # weight + bias of each of the two norms
        return n

    widths = [base * 2**i for i in range(depth + 1)]
    total, ch = 0, in_ch
    for w in widths[:-1]:
        total += block(ch, w)
        if down == "strided_conv":
            total += conv(w, w, 3)          # 3x3 stride-2 conv keeping the channels
        ch = w
    total += block(ch, widths[-1])
    for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
        total += conv(w_low, w, 2 if up == "transposed" else 1, up_bias)
        total += block(2 * w, w)            # skip (w) + up-sampled (w) channels in
    total += conv(widths[0], out_ch * shuffle**2, head_kernel)
    return total


def _run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


# --------------------------------------------------------------------------- presets: shapes


@pytest.fixture(scope="module")
def nets():
    """Every preset, built once for the module (the big ones cost ~0.2 s each to build)."""
    torch.manual_seed(0)
    return {name: preset(name).eval() for name in PRESETS}


@pytest.mark.parametrize("name, in_shape, out_shape", PRESET_SHAPES,
                         ids=[p[0] for p in PRESET_SHAPES])
def test_preset_output_shape_documented_batch(nets, name, in_shape, out_shape):
    out = _run(nets[name], torch.rand(*in_shape))
    assert tuple(out.shape) == out_shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_presets_cover_all_documented_names():
    assert set(PRESETS) == {"paper", "keras", "pytorch", "tf", "tf_3x"}


@pytest.mark.parametrize("name, count", sorted(PARAMETER_COUNTS.items()))
def test_preset_parameter_count(nets, name, count):
    assert count_parameters(nets[name]) == count
    # independent check: every parameter is trainable, and numel adds up
    assert sum(p.numel() for p in nets[name].parameters()) == count


def test_parameter_count_matches_hand_formula():
    # the paper's and Keras' nets: plain conv blocks, 2x2 transposed up-convs, 1x1 head
    assert _expected_param_count(1, 2, 4, 64) == PARAMETER_COUNTS["paper"]
    assert _expected_param_count(1, 1, 4, 32) == PARAMETER_COUNTS["keras"]
    assert _expected_param_count(3, 6, 4, 32, up_bias=False) == PARAMETER_COUNTS["tf"]
    assert _expected_param_count(3, 3, 4, 32, up_bias=False, shuffle=3) == PARAMETER_COUNTS["tf_3x"]
    assert _expected_param_count(3, 3, 4, 64, head_kernel=3, up="nearest_conv", norm="batch",
                                 down="strided_conv") == PARAMETER_COUNTS["pytorch"]


def test_sid_networks_are_the_tf_3x_body_with_their_own_inputs_and_heads():
    # Learning to See in the Dark: 9 packed X-Trans channels -> 27 maps -> depth-to-space 3
    # (train_Fuji.py), 4 packed Bayer channels -> 12 maps -> depth-to-space 2 (train_Sony.py)
    fuji = preset("tf_3x", in_channels=9)
    sony = preset("tf_3x", in_channels=4, pixel_shuffle=2)
    assert (fuji.head.out_channels, sony.head.out_channels) == (27, 12)
    assert count_parameters(fuji) == _expected_param_count(9, 3, 4, 32, up_bias=False,
                                                           shuffle=3)
    assert count_parameters(sony) == _expected_param_count(4, 3, 4, 32, up_bias=False,
                                                           shuffle=2)
    assert _run(fuji, torch.zeros(1, 9, 32, 32)).shape == (1, 3, 96, 96)
    assert _run(sony, torch.zeros(1, 4, 32, 32)).shape == (1, 3, 64, 64)


def test_unknown_preset_and_overrides():
    with pytest.raises(ValueError, match="unknown preset 'resnet'"):
        preset("resnet")
    net = preset("keras", base_width=8)
    assert net.widths == [8, 16, 32, 64, 128]
    # overrides do not leak into the shared preset table
    assert PRESETS["keras"]["base_width"] == 32


# --------------------------------------------------------------------------- presets: structure


def _modules(net, kind):
    return [m for m in net.modules() if isinstance(m, kind)]


def test_paper_structure(nets):
    net = nets["paper"]
    assert net.widths == [64, 128, 256, 512, 1024]
    assert net.padding == "valid"
    convs = [m for m in _modules(net, nn.Conv2d) if m.kernel_size == (3, 3)]
    assert len(convs) == 18 and all(c.padding == (0, 0) for c in convs)
    assert len(_modules(net, nn.MaxPool2d)) == 4
    ups = _modules(net, nn.ConvTranspose2d)
    assert len(ups) == 4 and all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert all(u.bias is not None for u in ups)
    assert not _modules(net, nn.BatchNorm2d) and not _modules(net, nn.Dropout)
    assert len(_modules(net, nn.ReLU)) == 18 and not _modules(net, nn.LeakyReLU)
    assert net.head.kernel_size == (1, 1) and net.head.out_channels == 2


def test_keras_structure_returns_raw_scores(nets):
    net = nets["keras"]
    assert net.widths == [32, 64, 128, 256, 512]
    assert all(c.padding == (1, 1) for c in _modules(net, nn.Conv2d) if c.kernel_size == (3, 3))
    assert len(_modules(net, nn.MaxPool2d)) == 4
    assert len(_modules(net, nn.ConvTranspose2d)) == 4
    assert net.head.out_channels == 1
    torch.manual_seed(1)
    x = torch.randn(1, 1, 64, 64) * 5          # large inputs push scores far from zero
    out = _run(net, x)
    # raw scores (no sigmoid inside the net): values outside [0, 1] occur
    assert out.min() < 0 or out.max() > 1
    # the original's sigmoid head is losses.probabilities applied outside, and the labels
    # are its threshold at 0.5 - not all ones, as a second sigmoid would give
    probs = probabilities(out)
    torch.testing.assert_close(probs, torch.sigmoid(out))
    assert torch.equal(to_labels(out), (probs[:, 0] > 0.5).long())


def test_pytorch_structure(nets):
    net = nets["pytorch"]
    assert net.widths == [64, 128, 256, 512, 1024]
    assert len(_modules(net, nn.BatchNorm2d)) == 18      # one after every 3x3 block conv
    drops = [m.p for m in _modules(net, nn.Dropout)]
    assert len(drops) == 18 and drops.count(0.3) == 9 and drops.count(0.4) == 9
    # in every block: conv -> BN -> Dropout(0.3) -> LeakyReLU -> conv -> BN -> Dropout(0.4) -> LeakyReLU
    block = net.encoder[0]
    kinds = [type(m) for m in block]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.Dropout, nn.LeakyReLU] * 2
    assert block[2].p == 0.3 and block[6].p == 0.4
    leaky = _modules(net, nn.LeakyReLU)
    assert leaky and all(m.negative_slope == 0.01 for m in leaky)
    assert not _modules(net, nn.ReLU)
    # strided-conv down-sampling, no max-pooling
    assert not _modules(net, nn.MaxPool2d)
    downs = [d[0] for d in net.downs]
    assert all(isinstance(d, nn.Conv2d) and d.stride == (2, 2) and d.kernel_size == (3, 3)
               and d.in_channels == d.out_channels for d in downs)
    # nearest + 1x1 conv up-sampling, no transposed convs
    assert not _modules(net, nn.ConvTranspose2d)
    assert all(u.mode == "nearest_conv" and u.up.kernel_size == (1, 1) for u in net.ups)
    assert net.head.kernel_size == (3, 3) and net.head.padding == (1, 1)
    assert net.head.out_channels == 3


def test_pytorch_preset_eval_is_deterministic_and_train_mode_uses_dropout():
    net = preset("pytorch", base_width=4)       # same structure, cheap
    x = torch.rand(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    torch.testing.assert_close(a, b)
    net.train()
    with torch.no_grad():
        torch.manual_seed(0)
        c = net(x)
        torch.manual_seed(1)
        d = net(x)
    assert not torch.allclose(c, d)


@pytest.mark.parametrize("name", ["tf", "tf_3x"])
def test_tf_structure(nets, name):
    net = nets[name]
    assert net.widths == [32, 64, 128, 256, 512]
    ups = _modules(net, nn.ConvTranspose2d)
    assert len(ups) == 4 and all(u.bias is None for u in ups)
    # the other convolutions keep their bias
    assert all(c.bias is not None for c in _modules(net, nn.Conv2d))
    leaky = _modules(net, nn.LeakyReLU)
    assert len(leaky) == 18 and all(m.negative_slope == 0.2 for m in leaky)
    assert len(_modules(net, nn.MaxPool2d)) == 4
    assert not _modules(net, nn.BatchNorm2d)
    if name == "tf":
        assert net.head.out_channels == 6 and isinstance(net.shuffle, nn.Identity)
    else:
        assert net.head.out_channels == 27
        assert isinstance(net.shuffle, nn.PixelShuffle) and net.shuffle.upscale_factor == 3


def test_leaky_relu_really_leaks():
    torch.manual_seed(0)
    net = UNet(1, 1, depth=1, base_width=2, activation="leaky_relu", leaky_slope=0.2)
    act = net.encoder[0][2]            # conv, norm (Identity), activation
    assert isinstance(act, nn.LeakyReLU)
    torch.testing.assert_close(act(torch.tensor([-1.0, 2.0])), torch.tensor([-0.2, 2.0]))


# --------------------------------------------------------------------------- pixel-shuffle head


def test_pixel_shuffle_head_rearranges_depth_to_space():
    torch.manual_seed(0)
    net = UNet(3, 3, depth=2, base_width=4, pixel_shuffle=3).eval()
    captured = {}
    net.head.register_forward_hook(lambda m, i, o: captured.setdefault("head", o))
    x = torch.rand(2, 3, 16, 16)
    out = _run(net, x)
    head = captured["head"]
    assert tuple(head.shape) == (2, 27, 16, 16)
    assert tuple(out.shape) == (2, 3, 48, 48)
    # independent depth-to-space: out[n, c, 3i+a, 3j+b] = head[n, 9c + 3a + b, i, j]
    r = 3
    ref = head.reshape(2, 3, r, r, 16, 16).permute(0, 1, 4, 2, 5, 3).reshape(2, 3, 48, 48)
    torch.testing.assert_close(out, ref)
    assert out[1, 2, 3 * 5 + 1, 3 * 7 + 2] == head[1, 9 * 2 + 3 * 1 + 2, 5, 7]


def test_pixel_shuffle_with_valid_padding():
    net = UNet(1, 2, depth=1, base_width=2, padding="valid", pixel_shuffle=2)
    assert output_size(28, depth=1) == 12
    assert tuple(_run(net, torch.rand(1, 1, 28, 28)).shape) == (1, 2, 24, 24)


# --------------------------------------------------------------------------- sizes


def test_paper_valid_sizes_formula():
    lo, hi = 1, 1300
    expected = [s for s in range(lo, hi + 1) if (s - 124) % 16 == 0 and s - 184 >= 1]
    assert valid_sizes(lo, hi) == expected
    assert expected[:3] == [188, 204, 220]
    assert valid_sizes(540, 600) == [540, 556, 572, 588]
    for s in range(lo, hi + 1):
        out = output_size(s)
        if s in expected:
            assert out == s - 184, s
        else:
            assert out is None, s


def test_output_size_same_and_other_depths():
    for s in range(1, 600):
        expected = s if s % 16 == 0 else None
        assert output_size(s, depth=4, padding="same") == expected, s
        assert output_size(s, depth=2, padding="same") == (s if s % 4 == 0 else None), s
    # depth 1 valid: s - 4 even, then output 2 * ((s - 4) / 2 - 4) - 4 = s - 16 must be >= 1
    for s in range(1, 100):
        ok = s >= 18 and s % 2 == 0
        assert output_size(s, depth=1) == (s - 16 if ok else None), s


@pytest.mark.parametrize("size", [188, 204, 572, 588])
def test_valid_net_output_size_matches_formula(size):
    """A real (narrow) depth-4 valid net produces exactly output_size(size)."""
    net = UNet(1, 2, depth=4, base_width=1, padding="valid")
    out = _run(net, torch.rand(1, 1, size, size))
    assert tuple(out.shape) == (1, 2, size - 184, size - 184)


def test_nonsquare_valid_input():
    net = UNet(1, 2, depth=4, base_width=1, padding="valid")
    out = _run(net, torch.rand(1, 1, 188, 204))
    assert tuple(out.shape) == (1, 2, 4, 20)


def test_nearest_valid_sizes():
    assert nearest_valid_sizes(570) == (556, 572)
    assert nearest_valid_sizes(573) == (572, 588)
    assert nearest_valid_sizes(100) == (None, 188)
    assert nearest_valid_sizes(100, padding="same") == (96, 112)


def test_check_size_error_names_nearest_sizes():
    assert check_size(572) is None
    with pytest.raises(ValueError) as info:
        check_size(570)
    msg = str(info.value)
    assert "570" in msg and "556 and 572" in msg and "valid" in msg
    with pytest.raises(ValueError, match=r"188 \(the smallest\)"):
        check_size(100)
    with pytest.raises(ValueError, match="input width 250.*240 and 256"):
        check_size(250, padding="same", axis="width")


def test_paper_net_rejects_570_with_nearest_sizes():
    # a narrow paper-style net fails the same way as the full one, before any convolution
    net = UNet(1, 2, depth=4, base_width=1, padding="valid")
    with pytest.raises(ValueError) as info:
        net(torch.zeros(1, 1, 570, 570))
    assert "556 and 572" in str(info.value) and "height" in str(info.value)
    with pytest.raises(ValueError) as info:
        net(torch.zeros(1, 1, 572, 570))
    assert "width" in str(info.value) and "556 and 572" in str(info.value)


def test_full_paper_net_rejects_570(nets):
    with pytest.raises(ValueError, match="556 and 572"):
        nets["paper"](torch.zeros(1, 1, 570, 570))


@pytest.mark.parametrize("size", [100, 250, 255, 264])
def test_same_padding_rejects_sizes_not_divisible_by_16(size):
    net = UNet(1, 1, depth=4, base_width=1)
    with pytest.raises(ValueError, match="same padding") as info:
        net(torch.zeros(1, 1, size, 256))
    below, above = size // 16 * 16, size // 16 * 16 + 16
    assert f"{below} and {above}" in str(info.value)


def test_same_padding_depth_2_accepts_multiples_of_4():
    net = UNet(1, 1, depth=2, base_width=2)
    assert tuple(_run(net, torch.rand(1, 1, 20, 12)).shape) == (1, 1, 20, 12)
    with pytest.raises(ValueError, match="depth-2"):
        net(torch.rand(1, 1, 18, 12))


# --------------------------------------------------------------------------- input checks


@pytest.fixture(scope="module")
def small():
    return UNet(3, 2, depth=2, base_width=2)


def test_wrong_channel_count(small):
    with pytest.raises(ValueError, match=r"expected 3 input channel\(s\), got 1") as info:
        small(torch.zeros(1, 1, 32, 32))
    assert "N x C x H x W" in str(info.value)


def test_channels_last_input_is_rejected(small):
    with pytest.raises(ValueError, match="channels come second"):
        small(torch.zeros(1, 32, 32, 3))


def test_three_d_input(small):
    with pytest.raises(ValueError, match="4-D batch") as info:
        small(torch.zeros(3, 32, 32))
    assert "(3, 32, 32)" in str(info.value) and "x[None, None]" in str(info.value)


def test_integer_dtype(small):
    with pytest.raises(ValueError, match="floating-point") as info:
        small(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert "x.float()" in str(info.value)


def test_numpy_input_is_rejected_with_type_error(small):
    import numpy as np
    with pytest.raises(TypeError, match="torch.as_tensor"):
        small(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.parametrize("kwargs", [dict(padding="full"), dict(down="avgpool"), dict(up="pixel"),
                                    dict(norm="group"), dict(activation="gelu"),
                                    dict(depth=0),
                                    dict(base_width=0), dict(in_channels=0)])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


# --------------------------------------------------------------------------- blocks


def test_center_crop():
    x = torch.arange(6 * 7).reshape(1, 1, 6, 7)
    out = center_crop(x, 2, 3)
    assert tuple(out.shape) == (1, 1, 2, 3)
    # top = (6 - 2) // 2 = 2, left = (7 - 3) // 2 = 2
    torch.testing.assert_close(out[0, 0], x[0, 0, 2:4, 2:5])
    # odd margin: the extra pixel comes off the bottom/right
    out = center_crop(x, 5, 6)
    torch.testing.assert_close(out[0, 0], x[0, 0, 0:5, 0:6])
    # identity crop, and it works on N x H x W targets too
    assert torch.equal(center_crop(x, 6, 7), x)
    y = torch.arange(2 * 8 * 8).reshape(2, 8, 8)
    torch.testing.assert_close(center_crop(y, 4, 4), y[:, 2:6, 2:6])
    assert tuple(center_crop(torch.zeros(1, 64, 568, 568), 392, 392).shape) == (1, 64, 392, 392)
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, 7, 7)
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, 6, 8)


def test_double_conv_shapes_and_order():
    assert tuple(DoubleConv(1, 4, padding="valid")(torch.zeros(1, 1, 20, 20)).shape) == (1, 4, 16, 16)
    assert tuple(DoubleConv(1, 4)(torch.zeros(1, 1, 20, 20)).shape) == (1, 4, 20, 20)
    block = DoubleConv(2, 4, norm="instance", dropout=(0.1, 0.0))
    kinds = [type(m) for m in block]
    assert kinds == [nn.Conv2d, nn.InstanceNorm2d, nn.Dropout, nn.ReLU,
                     nn.Conv2d, nn.InstanceNorm2d, nn.ReLU]
    assert block[0].in_channels == 2 and block[4].in_channels == 4


def test_down_modes():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(Down(1)(x), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))
    d = Down(8, mode="strided_conv")
    assert tuple(d(torch.zeros(2, 8, 64, 64)).shape) == (2, 8, 32, 32)


@pytest.mark.parametrize("mode", ["transposed", "nearest_conv", "bilinear"])
def test_up_modes(mode):
    up = Up(in_ch=8, skip_ch=4, up_ch=4, out_ch=4, mode=mode)
    assert tuple(up(torch.zeros(1, 8, 8, 8), torch.zeros(1, 4, 16, 16)).shape) == (1, 4, 16, 16)
    # valid: skip cropped to the up-sampled map, then two valid convs trim 4
    up = Up(in_ch=8, skip_ch=4, up_ch=4, out_ch=4, mode=mode, padding="valid")
    assert tuple(up(torch.zeros(1, 8, 8, 8), torch.zeros(1, 4, 24, 24)).shape) == (1, 4, 12, 12)


def test_up_concatenates_cropped_skip_first():
    up = Up(in_ch=2, skip_ch=1, up_ch=1, out_ch=1, mode="nearest_conv")
    seen = {}
    up.conv.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    skip = torch.arange(36.0).reshape(1, 1, 6, 6)
    with torch.no_grad():
        up(torch.zeros(1, 2, 2, 2), skip)
    cat = seen["x"]
    assert tuple(cat.shape) == (1, 2, 4, 4)
    torch.testing.assert_close(cat[:, :1], skip[..., 1:5, 1:5])


@pytest.mark.parametrize("final", ["sigmoid", "softmax"])
def test_final_activation_is_refused_with_advice(final):
    with pytest.raises(ValueError, match="raw scores.*losses.probabilities"):
        UNet(1, 3, depth=1, base_width=2, final_activation=final)
    with pytest.raises(ValueError, match="apply it outside"):
        preset("keras", final_activation=final)


@pytest.mark.parametrize("block, kwargs, valid", [
    (DoubleConv, dict(in_ch=1, out_ch=2, padding="full"), "padding"),
    (DoubleConv, dict(in_ch=1, out_ch=2, activation="gelu"), "activation"),
    (DoubleConv, dict(in_ch=1, out_ch=2, norm="group"), "norm"),
    (Down, dict(channels=2, mode="avgpool"), "down"),
    (Down, dict(channels=2, mode="strided_conv", activation="elu"), "activation"),
    (Up, dict(in_ch=4, skip_ch=2, up_ch=2, out_ch=2, mode="pixel"), "up"),
    (Up, dict(in_ch=4, skip_ch=2, up_ch=2, out_ch=2, activation="swish"), "activation"),
])
def test_blocks_refuse_unknown_modes(block, kwargs, valid):
    # a typo must not quietly become LeakyReLU or a strided convolution
    with pytest.raises(ValueError, match=rf"{valid}=.*is not one of"):
        block(**kwargs)


def test_skips_false_is_the_net_without_concatenations():
    net = UNet(1, 2, depth=2, base_width=4, skips=False)
    assert all(u.skip_ch == 0 for u in net.ups)
    # the first decoder conv sees only the up-sampled channels
    assert [u.conv[0].in_channels for u in net.ups] == [8, 4]
    with_skips = UNet(1, 2, depth=2, base_width=4)
    assert [u.conv[0].in_channels for u in with_skips.ups] == [16, 8]
    # and at run time the decoder convs receive only those channels
    seen = []
    for up in net.ups:
        up.conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    net(torch.zeros(1, 1, 16, 16))
    assert seen == [8, 4]
    for padding, size in (("same", 32), ("valid", 60)):
        a = UNet(1, 2, depth=2, base_width=4, padding=padding)
        b = UNet(1, 2, depth=2, base_width=4, padding=padding, skips=False)
        x = torch.zeros(1, 1, size, size)
        assert a(x).shape == b(x).shape
        assert count_parameters(b) < count_parameters(a)


def test_skips_false_keeps_every_other_argument():
    # the old subclass re-derived its arguments and turned dropout=(0.3, 0.0) into (0, 0)
    net = UNet(1, 2, depth=2, base_width=4, skips=False, dropout=(0.3, 0.0), norm="batch",
               activation="leaky_relu", leaky_slope=0.2, up="bilinear", padding="valid")
    for up in net.ups:
        assert [m.p for m in up.conv if isinstance(m, nn.Dropout)] == [0.3]
        assert sum(isinstance(m, nn.BatchNorm2d) for m in up.conv) == 2
        assert all(m.negative_slope == 0.2 for m in up.conv if isinstance(m, nn.LeakyReLU))
        assert up.mode == "bilinear" and up.conv[0].padding == (0, 0)
    ref = UNet(1, 2, depth=2, base_width=4, dropout=(0.3, 0.0), norm="batch",
               activation="leaky_relu", leaky_slope=0.2, up="bilinear", padding="valid")
    assert [type(m) for m in net.modules()] == [type(m) for m in ref.modules()]


def test_up_without_skip_refuses_a_skip_and_the_reverse():
    with pytest.raises(ValueError, match="skip_ch=0"):
        Up(in_ch=4, skip_ch=0, up_ch=2, out_ch=2)(torch.zeros(1, 4, 4, 4), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="skip_ch=2"):
        Up(in_ch=4, skip_ch=2, up_ch=2, out_ch=2)(torch.zeros(1, 4, 4, 4))


def test_count_parameters_ignores_frozen():
    net = UNet(1, 2, depth=1, base_width=2)
    total = count_parameters(net)
    net.head.weight.requires_grad_(False)
    assert count_parameters(net) == total - net.head.weight.numel()


def test_error_messages_are_single_sentences_with_numbers():
    # the message for an invalid size gives the offending number and a remedy
    with pytest.raises(ValueError) as info:
        check_size(571)
    assert re.search(r"571 cannot pass through a depth-4 U-Net", str(info.value))
    assert "crop or mirror-pad" in str(info.value)


@pytest.mark.parametrize("kwargs", [dict(), dict(norm="batch", dropout=(0.3, 0.2)),
                                    dict(padding="valid", skips=False)])
def test_gradient_checkpointing_gives_the_same_gradients(kwargs):
    size = 60 if kwargs.get("padding") == "valid" else 32
    torch.manual_seed(0)
    plain = UNet(1, 2, depth=2, base_width=4, **kwargs)
    ckpt = UNet(1, 2, depth=2, base_width=4, checkpointing=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, size, size)
    grads = []
    for net in (plain, ckpt):
        net.train()
        torch.manual_seed(1)                  # the same dropout masks in both runs
        out = net(x)
        (out ** 2).mean().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], msg=k)
    # evaluation runs the ordinary path
    ckpt.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt(x), plain(x))
