"""Checks for exercise 3 (from patch classifier to U-Net): call one right after each answer.

Every check builds the reference from :mod:`unet_teach.fcn`, :mod:`unet_teach.models` or
:mod:`unet_teach.infer`, copies the *same weights* into your module (never relying on two
seeded initialisations agreeing), runs both in float64 on the CPU and compares. On success it
prints one line with the points; otherwise it raises ``AssertionError`` saying which input
failed, what was expected, what came back, by how much, and a hint.

Example:
    >>> from unet_teach.models import valid_sizes
    >>> check_valid_sizes(lambda lo, hi, depth: valid_sizes(lo, hi, depth))
    valid_sizes: all 4 checks passed - 2 points
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from ... import fcn as ref_fcn
from ... import models
from ...patches import PatchClassifier
from ._common import call_student, report_passed

TOLERANCE = 1e-8          # float64 on the CPU: the same sums in another order agree to ~1e-12
POINTS = {"fully_convolutional": 3, "double_conv_down": 2, "crop_and_concat": 2, "up_block": 2,
          "unet": 4,
          "valid_sizes": 2, "overlap_tile": 4}


# --------------------------------------------------------------------------- helpers

def _tensor(value, name: str, where: str) -> torch.Tensor:
    if value is None:
        raise AssertionError(f"{name} returned None on {where}; did you forget `return`?")
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(np.asarray(value))
        except Exception:
            raise AssertionError(f"{name} returned {type(value).__name__} on {where}; return a "
                                 "torch tensor") from None
    return value.detach().cpu().double()


def _compare(got: torch.Tensor, expected: torch.Tensor, name: str, where: str, hint: str,
             tolerance: float = TOLERANCE) -> None:
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{name} gives the wrong shape on {where}: expected "
                             f"{tuple(expected.shape)}, got {tuple(got.shape)}.\nHint: {hint}")
    diff = (got - expected).abs().max().item() if got.numel() else 0.0
    if not diff <= tolerance:
        raise AssertionError(f"{name} gives wrong values on {where}: max abs difference "
                             f"{diff:.3g} from the reference (tolerance {tolerance:g}).\nHint: {hint}")


def _module(obj, name: str, where: str) -> nn.Module:
    if not isinstance(obj, nn.Module):
        raise AssertionError(f"{name} returned {type(obj).__name__} on {where}; return an "
                             "nn.Module (e.g. nn.Sequential(...))")
    return obj


def _call_order(module: nn.Module, *inputs) -> list[torch.Tensor]:
    """The parameters of ``module`` in the order its forward pass uses them.

    A correct answer may create its layers in any order (decoder before encoder, say); what
    must agree is the computation. So the layers holding parameters are listed in the order
    they are first called on ``inputs``, and their parameters in that order. If the forward
    pass fails, creation order is used (the check then reports the error itself).
    """
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: order.append(m) if m not in order
                                         else None)
             for m in module.modules()
             if not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    try:
        with torch.no_grad():
            module(*inputs)
    except Exception:                      # noqa: BLE001 - reported by the check's own call
        order = []
    finally:
        for h in hooks:
            h.remove()
    if not order:
        return list(module.parameters())
    used = [p for m in order for p in m.parameters(recurse=False)]
    seen = {id(p) for p in used}
    return used + [p for p in module.parameters() if id(p) not in seen]   # unused ones last


def _copy_weights(src: nn.Module, dst: nn.Module, name: str, *inputs) -> None:
    """Copy ``src``'s parameters into ``dst`` layer by layer, matched in the order the forward
    pass calls the layers (see :func:`_call_order`); shapes must agree."""
    a, b = _call_order(src, *inputs), _call_order(dst, *inputs)
    shapes_a, shapes_b = [tuple(p.shape) for p in a], [tuple(p.shape) for p in b]
    if shapes_a != shapes_b:
        first = next((i for i, (x, y) in enumerate(zip(shapes_a, shapes_b)) if x != y),
                     min(len(a), len(b)))
        exp = shapes_a[first] if first < len(a) else "nothing"
        got = shapes_b[first] if first < len(b) else "nothing"
        raise AssertionError(
            f"{name}'s parameters do not line up with the reference: {len(b)} tensors vs "
            f"{len(a)} expected; in the order the forward pass uses them, tensor #{first} "
            f"should have shape {exp}, got {got}.\nHint: each Conv2d with a bias, no extra "
            "layers, and the channels of every step as in the figure (reference parameter "
            f"shapes in forward order: {shapes_a[:6]}{' ...' if len(a) > 6 else ''})")
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)


def _random_patch_net(seed: int, window: int, convs, fc) -> PatchClassifier:
    with torch.random.fork_rng():          # leave the caller's random state alone
        torch.manual_seed(seed)
        return PatchClassifier(window=window, convs=convs, fc=fc).double().eval()


# --------------------------------------------------------------------------- Q1

def check_fully_convolutional(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(patch_net) -> nn.Module``: the plain (not dense) fully convolutional version
    of a :class:`~unet_teach.patches.PatchClassifier`, with its weights copied.

    Expected: on an ``N x 1 x H x W`` input, output ``(i, j)`` is the patch net's scores on the
    window whose top-left corner is ``(i * 2**stages, j * 2**stages)``; one patch gives
    ``N x K x 1 x 1``.

    Example:
        >>> from unet_teach.fcn import to_fully_convolutional
        >>> check_fully_convolutional(lambda net: to_fully_convolutional(net, dense=False))
        fully_convolutional: all 6 checks passed - 3 points
    """
    name = "fully_convolutional"
    cases = [("a 1-stage 9 px classifier", dict(window=9, convs=((3, 4),), fc=(8,)), 9, (20, 17)),
             ("a 2-stage 17 px classifier", dict(window=17, convs=((4, 6), (3, 8)), fc=(12,)), 17, (41, 30)),
             ("a 2-stage 25 px classifier with two hidden fc layers",
              dict(window=25, convs=((4, 5), (4, 7)), fc=(10, 6)), 25, (57, 49))]
    n = 0
    for seed, (where, spec, window, (h, w)) in enumerate(cases):
        net = _random_patch_net(seed, **spec)
        before = copy.deepcopy(net.state_dict())
        fcn = _module(call_student(fn, name, net, where=where), name, where)
        if any(not torch.equal(before[k], v) for k, v in net.state_dict().items()):
            raise AssertionError(f"{name} changed the patch classifier's weights on {where}; "
                                 "copy them (weight.data.copy_(...)) instead")
        fcn = fcn.double().eval()
        with torch.random.fork_rng():      # building the reference draws initial weights
            ref = ref_fcn.to_fully_convolutional(net, dense=False)
        gen = torch.Generator().manual_seed(seed)
        patch = torch.rand(2, 1, window, window, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            got_patch = _tensor(call_student(fcn, name, patch,
                                             where=f"{where}, one {window} px patch"), name, where)
            _compare(got_patch, net(patch), f"{name}(net)", f"{where}, a batch of two "
                     f"{window} x {window} patches",
                     "on one patch the converted net must give the patch net's N x K x 1 x 1 "
                     "scores: the first Linear becomes a Conv2d whose kernel is the last feature "
                     "map (net.feature_size), weight reshaped to (out, C, s, s); the other "
                     "Linears become 1x1 convolutions")
            n += 1
            image = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64)
            expected = ref(image)
            got = _tensor(call_student(fcn, name, image, where=f"{where}, a {h} x {w} image"),
                          name, where)
            # pooling floors odd sizes: a net may compute a few extra positions at the end
            got = got[..., :expected.shape[-2], :expected.shape[-1]]
            _compare(got, expected, f"{name}(net)", f"{where}, a {h} x {w} image",
                     "keep the features as they are (conv, ReLU, 2x2 max-pool with stride 2) and "
                     "do not Flatten: each output position must be the patch net's answer on one "
                     "window, stride 2**stages apart")
            n += 1
    report_passed(POINTS, name, n, points)


# --------------------------------------------------------------------------- Q2

def check_double_conv_down(double_conv: Callable, down: Callable, points: float | None = None) -> None:
    """Check ``double_conv(in_ch, out_ch) -> nn.Module`` (two valid 3x3 convolutions with
    bias, each followed by ReLU) and ``down() -> nn.Module`` (2x2 max-pooling).

    Example:
        >>> from unet_teach.models import DoubleConv
        >>> check_double_conv_down(lambda i, o: DoubleConv(i, o, padding="valid"),
        ...                        lambda: nn.MaxPool2d(2))
        double_conv_down: all 5 checks passed - 2 points
    """
    name = "double_conv_down"
    n = 0
    for seed, (cin, cout, size) in enumerate([(1, 4, 12), (3, 8, 17), (5, 2, 9)]):
        where = f"double_conv({cin}, {cout}) on a 2 x {cin} x {size} x {size} input"
        made = call_student(double_conv, "double_conv", cin, cout, where=where)
        mine = _module(made, "double_conv", where).double()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = models.DoubleConv(cin, cout, padding="valid").double()
        x = torch.randn(2, cin, size, size, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        _copy_weights(ref, mine, "double_conv", x)
        with torch.no_grad():
            got = _tensor(call_student(mine, "double_conv", x, where=where), "double_conv", where)
            _compare(got, ref(x), "double_conv", where,
                     "Conv2d(in, out, 3) -> ReLU -> Conv2d(out, out, 3) -> ReLU, no padding "
                     f"(valid): each conv trims a pixel a side, {size} -> {size - 4}")
        n += 1
    for size in (8, 13):
        where = f"down() on a 1 x 3 x {size} x {size} input"
        mine = _module(call_student(down, "down", where=where), "down", where)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size),
                        dtype=torch.float64)
        got = _tensor(call_student(mine, "down", x, where=where), "down", where)
        _compare(got, nn.MaxPool2d(2)(x), "down", where,
                 "2x2 max-pooling with stride 2 (nn.MaxPool2d(2)); an odd size is floored")
        n += 1
    report_passed(POINTS, name, n, points)


def check_crop_and_concat(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(skip, x) -> tensor``: crop the centre of ``skip`` (``N x C1 x H x W``) to
    ``x``'s size (``N x C2 x h x w``) and concatenate ``[skip_cropped, x]`` along channels.

    Example:
        >>> from unet_teach.models import center_crop
        >>> check_crop_and_concat(lambda skip, x: torch.cat([center_crop(skip, *x.shape[-2:]), x], 1))
        crop_and_concat: all 4 checks passed - 2 points
    """
    name = "crop_and_concat"
    gen = torch.Generator().manual_seed(3)
    cases = [((1, 2, 8, 8), (1, 3, 4, 4)), ((2, 4, 64, 64), (2, 4, 56, 56)),
             ((1, 1, 9, 12), (1, 2, 6, 7)), ((1, 3, 5, 5), (1, 1, 5, 5))]
    for s, t in cases:
        skip = torch.randn(*s, generator=gen, dtype=torch.float64)
        x = torch.randn(*t, generator=gen, dtype=torch.float64)
        where = f"skip {tuple(s)} and x {tuple(t)}"
        expected = torch.cat([models.center_crop(skip, *t[-2:]), x], dim=1)
        got = _tensor(call_student(fn, name, skip.clone(), x.clone(), where=where), name, where)
        hint = ("top = (H - h) // 2, left = (W - w) // 2, take skip[..., top:top + h, "
                "left:left + w], then torch.cat([cropped_skip, x], dim=1) (skip first)")
        swapped = torch.cat([x, models.center_crop(skip, *t[-2:])], dim=1)
        if got.shape == expected.shape and torch.allclose(got, swapped) \
                and not torch.allclose(got, expected):
            hint = "you concatenated [x, skip]; the skip map comes first: [skip_cropped, x]"
        _compare(got, expected, name, where, hint)
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q3

def check_up_block(cls: Callable, points: float | None = None) -> None:
    """Check ``cls(in_ch, out_ch) -> nn.Module`` whose ``forward(x, skip)`` up-samples ``x``
    with a 2x2 transposed convolution (stride 2, ``in_ch -> out_ch``), crops and concatenates
    the encoder map ``skip`` (skip first), then applies a valid ``double_conv(2*out_ch, out_ch)``.
    The reference is :class:`unet_teach.models.Up` with valid padding, whose weights are
    copied into yours.

    Example:
        >>> from unet_teach.models import Up
        >>> check_up_block(lambda i, o: Up(i, o, o, o, padding="valid"))
        up_block: all 3 checks passed - 2 points
    """
    name = "up_block"
    n = 0
    # (in_ch, out_ch, x size, skip size): even and odd crop margins, batch of 2
    for seed, (cin, cout, low, high) in enumerate([(4, 2, 6, 16), (8, 4, 5, 15), (6, 3, 7, 18)]):
        where = (f"up_block({cin}, {cout}) with x: 2 x {cin} x {low} x {low} and "
                 f"skip: 2 x {cout} x {high} x {high}")
        mine = _module(call_student(cls, name, cin, cout, where=where), name, where).double()
        with torch.random.fork_rng():
            torch.manual_seed(100 + seed)
            ref = models.Up(cin, cout, cout, cout, padding="valid").double()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, cin, low, low, generator=g, dtype=torch.float64)
        skip = torch.randn(2, cout, high, high, generator=g, dtype=torch.float64)
        _copy_weights(ref, mine, name, x, skip)
        with torch.no_grad():
            got = _tensor(call_student(mine, name, x, skip, where=where), name, where)
            _compare(got, ref(x, skip), name, where,
                     f"ConvTranspose2d({cin}, {cout}, 2, stride=2): {low} -> {2 * low}; "
                     f"crop_and_concat(skip, x) -> {2 * cout} channels; then double_conv("
                     f"{2 * cout}, {cout}): {2 * low} -> {2 * low - 4}. Create the transposed "
                     "convolution before the double_conv")
        n += 1
    report_passed(POINTS, name, n, points)


def check_unet(cls: Callable, points: float | None = None) -> None:
    """Check ``cls(in_channels, out_channels, depth, base_width)``: a valid-padding U-Net
    (max-pool down, 2x2 transposed-conv up with bias, crop-and-concatenate, 1x1 head) whose
    layers, in the order the forward pass calls them, line up with
    :class:`~unet_teach.models.UNet`'s (the order they are created in does not matter).

    Example:
        >>> from unet_teach.models import UNet
        >>> check_unet(lambda cin, cout, depth, width: UNet(cin, cout, depth, width, padding="valid"))
        unet: all 6 checks passed - 4 points
    """
    name = "unet"
    n = 0
    for seed, (cin, cout, depth, width, size) in enumerate(
            [(1, 2, 1, 4, 28), (1, 2, 2, 4, 60), (3, 3, 3, 2, 108)]):
        where = f"{name}({cin}, {cout}, depth={depth}, base_width={width})"
        made = call_student(cls, name, cin, cout, depth, width, where=where)
        mine = _module(made, name, where).double().eval()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = models.UNet(cin, cout, depth, width, padding="valid").double().eval()
        expected_params = models.count_parameters(ref)
        got_params = models.count_parameters(mine)
        if got_params != expected_params:
            raise AssertionError(
                f"{where} has {got_params:,} parameters, expected {expected_params:,} (off by "
                f"{got_params - expected_params:+,}).\nHint: level i has base_width * 2**i "
                "channels; each decoder DoubleConv takes skip + up-sampled channels "
                "(2 x its width); the ConvTranspose2d(2 x w, w, 2, stride=2) halves the channels")
        x = torch.randn(1, cin, size, size, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        _copy_weights(ref, mine, where, x)
        with torch.no_grad():
            expected = ref(x)
            got = _tensor(call_student(mine, name, x, where=f"{where} on a {size} px input"),
                          name, where)
        _compare(got, expected, where, f"a 1 x {cin} x {size} x {size} input",
                 f"the output side must be {expected.shape[-1]}: encoder DoubleConv + pool per "
                 "level, bottleneck, then per level up-conv, crop the skip to the up-sampled "
                 "size, concatenate [skip, up], DoubleConv; then the 1x1 head")
        n += 2
    report_passed(POINTS, name, n, points)


# --------------------------------------------------------------------------- Q4

def check_valid_sizes(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(lo, hi, depth) -> list[int]``: the input sides in ``[lo, hi]`` that a
    depth-``depth`` valid-padding U-Net can take.

    Example:
        >>> from unet_teach.models import valid_sizes
        >>> check_valid_sizes(valid_sizes)
        valid_sizes: all 4 checks passed - 2 points
    """
    name = "valid_sizes"
    cases = [(540, 600, 4), (1, 80, 2), (100, 140, 1), (150, 200, 3)]
    for lo, hi, depth in cases:
        where = f"lo={lo}, hi={hi}, depth={depth}"
        got = call_student(fn, name, lo, hi, depth, where=where)
        if got is None:
            raise AssertionError(f"{name} returned None on {where}; did you forget `return`?")
        got = [int(s) for s in got]
        expected = models.valid_sizes(lo, hi, depth)
        if got != expected:
            extra = sorted(set(got) - set(expected))[:4]
            missing = sorted(set(expected) - set(got))[:4]
            hint = ("follow one side through the net: each level loses 4 px to two valid convs "
                    "and then must be even (and >= 2) to pool; the bottleneck loses 4; each "
                    "up-level doubles and loses 4; every size must stay >= 1")
            raise AssertionError(f"{name}({lo}, {hi}, {depth}) is wrong: expected {expected}, "
                                 f"got {got} (wrongly included: {extra}, missing: {missing})."
                                 f"\nHint: {hint}")
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q5

def _whole_image_scores(net: models.UNet, image: np.ndarray) -> torch.Tensor:
    """Scores of a valid net over one image mirror-padded by its context, ``K x H x W``."""
    h, w = image.shape
    smallest = models.valid_sizes(1, 4096, net.depth)[0]
    context = (smallest - models.output_size(smallest, net.depth)) // 2   # the same for all sizes
    sh, sw = (models.valid_sizes(n + 2 * context, n + 2 * context + 2**(net.depth + 2),
                                 net.depth)[0] for n in (h, w))
    padded = np.pad(image, ((context, sh - h - context), (context, sw - w - context)), mode="reflect")
    with torch.no_grad():
        return net(torch.as_tensor(padded, dtype=torch.float64)[None, None])[0, :, :h, :w]


def check_overlap_tile(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(net, image, tile) -> tensor K x H x W``: overlap-tile inference of a
    valid-padding U-Net, equal to one whole-image pass over the mirror-padded image.

    Example:
        Overlap-tile inference must equal one whole-image pass, so that pass itself passes:

        >>> check_overlap_tile(lambda net, image, tile: _whole_image_scores(net, image))
        overlap_tile: all 3 checks passed - 4 points
    """
    name = "overlap_tile"
    cases = [(2, 4, (45, 38), 92), (2, 4, (61, 100), 76), (3, 2, (70, 53), 156)]
    for seed, (depth, width, (h, w), tile) in enumerate(cases):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = models.UNet(1, 2, depth, width, padding="valid").double().eval()
        image = np.random.default_rng(seed).random((h, w))
        where = f"a {h} x {w} image, depth-{depth} net, tile {tile}"
        got = _tensor(call_student(fn, name, net, image.copy(), tile, where=where), name, where)
        expected = _whole_image_scores(net, image)
        _compare(got, expected, name, where,
                 "mirror-pad by the context (tile - output) // 2 with np.pad(..., mode='reflect'); "
                 "place tiles a multiple of 2**depth apart (output minus overlap), so every "
                 "pooling window lines up with the whole image's; return raw scores K x H x W",
                 tolerance=1e-6)
    report_passed(POINTS, name, len(cases), points)
