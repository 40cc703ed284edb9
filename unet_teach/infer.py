"""Inference: run a trained net over whole images and turn its scores into labels.

Two ways to run a net:

* :func:`predict` - a stack of whole images, each in one forward pass (the images must be a
  size the net takes);
* :func:`predict_tiled` - the U-Net paper's overlap-tile strategy: one image of any size,
  cut into tiles that each carry the context their outputs need, borders filled by
  mirroring; for images larger than memory, or sizes the net cannot take.

And, for one normalised image of any size (what ``unet-teach predict`` and chapter 10 do):
:func:`tile_for` picks the tiles (``TILE``/``OVERLAP`` for a same-padding net, one seamless
``VALID_TILE`` for a valid one), :func:`predict_probabilities` runs them, optionally
averaged over the 8 flips and quarter turns (test-time augmentation), and :func:`decide`
turns probabilities into class indices (a threshold, and optionally the regions cut apart
at weak spots with :func:`split_regions`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .augment import DIHEDRAL, flip_rotate, invert_flip_rotate
from .models import nearest_valid_sizes, output_size
from .losses import probabilities, to_labels


@torch.no_grad()
def predict(model: nn.Module, images, batch_size: int = 8,
            device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Segment a stack of images.

    Args:
        model: a segmentation net (``N x C x H x W -> N x K x H' x W'`` scores).
        images: ``N x H x W`` (one channel) or ``N x C x H x W`` floats in [0, 1].
        batch_size: images per forward pass.
        device: where to run; default: where the model's weights are.

    Returns:
        ``(labels, probabilities)``: labels int64 ``N x H' x W'``; probabilities float32
        ``N x K x H' x W'`` (softmax over classes, or the sigmoid for a single map).

    Example:
        >>> from unet_teach.models import UNet
        >>> labels, probs = predict(UNet(1, 2, depth=1, base_width=4), np.zeros((3, 16, 16), np.float32))
        >>> labels.shape, probs.shape
        ((3, 16, 16), (3, 2, 16, 16))
    """
    x_all = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x_all.ndim == 3:
        x_all = x_all[:, None]                       # N x 1 x H x W
    if x_all.ndim != 4:
        raise ValueError(f"images must be N x H x W or N x C x H x W, got {tuple(x_all.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, probs = [], []
    for start in range(0, len(x_all), batch_size):
        out = model(x_all[start:start + batch_size].float().to(device)).float()
        labels.append(to_labels(out).cpu())
        probs.append(probabilities(out).cpu())
    model.train(was_training)
    return torch.cat(labels).numpy(), torch.cat(probs).numpy()


# ----------------------------------------------------------------------------- overlap-tile

def _valid_overlaps(out: int, align: int) -> list[int]:
    return list(range(out % align, out, align))


def tile_layout(model: nn.Module, tile: int, overlap: int | None = None,
                image_shape: tuple[int, int] | None = None) -> dict[str, int]:
    """How :func:`predict_tiled` cuts an image for ``model`` and an input ``tile`` size.

    Returns a dict of side lengths in pixels:

    * ``tile``    - input tile;
    * ``out``     - output of one tile (``tile`` for same padding, ``tile - 184`` for the
      paper's valid net);
    * ``context`` - input pixels a valid net eats on each side (``(tile - out) // 2``);
    * ``overlap`` - output pixels two neighbouring tiles both compute (the one nearer its
      own centre is kept);
    * ``step``    - distance between tiles = output pixels kept from each tile;
    * ``pad``     - mirror padding added before the image's first row/column (the
      context, so that the first output is the image's first pixel).

    Given ``image_shape = (H, W)``, also how that image is covered:

    * ``rows``, ``cols``          - tiles down and across;
    * ``pad_bottom``, ``pad_right`` - mirror padding after the last row/column, so that the
      last tile has its full input (0 if the image already reaches far enough).

    ``step`` must be a multiple of ``2**depth``: max-pooling groups pixels in fixed pairs,
    and only a shift by a multiple of ``2**depth`` keeps every pooling window of a tile
    aligned with the whole image's. The default ``overlap`` is the smallest that allows it.

    Example:
        >>> from unet_teach.models import preset
        >>> tile_layout(preset("paper"), 572)
        {'tile': 572, 'out': 388, 'context': 92, 'overlap': 4, 'step': 384, 'pad': 92}
        >>> lay = tile_layout(preset("paper"), 572, image_shape=(512, 1000))
        >>> lay["rows"], lay["cols"], lay["pad_bottom"], lay["pad_right"]
        (2, 3, 352, 248)
    """
    depth, padding = getattr(model, "depth", None), getattr(model, "padding", None)
    if depth is None or padding is None:
        raise TypeError(f"expected a UNet (with .depth and .padding), got {type(model).__name__}")
    out = output_size(tile, depth, padding) if isinstance(tile, (int, np.integer)) and tile > 0 else None
    if out is None:
        below, above = nearest_valid_sizes(max(int(tile), 1), depth, padding)
        near = f"{below} or {above}" if below else f"{above} (the smallest)"
        raise ValueError(f"tile={tile!r} cannot pass through this depth-{depth} U-Net with "
                         f"{padding} padding; the nearest valid tile sizes are {near} "
                         "(all of them: unet_teach.models.valid_sizes)")
    align = 2 ** depth
    if out < align:
        bigger = next(t for t in range(tile + 1, tile + 64 * align)
                      if (output_size(t, depth, padding) or 0) >= align)
        raise ValueError(f"tile={tile} gives only {out} output px per tile, fewer than "
                         f"2**depth = {align}, so tiles cannot be placed on the pooling grid; "
                         f"use a tile of at least {bigger}")
    if overlap is None:
        overlap = out % align
    valid = _valid_overlaps(out, align)
    if isinstance(overlap, int) and not 0 <= overlap < out:
        raise ValueError(f"overlap={overlap} with tile {tile}: the overlap must be at least 0 and "
                         f"smaller than the tile's output ({out} px); valid overlaps: "
                         + ", ".join(map(str, valid[:6])) + (", ..." if len(valid) > 6 else ""))
    if overlap not in valid:
        shown = ", ".join(map(str, valid[:6])) + (", ..." if len(valid) > 6 else "")
        raise ValueError(f"overlap={overlap!r} with tile {tile} (output {out} px): tiles would "
                         f"be {out - overlap} px apart, which is not a multiple of 2**depth = "
                         f"{align}, so their pooling windows would not line up with the whole "
                         f"image's; use one of {shown}")
    context = (tile - out) // 2
    layout = dict(tile=int(tile), out=out, context=context, overlap=overlap,
                  step=out - overlap, pad=context)
    if image_shape is not None:
        # Tile i starts at padded row i*step and covers image rows i*step ... i*step+out-1;
        # enough tiles to reach the last row, and mirror padding so the last one is whole.
        step = layout["step"]
        (h, w) = image_shape[-2:]
        rows, cols = (max(1, -(-(n - out) // step) + 1) for n in (h, w))
        bottom, right = ((k - 1) * step + tile - n - context for k, n in ((rows, h), (cols, w)))
        layout.update(rows=rows, cols=cols, pad_bottom=max(bottom, 0), pad_right=max(right, 0))
    return layout


@torch.no_grad()
def predict_tiled(model: nn.Module, image, tile: int | None = None, overlap: int | None = None,
                  batch_size: int = 4, device: str | torch.device | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Segment one image of any size with the overlap-tile strategy.

    The image is mirror-padded (numpy ``reflect``), cut into ``tile x tile`` input tiles
    ``step`` pixels apart, and every tile keeps the ``step x step`` part of its output that
    is nearest its centre (see :func:`tile_layout`). For a valid-padding net each output
    pixel then sees exactly the input it would see in one whole-image pass over the same
    mirrored image, so the result is the same (up to float rounding). A same-padding net
    zero-pads every tile, so pixels near a tile's border differ from a whole-image pass
    (seams); a larger ``overlap`` discards more of those pixels.

    Args:
        model: a :class:`~unet_teach.models.UNet` (any padding).
        image: ``H x W`` or ``C x H x W`` floats in [0, 1] (numpy or torch).
        tile: input tile side; must be a size the net takes. ``None``: one tile covering
            the whole image (the smallest valid one).
        overlap: output pixels neighbouring tiles share; default the smallest allowed.
        batch_size: tiles per forward pass.
        device: where to run; default: where the model's weights are.

    Returns:
        ``(labels H x W int64, probabilities K x H x W float32)`` (softmax over classes, or
        the sigmoid for a single map).

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=2, base_width=4, padding="valid")
        >>> labels, probs = predict_tiled(net, np.zeros((50, 37), np.float32), tile=60)
        >>> labels.shape, probs.shape
        ((50, 37), (2, 50, 37))
    """
    x = torch.as_tensor(image) if not isinstance(image, torch.Tensor) else image
    x = x.detach().cpu().numpy()
    if x.ndim == 2:
        x = x[None]                                               # 1 x H x W
    if x.ndim != 3:
        raise ValueError(f"expected one H x W or C x H x W image, got shape {x.shape}; "
                         "for a stack, call predict_tiled once per image")
    h, w = x.shape[-2:]
    if tile is None:                                              # one tile for it all
        tile = _smallest_valid(model, max(h, w))
        while tile_layout(model, tile, overlap)["step"] < max(h, w):
            tile = _smallest_valid(model, tile + 1)
    lay = tile_layout(model, tile, overlap, image_shape=(h, w))
    out, step, pad, lo = lay["out"], lay["step"], lay["pad"], lay["overlap"] // 2
    ny, nx = lay["rows"], lay["cols"]                             # tiles down, across
    # Each tile keeps the output rows nearer its centre than its neighbours' (the first and
    # last tiles keep their outer edges too). Tiles start at multiples of step, so of
    # 2**depth: every pooling window lines up with the whole-image pass over the image
    # padded by `pad`.
    padded = np.pad(x, ((0, 0), (pad, lay["pad_bottom"]), (pad, lay["pad_right"])),
                    mode="reflect")                                       # C x H_p x W_p

    def kept(i: int, n: int) -> slice:                 # output rows tile i of n keeps
        return slice(0 if i == 0 else lo, out if i == n - 1 else lo + step)

    param = next(model.parameters())
    device = torch.device(device) if device is not None else param.device
    was_training = model.training
    model.eval()
    stitched = None                                    # raw scores, K x H_s x W_s
    grid = [(i, j) for i in range(ny) for j in range(nx)]
    for start in range(0, len(grid), batch_size):
        batch = grid[start:start + batch_size]
        tiles = np.stack([padded[:, i * step:i * step + tile, j * step:j * step + tile]
                          for i, j in batch])                             # B x C x T x T
        scores = model(torch.as_tensor(tiles, dtype=param.dtype, device=device))  # B x K x O x O
        scores = scores.float().cpu()
        if stitched is None:
            stitched = torch.empty(scores.shape[1], (ny - 1) * step + out, (nx - 1) * step + out)
        for (i, j), si in zip(batch, scores):
            rows, cols = kept(i, ny), kept(j, nx)
            stitched[:, i * step + rows.start:i * step + rows.stop,
                     j * step + cols.start:j * step + cols.stop] = si[:, rows, cols]
    model.train(was_training)
    scores = stitched[None, :, :h, :w]                             # 1 x K x H x W
    return to_labels(scores)[0].numpy(), probabilities(scores)[0].numpy()


def _smallest_valid(model: nn.Module, at_least: int = 1) -> int:
    """The smallest input side ``>= at_least`` the net takes."""
    if output_size(at_least, model.depth, model.padding) is not None:
        return at_least
    return nearest_valid_sizes(at_least, model.depth, model.padding)[1]


def split_regions(prob, threshold: float, seed_level: float) -> np.ndarray:
    """The region pixels ``prob > threshold``, cut apart where two regions meet only
    through a weak spot of the boundary between them.

    Thresholding alone merges two cells whenever the membrane between them has one gap
    (a single pixel above the threshold joins them), and a merge costs far more Rand
    error than a pixel. The cure: start one region from every confident core
    (``prob > seed_level``, above ``threshold``), let them grow over ``-prob`` (a
    watershed: down from the most certain pixels), and where two growing regions meet,
    draw a 1 px line of background. Regions whose cores are separate stay separate, even
    through a gap; a region with one core is unchanged.

    Args:
        prob: ``H x W`` probability of the region class.
        threshold: region pixels are ``prob > threshold``.
        seed_level: cores are the connected parts of ``prob > seed_level``.

    Returns:
        ``H x W`` bool, True on region pixels.

    Example:
        >>> p = np.full((5, 9), 0.9); p[:, 4] = 0.1; p[2, 4] = 0.6   # a gap at (2, 4)
        >>> int((p > 0.5).sum()), int(split_regions(p, 0.5, 0.8).sum())
        (41, 40)
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2:
        raise ValueError(f"prob: expected H x W, got shape {prob.shape}")
    if not threshold <= seed_level < 1:
        raise ValueError(f"seed_level {seed_level}: must be at least the threshold "
                         f"({threshold}) and below 1")
    inside = prob > threshold
    cores, _ = ndimage.label(prob > seed_level)
    basins = watershed(-prob, cores, mask=inside, watershed_line=True)
    # basins == 0 inside: the lines, and regions without any core (no watershed reaches
    # them); those regions stay as the threshold made them
    parts, n = ndimage.label(inside)
    has_core = np.zeros(n + 1, bool)
    has_core[np.unique(parts[cores > 0])] = True
    has_core[0] = False
    return inside & ((basins > 0) | ~has_core[parts])


# ------------------------------------------------------ one image, any size, into labels

#: Tile side for images larger than this (same-padding nets), and the overlap of tiles.
TILE, OVERLAP = 512, 64
#: The input tile for valid-padding nets, the paper's 572 px (388 output pixels).
VALID_TILE = 572


def input_for(model, out: int) -> tuple[int, int]:
    """``(input, output)``: the smallest input side the net takes whose output side is at
    least ``out`` (equal for a same-padding net, 184 px more for the paper's valid one).

    Example:
        >>> from unet_teach.models import UNet
        >>> input_for(UNet(1, 2, depth=4, base_width=4), 100)
        (112, 112)
        >>> input_for(UNet(1, 2, depth=4, base_width=4, padding="valid"), 100)
        (284, 100)
    """
    size = out
    while (output_size(size, model.depth, model.padding) or 0) < out:
        size += 1
    return size, output_size(size, model.depth, model.padding)


def tile_for(model, shape) -> tuple[int | None, int | None]:
    """``(tile, overlap)`` for :func:`unet_teach.infer.predict_tiled` on an image of
    ``shape`` (``(..., H, W)``); ``(None, None)`` = the whole image in one tile, the default
    overlap for ``None``.

    A same-padding net takes an image up to ``TILE`` px in one pass, larger ones in ``TILE``
    px tiles overlapping by ``OVERLAP``. A valid-padding net's tiles are seamless: one tile
    whose output covers the image, at most ``VALID_TILE`` px of input (and at least an
    output of ``2**depth`` px, which tiles need to stay on the pooling grid).

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=4, base_width=4)
        >>> tile_for(net, (300, 200)), tile_for(net, (2000, 900))
        ((None, None), (512, 64))
        >>> tile_for(UNet(1, 2, depth=4, base_width=4, padding="valid"), (64, 64))
        (252, None)
    """
    longest = max(shape[-2:])
    if model.padding == "same":
        return (None, None) if longest <= TILE else (TILE, OVERLAP)
    largest = output_size(input_for(model, output_size(VALID_TILE, model.depth,
                                                       model.padding) or 1)[0],
                          model.depth, model.padding)
    return input_for(model, max(2 ** model.depth, min(longest, largest)))[0], None


@torch.no_grad()
def predict_probabilities(model, image: np.ndarray, tta: bool = False,
                          device: torch.device | None = None) -> np.ndarray:
    """Class probabilities ``K x H x W`` (float32) of one normalised ``C x H x W`` image.

    With ``tta`` the image is flipped and turned 8 ways (``DIHEDRAL``), each prediction
    turned back (``invert_flip_rotate``) and the 8 averaged.

    Example:
        >>> from unet_teach.models import UNet
        >>> net = UNet(1, 2, depth=2, base_width=4)
        >>> predict_probabilities(net, np.zeros((1, 20, 30), np.float32), tta=True).shape
        (2, 20, 30)
    """
    if not tta:
        tile, overlap = tile_for(model, image.shape)
        return predict_tiled(model, image, tile, overlap, device=device)[1]
    total = None
    for k, flip in DIHEDRAL:
        turned, _ = flip_rotate(image, None, k, flip)
        tile, overlap = tile_for(model, turned.shape)
        probs = invert_flip_rotate(predict_tiled(model, turned, tile, overlap,
                                                 device=device)[1], k, flip)
        total = probs if total is None else total + probs
    return (total / len(DIHEDRAL)).astype(np.float32)


def decide(probs: np.ndarray, threshold: float | None,
           split: tuple[int, float] | None = None) -> np.ndarray:
    """Class indices ``H x W`` from ``K x H x W`` probabilities: for two classes class 1
    where its probability is above ``threshold``, else the most probable class.

    ``split = (region class, seed level)`` (two classes and a threshold): then the region
    class's connected regions are also cut apart where they touch only through a weak
    spot (:func:`unet_teach.infer.split_regions`, cores above the seed level).

    Example:
        >>> decide(np.array([[[0.6, 0.3]], [[0.4, 0.7]]]), 0.35).tolist()
        [[1, 1]]
    """
    if probs.shape[0] == 2 and threshold is not None:
        if split is None:
            return (probs[1] > threshold).astype(np.int64)
        region, level = split
        # the region class's own probability, and the cut that gives the same pixels
        p, cut = (probs[1], threshold) if region == 1 else (1 - probs[1], 1 - threshold)
        inside = split_regions(p, cut, max(level, cut))
        return np.where(inside, region, 1 - region).astype(np.int64)
    return probs.argmax(axis=0).astype(np.int64)
