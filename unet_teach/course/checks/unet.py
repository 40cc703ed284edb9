"""Checks for exercise 3 (from patch classifier to U-Net): call one right after each answer.

Every check builds the reference from :mod:`unet_teach.fcn`, :mod:`unet_teach.models` or
:mod:`unet_teach.infer`, copies the *same weights* into your module (never relying on two
seeded initialisations agreeing), runs both in float64 on the CPU and compares. On success it
prints one line with the points; otherwise it raises ``AssertionError`` saying which input
failed, what was expected, what came back, by how much, and a hint.

The library is not the answer key: an answer that calls the library's version of what the
question asks for scores no points for that question, with that reason in the message (see
:func:`~unet_teach.course.checks.losses.call_own`). Guarded, per question (``REFERENCES``):
``fcn.to_fully_convolutional``; ``models.DoubleConv`` and ``models.Down``;
``models.center_crop`` (crop and concatenate); ``models.Up`` (the up block); ``models.UNet``
(every method: a subclass or a wrapper is caught when the check builds or runs your net);
``models.valid_sizes``, ``output_size``, ``nearest_valid_sizes`` and ``check_size`` (valid
sizes); ``infer.predict_tiled`` and ``tile_layout`` (overlap-tile). An earlier answer or a
helper the text hands out stays allowed where a later question uses it: the library's
``DoubleConv`` or ``center_crop`` inside an up block or a U-Net, ``models.output_size`` in
overlap-tile inference.

Example:
    >>> check_double_conv_down(lambda cin, cout: nn.Sequential(
    ...     nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU()),
    ...     lambda: nn.MaxPool2d(2))
    double_conv_down: all 5 checks passed - 2 points

    Handing the task to the library scores nothing:

    >>> from unet_teach.models import valid_sizes
    >>> check_valid_sizes(valid_sizes)
    Traceback (most recent call last):
    ...
    AssertionError: valid_sizes called the library's reference implementation unet_teach.models.valid_sizes on lo=540, hi=600, depth=4: that is the answer key, not an answer, and earns no points for this question.
    Hint: follow one side through the net yourself (down: - 4, must be even, // 2; bottleneck: - 4; up: * 2 - 4); the library's function is only the reference the check compares with
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from ... import fcn as ref_fcn
from ... import infer, models
from ...patches import PatchClassifier
from ._common import call_own, report_passed

TOLERANCE = 1e-8          # float64 on the CPU: the same sums in another order agree to ~1e-12
POINTS = {"fully_convolutional": 3, "double_conv_down": 2, "crop_and_concat": 2, "up_block": 2,
          "unet": 4,
          "valid_sizes": 2, "overlap_tile": 4}

# The library code that answers each question (an answer may not run it; a class stands for
# all its methods), and what to do instead. The names are those the checks call your code by.
REFERENCES = {
    "fully_convolutional": (ref_fcn.to_fully_convolutional,),
    "double_conv": (models.DoubleConv,),
    "down": (models.Down,),
    "crop_and_concat": (models.center_crop,),
    "up_block": (models.Up,),
    "unet": (models.UNet,),
    "valid_sizes": (models.valid_sizes, models.output_size, models.nearest_valid_sizes,
                    models.check_size),
    "overlap_tile": (infer.predict_tiled, infer.tile_layout),   # + _whole_image_scores, below
}
ADVICE = {
    "fully_convolutional": "build the nn.Conv2d layers yourself and copy the Linear weights "
                           "into them",
    "double_conv": "build it yourself from nn.Conv2d and nn.ReLU",
    "down": "use nn.MaxPool2d(2)",
    "crop_and_concat": "slice the centre out of skip yourself, then torch.cat",
    "up_block": "build it yourself: nn.ConvTranspose2d, your crop_and_concat, your double_conv",
    "unet": "assemble it yourself from your blocks (double_conv, down, nn.ConvTranspose2d, "
            "crop_and_concat) in an nn.Module",
    "valid_sizes": "follow one side through the net yourself (down: - 4, must be even, // 2; "
                   "bottleneck: - 4; up: * 2 - 4)",
    "overlap_tile": "pad, cut and stitch the tiles yourself; models.output_size is the helper "
                    "the question hands out",
}


def _call(fn: Callable, name: str, *args, where: str | None = None):
    """``fn(*args)`` through :func:`call_own`, with the references of question ``name``."""
    return call_own(fn, name, *args, where=where, references=REFERENCES[name],
                    advice=ADVICE[name])


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
        >>> def fully_convolutional(net):
        ...     s = net.feature_size
        ...     layers = [copy.deepcopy(net.features)]
        ...     for i, lin in enumerate(m for m in net.classifier if isinstance(m, nn.Linear)):
        ...         k = s if i == 0 else 1                # the first Linear sees the whole map
        ...         conv = nn.Conv2d(lin.in_features // (k * k), lin.out_features, k)
        ...         conv.weight.data.copy_(lin.weight.data.reshape(conv.weight.shape))
        ...         conv.bias.data.copy_(lin.bias.data)
        ...         layers += [conv, nn.ReLU()]
        ...     return nn.Sequential(*layers[:-1])
        >>> check_fully_convolutional(fully_convolutional)
        fully_convolutional: all 6 checks passed - 3 points

        Handing the task to the library scores nothing:

        >>> from unet_teach.fcn import to_fully_convolutional
        >>> check_fully_convolutional(lambda net: to_fully_convolutional(net, dense=False))
        Traceback (most recent call last):
        ...
        AssertionError: fully_convolutional called the library's reference implementation unet_teach.fcn.to_fully_convolutional on a 1-stage 9 px classifier: that is the answer key, not an answer, and earns no points for this question.
        Hint: build the nn.Conv2d layers yourself and copy the Linear weights into them; the library's function is only the reference the check compares with
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
        fcn = _module(_call(fn, name, net, where=where), name, where)
        if any(not torch.equal(before[k], v) for k, v in net.state_dict().items()):
            raise AssertionError(f"{name} changed the patch classifier's weights on {where}; "
                                 "copy them (weight.data.copy_(...)) instead")
        fcn = fcn.double().eval()
        with torch.random.fork_rng():      # building the reference draws initial weights
            ref = ref_fcn.to_fully_convolutional(net, dense=False)
        gen = torch.Generator().manual_seed(seed)
        patch = torch.rand(2, 1, window, window, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            got_patch = _tensor(_call(fcn, name, patch,
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
            got = _tensor(_call(fcn, name, image, where=f"{where}, a {h} x {w} image"),
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
        Traceback (most recent call last):
        ...
        AssertionError: double_conv called the library's reference implementation unet_teach.models.DoubleConv.__init__ on double_conv(1, 4) on a 2 x 1 x 12 x 12 input: that is the answer key, not an answer, and earns no points for this question.
        Hint: build it yourself from nn.Conv2d and nn.ReLU; the library's function is only the reference the check compares with
    """
    name = "double_conv_down"
    n = 0
    for seed, (cin, cout, size) in enumerate([(1, 4, 12), (3, 8, 17), (5, 2, 9)]):
        where = f"double_conv({cin}, {cout}) on a 2 x {cin} x {size} x {size} input"
        made = _call(double_conv, "double_conv", cin, cout, where=where)
        mine = _module(made, "double_conv", where).double()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = models.DoubleConv(cin, cout, padding="valid").double()
        x = torch.randn(2, cin, size, size, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        _copy_weights(ref, mine, "double_conv", x)
        with torch.no_grad():
            got = _tensor(_call(mine, "double_conv", x, where=where), "double_conv", where)
            _compare(got, ref(x), "double_conv", where,
                     "Conv2d(in, out, 3) -> ReLU -> Conv2d(out, out, 3) -> ReLU, no padding "
                     f"(valid): each conv trims a pixel a side, {size} -> {size - 4}")
        n += 1
    for size in (8, 13):
        where = f"down() on a 1 x 3 x {size} x {size} input"
        mine = _module(_call(down, "down", where=where), "down", where)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size),
                        dtype=torch.float64)
        got = _tensor(_call(mine, "down", x, where=where), "down", where)
        _compare(got, nn.MaxPool2d(2)(x), "down", where,
                 "2x2 max-pooling with stride 2 (nn.MaxPool2d(2)); an odd size is floored")
        n += 1
    report_passed(POINTS, name, n, points)


def check_crop_and_concat(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(skip, x) -> tensor``: crop the centre of ``skip`` (``N x C1 x H x W``) to
    ``x``'s size (``N x C2 x h x w``) and concatenate ``[skip_cropped, x]`` along channels.

    Example:
        >>> def crop_and_concat(skip, x):
        ...     h, w = x.shape[-2:]
        ...     top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
        ...     return torch.cat([skip[..., top:top + h, left:left + w], x], 1)
        >>> check_crop_and_concat(crop_and_concat)
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
        got = _tensor(_call(fn, name, skip.clone(), x.clone(), where=where), name, where)
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
        >>> class UpBlock(nn.Module):
        ...     def __init__(self, in_ch, out_ch):
        ...         super().__init__()
        ...         self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        ...         self.conv = models.DoubleConv(2 * out_ch, out_ch, padding="valid")  # Q2's block
        ...     def forward(self, x, skip):
        ...         x = self.up(x)
        ...         return self.conv(torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1))
        >>> check_up_block(UpBlock)
        up_block: all 3 checks passed - 2 points
        >>> check_up_block(lambda i, o: models.Up(i, o, o, o, padding="valid"))
        Traceback (most recent call last):
        ...
        AssertionError: up_block called the library's reference implementation unet_teach.models.Up.__init__ on up_block(4, 2) with x: 2 x 4 x 6 x 6 and skip: 2 x 2 x 16 x 16: that is the answer key, not an answer, and earns no points for this question.
        Hint: build it yourself: nn.ConvTranspose2d, your crop_and_concat, your double_conv; the library's function is only the reference the check compares with
    """
    name = "up_block"
    n = 0
    # (in_ch, out_ch, x size, skip size): even and odd crop margins, batch of 2
    for seed, (cin, cout, low, high) in enumerate([(4, 2, 6, 16), (8, 4, 5, 15), (6, 3, 7, 18)]):
        where = (f"up_block({cin}, {cout}) with x: 2 x {cin} x {low} x {low} and "
                 f"skip: 2 x {cout} x {high} x {high}")
        mine = _module(_call(cls, name, cin, cout, where=where), name, where).double()
        with torch.random.fork_rng():
            torch.manual_seed(100 + seed)
            ref = models.Up(cin, cout, cout, cout, padding="valid").double()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, cin, low, low, generator=g, dtype=torch.float64)
        skip = torch.randn(2, cout, high, high, generator=g, dtype=torch.float64)
        _copy_weights(ref, mine, name, x, skip)
        with torch.no_grad():
            got = _tensor(_call(mine, name, x, skip, where=where), name, where)
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
        >>> def block(cin, cout):
        ...     return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU())
        >>> class UNet(nn.Module):
        ...     def __init__(self, cin, cout, depth, width):
        ...         super().__init__()
        ...         w = [width * 2**i for i in range(depth + 1)]
        ...         self.downs = nn.ModuleList(block(a, b) for a, b in zip([cin] + w[:-2], w[:-1]))
        ...         self.bottom = block(w[-2], w[-1])
        ...         self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * b, b, 2, stride=2) for b in w[:-1])
        ...         self.convs = nn.ModuleList(block(2 * b, b) for b in w[:-1])
        ...         self.head = nn.Conv2d(width, cout, 1)
        ...     def forward(self, x):
        ...         skips = []
        ...         for down in self.downs:
        ...             skips.append(down(x))
        ...             x = nn.functional.max_pool2d(skips[-1], 2)
        ...         x = self.bottom(x)
        ...         for up, conv, skip in reversed(list(zip(self.ups, self.convs, skips))):
        ...             x = up(x)
        ...             x = conv(torch.cat([models.center_crop(skip, *x.shape[-2:]), x], 1))
        ...         return self.head(x)
        >>> check_unet(UNet)
        unet: all 6 checks passed - 4 points

        The library's U-Net, even as a subclass, scores nothing:

        >>> class Mine(models.UNet):
        ...     def __init__(self, cin, cout, depth, width):
        ...         super().__init__(cin, cout, depth, width, padding="valid")
        >>> check_unet(Mine)
        Traceback (most recent call last):
        ...
        AssertionError: unet called the library's reference implementation unet_teach.models.UNet.__init__ on unet(1, 2, depth=1, base_width=4): that is the answer key, not an answer, and earns no points for this question.
        Hint: assemble it yourself from your blocks (double_conv, down, nn.ConvTranspose2d, crop_and_concat) in an nn.Module; the library's function is only the reference the check compares with
    """
    name = "unet"
    n = 0
    for seed, (cin, cout, depth, width, size) in enumerate(
            [(1, 2, 1, 4, 28), (1, 2, 2, 4, 60), (3, 3, 3, 2, 108)]):
        where = f"{name}({cin}, {cout}, depth={depth}, base_width={width})"
        made = _call(cls, name, cin, cout, depth, width, where=where)
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
            got = _tensor(_call(mine, name, x, where=f"{where} on a {size} px input"),
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
        >>> def valid_sizes(lo, hi, depth):
        ...     def fits(s):
        ...         for _ in range(depth):        # two valid convs (- 4), then an even size to pool
        ...             if s < 6 or s % 2:
        ...                 return False
        ...             s = (s - 4) // 2
        ...         s -= 4                        # the bottleneck
        ...         for _ in range(depth):        # once below 1, a size stays below 1
        ...             s = 2 * s - 4
        ...         return s >= 1
        ...     return [s for s in range(max(lo, 1), hi + 1) if fits(s)]
        >>> check_valid_sizes(valid_sizes)
        valid_sizes: all 4 checks passed - 2 points
    """
    name = "valid_sizes"
    cases = [(540, 600, 4), (1, 80, 2), (100, 140, 1), (150, 200, 3)]
    for lo, hi, depth in cases:
        where = f"lo={lo}, hi={hi}, depth={depth}"
        got = _call(fn, name, lo, hi, depth, where=where)
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


# the check's own whole-image pass is an answer key too
REFERENCES["overlap_tile"] += (_whole_image_scores,)


def check_overlap_tile(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(net, image, tile) -> tensor K x H x W``: overlap-tile inference of a
    valid-padding U-Net, equal to one whole-image pass over the mirror-padded image.

    Example:
        Overlap-tile inference must equal one whole-image pass, so that pass itself passes:

        >>> def whole_image(net, image, tile):
        ...     out = models.output_size(tile, net.depth)
        ...     context, step = (tile - out) // 2, 2**net.depth
        ...     side = tile + step * -(-(max(image.shape) - out) // step)   # a size the net takes
        ...     padded = np.pad(image, [(context, side - n - context) for n in image.shape],
        ...                     mode="reflect")
        ...     with torch.no_grad():
        ...         return net(torch.as_tensor(padded)[None, None])[0, :, :image.shape[0], :image.shape[1]]
        >>> check_overlap_tile(whole_image)
        overlap_tile: all 3 checks passed - 4 points

        The library's overlap-tile (or this check's own whole-image pass) scores nothing:

        >>> check_overlap_tile(lambda net, image, tile: _whole_image_scores(net, image))
        Traceback (most recent call last):
        ...
        AssertionError: overlap_tile called the library's reference implementation unet_teach.course.checks.unet._whole_image_scores on a 45 x 38 image, depth-2 net, tile 92: that is the answer key, not an answer, and earns no points for this question.
        Hint: pad, cut and stitch the tiles yourself; models.output_size is the helper the question hands out; the library's function is only the reference the check compares with
    """
    name = "overlap_tile"
    cases = [(2, 4, (45, 38), 92), (2, 4, (61, 100), 76), (3, 2, (70, 53), 156)]
    for seed, (depth, width, (h, w), tile) in enumerate(cases):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = models.UNet(1, 2, depth, width, padding="valid").double().eval()
        image = np.random.default_rng(seed).random((h, w))
        where = f"a {h} x {w} image, depth-{depth} net, tile {tile}"
        got = _tensor(_call(fn, name, net, image.copy(), tile, where=where), name, where)
        expected = _whole_image_scores(net, image)
        _compare(got, expected, name, where,
                 "mirror-pad by the context (tile - output) // 2 with np.pad(..., mode='reflect'); "
                 "place tiles a multiple of 2**depth apart (output minus overlap), so every "
                 "pooling window lines up with the whole image's; return raw scores K x H x W",
                 tolerance=1e-6)
    report_passed(POINTS, name, len(cases), points)
