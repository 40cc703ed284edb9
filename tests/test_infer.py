"""Overlap-tile inference: exact for valid-padding nets, clear errors for bad tiles."""

import numpy as np
import pytest
import torch

from unet_teach import models
from unet_teach.infer import predict, predict_tiled, tile_layout
from unet_teach.models import UNet, preset, valid_sizes


def _whole_image(net, image):
    """Reference: mirror-pad by the context, pad up to a valid size, one forward pass."""
    smallest = valid_sizes(1, 2048, net.depth)[0]
    from unet_teach.models import output_size
    context = (smallest - output_size(smallest, net.depth)) // 2
    h, w = image.shape
    sh, sw = (valid_sizes(n + 2 * context, n + 2 * context + 64, net.depth)[0] for n in (h, w))
    padded = np.pad(image, ((context, sh - h - context), (context, sw - w - context)), mode="reflect")
    with torch.no_grad():
        out = net(torch.as_tensor(padded, dtype=next(net.parameters()).dtype)[None, None])
    return out.softmax(dim=1)[0, :, :h, :w].float().numpy()


@pytest.mark.parametrize("depth, width, size, tile, overlap", [
    (2, 4, (45, 37), 76, None), (2, 4, (101, 63), 92, 12), (3, 3, (77, 91), 132, None),
    (3, 3, (53, 29), 164, 20), (1, 5, (31, 47), 40, 2)])
def test_tiled_equals_whole_image_for_valid_nets(depth, width, size, tile, overlap):
    torch.manual_seed(depth)
    net = UNet(1, 2, depth, width, padding="valid").double()
    image = np.random.default_rng(depth).random(size)
    labels, probs = predict_tiled(net, image, tile, overlap)
    ref = _whole_image(net, image)
    assert probs.shape == (2, *size) and labels.shape == size
    assert np.abs(probs - ref).max() <= 1e-5
    assert (labels == ref.argmax(axis=0)).all()


def test_tiled_float32_and_one_tile():
    torch.manual_seed(0)
    net = UNet(1, 2, 2, 4, padding="valid")
    image = np.random.default_rng(0).random((59, 66)).astype(np.float32)
    _, whole = predict_tiled(net, image)                 # tile=None: one tile
    _, tiled = predict_tiled(net, image, 76)
    assert np.abs(whole - tiled).max() <= 1e-4


def test_same_padding_net_is_exact_where_no_tile_border_is_near():
    torch.manual_seed(0)
    net = preset("keras", base_width=4, depth=2)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    _, whole = predict(net, image[None])
    _, tiled = predict_tiled(net, image, 64)              # a single tile = the whole image
    assert np.abs(whole[0] - tiled).max() <= 1e-5
    _, seams = predict_tiled(net, image, 32, overlap=0)
    assert np.abs(whole[0] - seams).max() > 1e-4          # tile borders see zero padding


def test_invalid_tiles_name_valid_ones():
    net = preset("paper")
    with pytest.raises(ValueError, match="nearest valid tile sizes are 556 or 572"):
        predict_tiled(net, np.zeros((10, 10), np.float32), 570)
    with pytest.raises(ValueError, match="use one of 4, 20, 36"):
        tile_layout(net, 572, overlap=10)
    with pytest.raises(ValueError, match="use a tile of at least"):
        tile_layout(UNet(1, 2, 3, 4, padding="valid"), 92)
    with pytest.raises(ValueError, match="one H x W or C x H x W image"):
        predict_tiled(UNet(1, 2, 1, 4), np.zeros((2, 1, 16, 16), np.float32), 16)
    assert tile_layout(net, 572) == dict(tile=572, out=388, context=92, overlap=4, step=384, pad=92)


class MyUNet(torch.nn.Module):
    """A hand-written valid-padding U-Net (what a student writes for exercise 3)."""

    def __init__(self, cin, cout, depth, width):
        super().__init__()
        nn = torch.nn

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3), nn.ReLU(), nn.Conv2d(b, b, 3), nn.ReLU())

        w = [width * 2**i for i in range(depth + 1)]
        self.downs = nn.ModuleList(block(a, b) for a, b in zip([cin] + w[:-2], w[:-1]))
        self.bottom = block(w[-2], w[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * b, b, 2, stride=2) for b in w[:-1])
        self.convs = nn.ModuleList(block(2 * b, b) for b in w[:-1])
        self.head = nn.Conv2d(width, cout, 1)

    def forward(self, x):
        skips = []
        for down in self.downs:
            skips.append(down(x))
            x = torch.nn.functional.max_pool2d(skips[-1], 2)
        x = self.bottom(x)
        for up, conv, skip in reversed(list(zip(self.ups, self.convs, skips))):
            x = up(x)
            top, left = (skip.shape[-2] - x.shape[-2]) // 2, (skip.shape[-1] - x.shape[-1]) // 2
            skip = skip[..., top:top + x.shape[-2], left:left + x.shape[-1]]
            x = conv(torch.cat([skip, x], 1))
        return self.head(x)


def my_valid_sizes(lo, hi, depth):
    def fits(s):
        for _ in range(depth):
            if s < 6 or s % 2:
                return False
            s = (s - 4) // 2
        s -= 4
        for _ in range(depth):
            s = 2 * s - 4
        return s >= 1
    return [s for s in range(max(lo, 1), hi + 1) if fits(s)]


def test_exercise_checks_for_the_unet_questions(capsys):
    from unet_teach.checks import unet as checks

    checks.check_unet(MyUNet)
    checks.check_valid_sizes(my_valid_sizes)
    out = capsys.readouterr().out.splitlines()
    assert out == ["unet: all 6 checks passed - 4 points", "valid_sizes: all 4 checks passed - 2 points"]
    with pytest.raises(AssertionError, match=r"(?s)parameters, expected .*Hint: level i"):
        checks.check_unet(lambda i, o, d, w: MyUNet(i, o, d, w + 1))
    with pytest.raises(AssertionError, match=r"wrongly included: \[570\]"):
        checks.check_valid_sizes(lambda lo, hi, d: sorted(my_valid_sizes(lo, hi, d) + [570])
                                 if lo == 540 else my_valid_sizes(lo, hi, d))

    def untiled(net, image, tile):                  # ignores the pooling grid: tiles out apart
        out = models.output_size(tile, net.depth)
        ctx = (tile - out) // 2
        h, w = image.shape
        n = -(-max(h, w) // out)
        padded = np.pad(image, ((ctx, n * out - h + ctx), (ctx, n * out - w + ctx)), mode="reflect")
        scores = torch.zeros(2, n * out, n * out, dtype=torch.float64)
        with torch.no_grad():
            for i in range(n):
                for j in range(n):
                    t = torch.as_tensor(padded[i * out:i * out + tile, j * out:j * out + tile])
                    scores[:, i * out:(i + 1) * out, j * out:(j + 1) * out] = net(t[None, None])[0]
        return scores[:, :h, :w]
    with pytest.raises(AssertionError, match="multiple of 2\\*\\*depth"):
        checks.check_overlap_tile(untiled)


class _Wrapped(torch.nn.Module):
    """A student's 'own' U-Net that only holds the library's."""

    def __init__(self, cin, cout, depth, width):
        super().__init__()
        self.net = UNet(cin, cout, depth, width, padding="valid")

    def forward(self, x):
        return self.net(x)


def _tiled_scores(net, image, tile):
    # predict_tiled returns probabilities; their log is not the raw scores, but the check
    # fails it for calling the library first
    return torch.as_tensor(predict_tiled(net, image, tile)[1]).double().log()


@pytest.mark.parametrize("check, answer, reference", [
    ("check_unet", lambda i, o, d, w: UNet(i, o, d, w, padding="valid"), "models.UNet.__init__"),
    ("check_unet", lambda i, o, d, w: preset("paper", in_channels=i, out_channels=o, depth=d,
                                             base_width=w), "models.UNet.__init__"),
    ("check_unet", _Wrapped, "models.UNet.__init__"),
    ("check_valid_sizes", valid_sizes, "models.valid_sizes"),
    ("check_valid_sizes", lambda lo, hi, d: [s for s in range(lo, hi + 1)
                                             if models.output_size(s, d)], "models.output_size"),
    ("check_overlap_tile", _tiled_scores, "infer.predict_tiled"),
], ids=["UNet", "preset", "wrapped", "valid_sizes", "output_size", "predict_tiled"])
def test_exercise_checks_reject_the_library_answers(check, answer, reference):
    from unet_teach.checks import unet as checks

    with pytest.raises(AssertionError) as info:
        getattr(checks, check)(answer)
    first = str(info.value).splitlines()[0]
    assert "called the library's reference implementation" in first
    assert f"unet_teach.{reference}" in first
    assert first.endswith("earns no points for this question.")
    assert "the library's function is only the reference" in str(info.value)
