"""Overlap-tile inference: exact for valid-padding nets, clear errors for bad tiles."""

import numpy as np
import pytest
import torch

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


def test_exercise_checks_for_the_unet_questions(capsys):
    from unet_teach.checks import unet as checks
    from unet_teach import models

    checks.check_unet(lambda i, o, d, w: models.UNet(i, o, d, w, padding="valid"))
    checks.check_valid_sizes(lambda lo, hi, d: models.valid_sizes(lo, hi, d))
    out = capsys.readouterr().out.splitlines()
    assert out == ["unet: all 6 checks passed - 4 points", "valid_sizes: all 4 checks passed - 2 points"]
    with pytest.raises(AssertionError, match=r"(?s)parameters, expected .*Hint: level i"):
        checks.check_unet(lambda i, o, d, w: models.UNet(i, o, d, w + 1, padding="valid"))
    with pytest.raises(AssertionError, match=r"wrongly included: \[570\]"):
        checks.check_valid_sizes(lambda lo, hi, d: sorted(models.valid_sizes(lo, hi, d) + [570])
                                 if lo == 540 else models.valid_sizes(lo, hi, d))

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
