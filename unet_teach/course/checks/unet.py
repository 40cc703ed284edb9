"""Checks for exercise 3 (from patch classifier to U-Net): call one right after each answer.

Every check builds the reference from :mod:`unet_teach.fcn`, :mod:`unet_teach.models` or
:mod:`unet_teach.infer`, copies the *same weights* into your module (never relying on two
seeded initialisations agreeing), runs both in float64 on the CPU and compares. On success it
prints one line with the points; otherwise it raises ``CheckFailed`` (an ``AssertionError``)
saying which input failed, what was expected, what came back, by how much, and a hint, then
the check's id (``MESSAGES[id]`` is the fixed text a grader shows for it).

Besides the values, the checks look at how an answer computes them where the question says
how: the converted patch net must not run ``nn.Linear`` layers, the up-sampling must be an
``nn.ConvTranspose2d``, and overlap-tile inference must run the net on tiles of the tile's
size (one pass over the whole padded image gives the same numbers, but is not the answer).

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
    unet_teach.course.checks._common.CheckFailed: valid_sizes called the library's reference implementation unet_teach.models.valid_sizes on lo=540, hi=600, depth=4: that is the answer key, not an answer, and earns no points for this question.
    Hint: follow one side through the net yourself (down: - 4, must be even, // 2; bottleneck: - 4; up: * 2 - 4); the library's function is only the reference the check compares with
    [check: common.library_reference]
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from ... import fcn as ref_fcn
from ... import infer, models
from ...patches import PatchClassifier
from ._common import call_own, fail, report_passed

TOLERANCE = 1e-8          # float64 on the CPU: the same sums in another order agree to ~1e-12
# What a grader may copy into a feedback file for each check that fails, by the id the check
# raises with (see _common.CheckFailed): a fixed text, what is wrong and where to look.
MESSAGES: dict[str, str] = {
    # the form of the answer (every question)
    "unet.returned_none":
        "The function returned None instead of its result.\nHint: look at the end of your "
        "function (or forward): the value it computes must be given back with `return`.",
    "unet.not_a_tensor":
        "The function returned something that cannot be read as a tensor of numbers.\nHint: "
        "look at what your `return` line gives back: a torch tensor.",
    "unet.not_a_module":
        "The function (or class) does not give an nn.Module.\nHint: return the layers "
        "wrapped in a module (nn.Sequential, or your own nn.Module subclass), not a list, a "
        "function or a tensor.",
    # Q1 fully convolutional
    "unet.fully_convolutional.changed_net":
        "fully_convolutional changed the weights of the patch classifier it was given.\nHint: "
        "look at how you move the Linear weights into the convolutions: copy them into the new "
        "layers' own parameters, and reshape a copy, never the original in place.",
    "unet.fully_convolutional.linear_layers":
        "The converted net runs nn.Linear layers (the patch net's, or its own copies): the "
        "converted net must be all convolutions: turn each Linear into a Conv2d.\nHint: look "
        "at the question's list of what each Linear becomes, and at what your module's "
        "forward calls; sliding the patch classifier over windows is not the conversion.",
    "unet.fully_convolutional.patch_shape":
        "On one patch the converted net does not give one score per class at a single "
        "position (N x K x 1 x 1).\nHint: look at the kernel size of the first converted "
        "Linear: it must cover the whole last feature map; and make sure nothing flattens "
        "the features.",
    "unet.fully_convolutional.patch_values":
        "On one patch the converted net gives other scores than the patch classifier.\nHint: "
        "look at how each Linear's weight is reshaped into its Conv2d (the order Flatten "
        "reads the features in), at the biases, and at the ReLUs between the layers.",
    "unet.fully_convolutional.image_shape":
        "On a whole image the converted net gives a score map of the wrong size.\nHint: keep "
        "the feature stages as they are (convolutions and 2x2 pooling) and do not flatten: "
        "each output position must be the patch net's answer on one window.",
    "unet.fully_convolutional.image_values":
        "On a whole image the converted net's scores differ from the patch classifier's on the "
        "corresponding windows.\nHint: the feature stages must be the patch net's own (same "
        "weights, same pooling); look at what you changed in them.",
    # Q2 blocks
    "unet.double_conv.parameters":
        "double_conv's layers do not match the block the question describes (a different "
        "number of layers, or weights of other shapes).\nHint: look at the channel counts "
        "of your two convolutions, their kernel size and bias, and for extra layers.",
    "unet.double_conv.shape":
        "double_conv gives an output of the wrong size.\nHint: the convolutions are valid "
        "(no padding): each trims one pixel on every side; look at the padding argument.",
    "unet.double_conv.values":
        "double_conv gives the right size but wrong values.\nHint: look at the order of the "
        "layers and at the activations: a ReLU after each convolution, nothing else.",
    "unet.down.shape":
        "down() gives an output of the wrong size.\nHint: it must halve the height and width "
        "(2x2 windows, stride 2).",
    "unet.down.values":
        "down() gives the right size but wrong values.\nHint: look at the kind of pooling: the "
        "question asks for the maximum of each 2x2 window.",
    "unet.crop_and_concat.shape":
        "crop_and_concat gives an output of the wrong shape.\nHint: the crop has x's height "
        "and width, and the channels of skip and x are stacked along dim 1; look at the size "
        "of your crop and at the dimension you concatenate along.",
    "unet.crop_and_concat.values":
        "crop_and_concat gives the right shape but wrong values: the window cut out of skip is "
        "not the central one.\nHint: look at how you compute the top and left offsets from the "
        "margins (the question gives the rounding).",
    "unet.crop_and_concat.off_by_one":
        "crop_and_concat's crop is off by one pixel, usually when the margin (H - h or W - w) "
        "is odd.\nHint: the question says where the extra pixel of an odd margin goes; look at "
        "how you round when you halve the margin.",
    "unet.crop_and_concat.swapped":
        "crop_and_concat concatenates in the wrong order: the skip features must come first "
        "in the concatenation.\nHint: look at the order of the list you concatenate.",
    # Q2c the up block
    "unet.up_block.no_transposed_conv":
        "The up block has no nn.ConvTranspose2d: the question asks for a learned 2x2 "
        "transposed convolution with stride 2 to double the size (F.interpolate or "
        "nn.Upsample have no weights to learn).\nHint: look at how your block's forward "
        "doubles the size of x.",
    "unet.up_block.parameters":
        "The up block's layers do not match the question's (a different number of layers, or "
        "weights of other shapes).\nHint: look at the channels of the transposed convolution "
        "and of the double_conv that follows the concatenation (it sees both halves).",
    "unet.up_block.swapped":
        "The up block concatenates in the wrong order: the skip features must come first in "
        "the concatenation.\nHint: look at the arguments your forward passes to "
        "crop_and_concat.",
    "unet.up_block.shape":
        "The up block gives an output of the wrong size.\nHint: follow the size through the "
        "block: the transposed convolution doubles it, the crop matches the skip to it, and "
        "the valid double_conv trims 4 pixels.",
    "unet.up_block.values":
        "The up block gives the right size but wrong values.\nHint: look at the order of the "
        "steps in your forward: up-sample x, crop and concatenate with skip, then the "
        "double_conv.",
    # Q3 the U-Net
    "unet.unet.no_transposed_conv":
        "The U-Net does not up-sample with nn.ConvTranspose2d on every level of the expanding "
        "path, as the question asks.\nHint: look at how your decoder doubles the size: one "
        "learned transposed convolution per level.",
    "unet.unet.param_count":
        "The U-Net has a different number of parameters than the one the question describes."
        "\nHint: compare the channels of every level with the question's (level i has "
        "base_width * 2**i), and remember that each decoder double_conv sees the skip and "
        "the up-sampled map together.",
    "unet.unet.parameters":
        "The U-Net's layers, in the order its forward pass calls them, do not line up with "
        "the reference's.\nHint: compare your forward with the question's list: encoder "
        "levels top to bottom, the bottleneck, then per level up-sampling and double_conv, "
        "then the head.",
    "unet.unet.swapped":
        "The U-Net concatenates in the wrong order: the skip features must come first in the "
        "concatenation.\nHint: look at the order of the two maps where your expanding path "
        "joins the kept encoder map.",
    "unet.unet.shape":
        "The U-Net's output has the wrong size.\nHint: follow one side through your net: the "
        "valid double_convs, the poolings, the up-sampling and the crops; compare each level "
        "with the question's description.",
    "unet.unet.values":
        "The U-Net's output has the right size but wrong values.\nHint: look at which encoder "
        "map each level concatenates (the one kept on the same level, before pooling) and at "
        "the order of the steps.",
    # Q4 valid sizes
    "unet.valid_sizes.not_a_list":
        "valid_sizes does not return a list of sizes.\nHint: return the sorted list of the "
        "sides the net takes.",
    "unet.valid_sizes.value":
        "valid_sizes gives the wrong list of sizes.\nHint: follow one side through the net as "
        "the question describes, checking every condition on the way (even before each "
        "pooling, large enough to pool, at least 1 after every step) and none more.",
    # Q5 overlap-tile
    "unet.overlap_tile.not_tiled":
        "overlap_tile must run the net tile by tile, on inputs of the tile's size; it ran the "
        "net on larger (or other) inputs, e.g. the whole padded image at once.\nHint: look "
        "at what you pass to the net: cut tiles of the given size out of the padded image.",
    "unet.overlap_tile.not_a_tensor":
        "overlap_tile must return a torch tensor (K x H x W), as the question asks; it "
        "returned another type (e.g. a numpy array).\nHint: look at the type of the result "
        "you return.",
    "unet.overlap_tile.shape":
        "overlap_tile's result has the wrong shape.\nHint: it is the raw scores K x H x W: "
        "one map per class, cut to the image's size; look at how you assemble and cut the "
        "result.",
    "unet.overlap_tile.values":
        "overlap_tile's scores differ from one pass of the net over the whole mirror-padded "
        "image.\nHint: look at how much you pad (the context) and with which mode, and at the "
        "tiles' positions: they must lie a multiple of 2**depth apart so the poolings line "
        "up.",
}

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

def _tensor(value, name: str, where: str, strict_id: str | None = None) -> torch.Tensor:
    """``value`` as a float64 CPU tensor; with ``strict_id``, anything but a torch tensor
    fails with that id (the question asks for a tensor) instead of being converted."""
    if value is None:
        fail("unet.returned_none", f"{name} returned None on {where}; did you forget `return`?")
    if not isinstance(value, torch.Tensor):
        if strict_id is not None:
            fail(strict_id, f"{name} returned {type(value).__name__} on {where}; it must return "
                            "a torch tensor, as the question asks (a numpy array is converted "
                            "with torch.as_tensor)")
        try:
            value = torch.as_tensor(np.asarray(value))
        except Exception:
            fail("unet.not_a_tensor", f"{name} returned {type(value).__name__} on {where}; "
                                      "return a torch tensor")
    return value.detach().cpu().double()


def _compare(got: torch.Tensor, expected: torch.Tensor, name: str, where: str, hint: str,
             ids: tuple[str, str], tolerance: float = TOLERANCE,
             value_hint: str | None = None) -> None:
    """Shapes, then values (to ``tolerance``); ``ids`` are the check ids of a wrong shape and
    of wrong values, ``value_hint`` (default ``hint``) the hint of wrong values."""
    if tuple(got.shape) != tuple(expected.shape):
        fail(ids[0], f"{name} gives the wrong shape on {where}: expected "
                     f"{tuple(expected.shape)}, got {tuple(got.shape)}.\nHint: {hint}")
    diff = (got - expected).abs().max().item() if got.numel() else 0.0
    if not diff <= tolerance:
        fail(ids[1], f"{name} gives wrong values on {where}: max abs difference {diff:.3g} from "
                     f"the reference (tolerance {tolerance:g}).\nHint: {value_hint or hint}")


def _close(got: torch.Tensor, other: torch.Tensor, tolerance: float = TOLERANCE) -> bool:
    return tuple(got.shape) == tuple(other.shape) and bool(
        (got - other).abs().max().item() <= tolerance if got.numel() else True)


def _module(obj, name: str, where: str) -> nn.Module:
    if not isinstance(obj, nn.Module):
        fail("unet.not_a_module", f"{name} returned {type(obj).__name__} on {where}; return an "
                                  "nn.Module (e.g. nn.Sequential(...))")
    return obj


@contextlib.contextmanager
def _recording(modules, sizes: list | None = None):
    """Count the calls of ``modules`` while the block runs (forward pre-hooks); with
    ``sizes``, also record the spatial size of each call's first input there."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if sizes is not None and args and hasattr(args[0], "shape"):
            sizes.append(tuple(args[0].shape[-2:]))

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _skip_last(blocks):
    """Make the reference concatenate ``[up-sampled, skip]`` instead of ``[skip, up-sampled]``:
    a forward pre-hook on each of ``blocks`` (the DoubleConvs after a concatenation, whose
    two input halves have the same number of channels) swaps the halves of its input."""
    def hook(module, args):
        x = args[0]
        half = x.shape[1] // 2
        return (torch.cat([x[:, half:], x[:, :half]], dim=1),) + tuple(args[1:])

    handles = [b.register_forward_pre_hook(hook) for b in blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _transposed_convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.ConvTranspose2d) for m in module.modules())


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


def _copy_weights(src: nn.Module, dst: nn.Module, name: str, check_id: str, *inputs) -> None:
    """Copy ``src``'s parameters into ``dst`` layer by layer, matched in the order the forward
    pass calls the layers (see :func:`_call_order`); shapes must agree, or the check fails
    with ``check_id``."""
    a, b = _call_order(src, *inputs), _call_order(dst, *inputs)
    shapes_a, shapes_b = [tuple(p.shape) for p in a], [tuple(p.shape) for p in b]
    if shapes_a != shapes_b:
        first = next((i for i, (x, y) in enumerate(zip(shapes_a, shapes_b)) if x != y),
                     min(len(a), len(b)))
        exp = shapes_a[first] if first < len(a) else "nothing"
        got = shapes_b[first] if first < len(b) else "nothing"
        fail(check_id,
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


def _short(sizes: list[int], keep: int = 12) -> str:
    """A list of sizes, the middle left out when it is long.

    Example:
        >>> _short(list(range(1, 4))), _short(list(range(100)), keep=4)
        ('[1, 2, 3]', '[0, 1, 2, ..., 99] (100 sizes)')
    """
    if len(sizes) <= keep:
        return str(sizes)
    return (f"[{', '.join(map(str, sizes[:keep - 1]))}, ..., {sizes[-1]}] "
            f"({len(sizes)} sizes)")


# --------------------------------------------------------------------------- Q1

def check_fully_convolutional(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(patch_net) -> nn.Module``: the plain (not dense) fully convolutional version
    of a :class:`~unet_teach.patches.PatchClassifier`, with its weights copied.

    Expected: on an ``N x 1 x H x W`` input, output ``(i, j)`` is the patch net's scores on the
    window whose top-left corner is ``(i * 2**stages, j * 2**stages)``; one patch gives
    ``N x K x 1 x 1``. The converted net must be all convolutions: a module that runs
    ``nn.Linear`` layers (the patch net's or its own), sliding the classifier over windows,
    computes the same numbers but is not the conversion.

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
        unet_teach.course.checks._common.CheckFailed: fully_convolutional called the library's reference implementation unet_teach.fcn.to_fully_convolutional on a 1-stage 9 px classifier: that is the answer key, not an answer, and earns no points for this question.
        Hint: build the nn.Conv2d layers yourself and copy the Linear weights into them; the library's function is only the reference the check compares with
        [check: common.library_reference]

        Nor does running the patch classifier itself:

        >>> check_fully_convolutional(lambda net: net)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: fully_convolutional(net) runs nn.Linear layers (2 calls) on a 1-stage 9 px classifier, one 9 px patch: the converted net must be all convolutions: turn each Linear into a Conv2d.
        Hint: the first Linear becomes a Conv2d whose kernel covers the last feature map (net.feature_size), every later one a 1x1 convolution; do not call the patch net or its classifier
        [check: unet.fully_convolutional.linear_layers]
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
            fail("unet.fully_convolutional.changed_net",
                 f"{name} changed the patch classifier's weights on {where}; copy them "
                 "(weight.data.copy_(...)) instead")
        fcn = fcn.double().eval()
        # the patch net's Linear layers and any the converted net holds: none may run
        linears = list({id(m): m for m in [*net.modules(), *fcn.modules()]
                        if isinstance(m, nn.Linear)}.values())

        def run(x, place):
            with _recording(linears) as calls:
                out = _call(fcn, name, x, where=f"{where}, {place}")
            if calls[0]:
                fail("unet.fully_convolutional.linear_layers",
                     f"{name}(net) runs nn.Linear layers ({calls[0]} call"
                     f"{'s' if calls[0] != 1 else ''}) on {where}, {place}: the converted net "
                     "must be all convolutions: turn each Linear into a Conv2d.\nHint: the first "
                     "Linear becomes a Conv2d whose kernel covers the last feature map "
                     "(net.feature_size), every later one a 1x1 convolution; do not call the "
                     "patch net or its classifier")
            return _tensor(out, name, where)

        with torch.random.fork_rng():      # building the reference draws initial weights
            ref = ref_fcn.to_fully_convolutional(net, dense=False)
        gen = torch.Generator().manual_seed(seed)
        patch = torch.rand(2, 1, window, window, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            got_patch = run(patch, f"one {window} px patch")
            _compare(got_patch, net(patch), f"{name}(net)", f"{where}, a batch of two "
                     f"{window} x {window} patches",
                     "on one patch the converted net must give the patch net's N x K x 1 x 1 "
                     "scores: the first Linear becomes a Conv2d whose kernel is the last feature "
                     "map (net.feature_size), weight reshaped to (out, C, s, s); the other "
                     "Linears become 1x1 convolutions",
                     ("unet.fully_convolutional.patch_shape",
                      "unet.fully_convolutional.patch_values"))
            n += 1
            image = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64)
            expected = ref(image)
            got = run(image, f"a {h} x {w} image")
            # pooling floors odd sizes: a net may compute a few extra positions at the end
            got = got[..., :expected.shape[-2], :expected.shape[-1]]
            _compare(got, expected, f"{name}(net)", f"{where}, a {h} x {w} image",
                     "keep the features as they are (conv, ReLU, 2x2 max-pool with stride 2) and "
                     "do not Flatten: each output position must be the patch net's answer on one "
                     "window, stride 2**stages apart",
                     ("unet.fully_convolutional.image_shape",
                      "unet.fully_convolutional.image_values"))
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
        unet_teach.course.checks._common.CheckFailed: double_conv called the library's reference implementation unet_teach.models.DoubleConv.__init__ on double_conv(1, 4) on a 2 x 1 x 12 x 12 input: that is the answer key, not an answer, and earns no points for this question.
        Hint: build it yourself from nn.Conv2d and nn.ReLU; the library's function is only the reference the check compares with
        [check: common.library_reference]
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
        _copy_weights(ref, mine, "double_conv", "unet.double_conv.parameters", x)
        with torch.no_grad():
            got = _tensor(_call(mine, "double_conv", x, where=where), "double_conv", where)
            _compare(got, ref(x), "double_conv", where,
                     "Conv2d(in, out, 3) -> ReLU -> Conv2d(out, out, 3) -> ReLU, no padding "
                     f"(valid): each conv trims a pixel a side, {size} -> {size - 4}",
                     ("unet.double_conv.shape", "unet.double_conv.values"))
        n += 1
    for size in (8, 13):
        where = f"down() on a 1 x 3 x {size} x {size} input"
        mine = _module(_call(down, "down", where=where), "down", where)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size),
                        dtype=torch.float64)
        got = _tensor(_call(mine, "down", x, where=where), "down", where)
        _compare(got, nn.MaxPool2d(2)(x), "down", where,
                 "2x2 max-pooling with stride 2 (nn.MaxPool2d(2)); an odd size is floored",
                 ("unet.down.shape", "unet.down.values"))
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

        Rounding the odd margin the other way is named, without the answer:

        >>> def rounded_up(skip, x):
        ...     h, w = x.shape[-2:]
        ...     top, left = (skip.shape[-2] - h + 1) // 2, (skip.shape[-1] - w + 1) // 2
        ...     return torch.cat([skip[..., top:top + h, left:left + w], x], 1)
        >>> check_crop_and_concat(rounded_up)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: crop_and_concat gives wrong values on skip (1, 1, 9, 12) and x (1, 2, 6, 7): max abs difference ... from the reference (tolerance 1e-08).
        Hint: the crop is off by one pixel (the margin is 3 rows and 5 columns, odd): with an odd margin the extra pixel stays at the bottom/right; look at how you round when you halve the margin
        [check: unet.crop_and_concat.off_by_one]
    """
    name = "crop_and_concat"
    gen = torch.Generator().manual_seed(3)
    cases = [((1, 2, 8, 8), (1, 3, 4, 4)), ((2, 4, 64, 64), (2, 4, 56, 56)),
             ((1, 1, 9, 12), (1, 2, 6, 7)), ((1, 3, 5, 5), (1, 1, 5, 5))]
    hint = ("cut the central h x w window out of skip (the top and left offsets are half the "
            "margins H - h and W - w, rounded down) and concatenate it with x along the "
            "channels (dim=1), skip first")
    for s, t in cases:
        skip = torch.randn(*s, generator=gen, dtype=torch.float64)
        x = torch.randn(*t, generator=gen, dtype=torch.float64)
        where = f"skip {tuple(s)} and x {tuple(t)}"
        expected = torch.cat([models.center_crop(skip, *t[-2:]), x], dim=1)
        got = _tensor(_call(fn, name, skip.clone(), x.clone(), where=where), name, where)
        if _close(got, expected):
            continue
        (mh, mw), (h, w) = (s[-2] - t[-2], s[-1] - t[-1]), t[-2:]
        if _close(got, torch.cat([x, models.center_crop(skip, h, w)], dim=1)):
            fail("unet.crop_and_concat.swapped",
                 f"{name} gives wrong values on {where}: you concatenated [x, skip]; the skip "
                 "features must come first in the concatenation: [skip_cropped, x]")
        shifted = [torch.cat([skip[..., mh // 2 + dy:mh // 2 + dy + h,
                                   mw // 2 + dx:mw // 2 + dx + w], x], dim=1)
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
                   and 0 <= mh // 2 + dy <= mh and 0 <= mw // 2 + dx <= mw]
        if any(_close(got, other) for other in shifted):
            odd = [f"{m} {what}" for m, what in ((mh, "rows"), (mw, "columns")) if m % 2]
            why = (f"the margin is {' and '.join(odd)}, odd): with an odd margin the extra "
                   "pixel stays at the bottom/right; look at how you round when you halve the "
                   "margin" if odd else "the window is not centred); look at how you compute "
                   "the offsets from the margins")
            diff = (got - expected).abs().max().item()
            fail("unet.crop_and_concat.off_by_one",
                 f"{name} gives wrong values on {where}: max abs difference {diff:.3g} from the "
                 f"reference (tolerance {TOLERANCE:g}).\nHint: the crop is off by one pixel "
                 f"({why}")
        _compare(got, expected, name, where, hint,
                 ("unet.crop_and_concat.shape", "unet.crop_and_concat.values"))
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q3

def check_up_block(cls: Callable, points: float | None = None) -> None:
    """Check ``cls(in_ch, out_ch) -> nn.Module`` whose ``forward(x, skip)`` up-samples ``x``
    with a 2x2 transposed convolution (stride 2, ``in_ch -> out_ch``), crops and concatenates
    the encoder map ``skip`` (skip first), then applies a valid ``double_conv(2*out_ch, out_ch)``.
    The reference is :class:`unet_teach.models.Up` with valid padding, whose weights are
    copied into yours. A block without an ``nn.ConvTranspose2d`` (up-sampled with
    ``F.interpolate`` or ``nn.Upsample``) and one that concatenates ``[x, skip]`` are named
    as such.

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
        unet_teach.course.checks._common.CheckFailed: up_block called the library's reference implementation unet_teach.models.Up.__init__ on up_block(4, 2) with x: 2 x 4 x 6 x 6 and skip: 2 x 2 x 16 x 16: that is the answer key, not an answer, and earns no points for this question.
        Hint: build it yourself: nn.ConvTranspose2d, your crop_and_concat, your double_conv; the library's function is only the reference the check compares with
        [check: common.library_reference]
    """
    name = "up_block"
    n = 0
    # (in_ch, out_ch, x size, skip size): even and odd crop margins, batch of 2
    for seed, (cin, cout, low, high) in enumerate([(4, 2, 6, 16), (8, 4, 5, 15), (6, 3, 7, 18)]):
        where = (f"up_block({cin}, {cout}) with x: 2 x {cin} x {low} x {low} and "
                 f"skip: 2 x {cout} x {high} x {high}")
        mine = _module(_call(cls, name, cin, cout, where=where), name, where).double()
        if not _transposed_convs(mine):
            fail("unet.up_block.no_transposed_conv",
                 f"{where}: your block has no nn.ConvTranspose2d. The question asks for the "
                 "up-sampling to be a learned 2x2 transposed convolution with stride 2, "
                 f"in_ch -> out_ch ({cin} -> {cout} here); F.interpolate or nn.Upsample double "
                 "the size without any weights to learn.\nHint: look at how your forward "
                 "doubles the size of x")
        with torch.random.fork_rng():
            torch.manual_seed(100 + seed)
            ref = models.Up(cin, cout, cout, cout, padding="valid").double()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, cin, low, low, generator=g, dtype=torch.float64)
        skip = torch.randn(2, cout, high, high, generator=g, dtype=torch.float64)
        _copy_weights(ref, mine, name, "unet.up_block.parameters", x, skip)
        with torch.no_grad():
            got = _tensor(_call(mine, name, x, skip, where=where), name, where)
            expected = ref(x, skip)
            if not _close(got, expected):
                with _skip_last([ref.conv]):
                    swapped = ref(x, skip)
                if _close(got, swapped):
                    fail("unet.up_block.swapped",
                         f"{name} gives wrong values on {where}: it concatenates [up-sampled x, "
                         "skip]; the skip features must come first in the concatenation.\nHint: "
                         "look at the order of the arguments you pass to crop_and_concat "
                         "(skip, x)")
            _compare(got, expected, name, where,
                     f"ConvTranspose2d({cin}, {cout}, 2, stride=2): {low} -> {2 * low}; "
                     f"crop_and_concat(skip, x) -> {2 * cout} channels; then double_conv("
                     f"{2 * cout}, {cout}): {2 * low} -> {2 * low - 4}",
                     ("unet.up_block.shape", "unet.up_block.values"),
                     value_hint="the size is right: look at the order of the steps (up-sample "
                                "x, crop and concatenate with skip, skip first, then the "
                                "double_conv) and at which map each step gets")
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
        ...     def __init__(self, cin, cout, depth, width, skip_first=True):
        ...         super().__init__()
        ...         w = [width * 2**i for i in range(depth + 1)]
        ...         self.downs = nn.ModuleList(block(a, b) for a, b in zip([cin] + w[:-2], w[:-1]))
        ...         self.bottom = block(w[-2], w[-1])
        ...         self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * b, b, 2, stride=2) for b in w[:-1])
        ...         self.convs = nn.ModuleList(block(2 * b, b) for b in w[:-1])
        ...         self.head = nn.Conv2d(width, cout, 1)
        ...         self.skip_first = skip_first
        ...     def forward(self, x):
        ...         skips = []
        ...         for down in self.downs:
        ...             skips.append(down(x))
        ...             x = nn.functional.max_pool2d(skips[-1], 2)
        ...         x = self.bottom(x)
        ...         for up, conv, skip in reversed(list(zip(self.ups, self.convs, skips))):
        ...             x = up(x)
        ...             pair = [models.center_crop(skip, *x.shape[-2:]), x]
        ...             x = conv(torch.cat(pair if self.skip_first else pair[::-1], 1))
        ...         return self.head(x)
        >>> check_unet(UNet)
        unet: all 6 checks passed - 4 points

        The up-sampled map before the skip is named as such:

        >>> check_unet(lambda cin, cout, depth, width: UNet(cin, cout, depth, width, False))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: unet(1, 2, depth=1, base_width=4) gives wrong values on a 1 x 1 x 28 x 28 input: it concatenates [up-sampled, skip]; the skip features must come first in the concatenation.
        Hint: look at the order of the two maps where the expanding path joins the kept encoder map
        [check: unet.unet.swapped]

        The library's U-Net, even as a subclass, scores nothing:

        >>> class Mine(models.UNet):
        ...     def __init__(self, cin, cout, depth, width):
        ...         super().__init__(cin, cout, depth, width, padding="valid")
        >>> check_unet(Mine)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: unet called the library's reference implementation unet_teach.models.UNet.__init__ on unet(1, 2, depth=1, base_width=4): that is the answer key, not an answer, and earns no points for this question.
        Hint: assemble it yourself from your blocks (double_conv, down, nn.ConvTranspose2d, crop_and_concat) in an nn.Module; the library's function is only the reference the check compares with
        [check: common.library_reference]
    """
    name = "unet"
    n = 0
    for seed, (cin, cout, depth, width, size) in enumerate(
            [(1, 2, 1, 4, 28), (1, 2, 2, 4, 60), (3, 3, 3, 2, 108)]):
        where = f"{name}({cin}, {cout}, depth={depth}, base_width={width})"
        made = _call(cls, name, cin, cout, depth, width, where=where)
        mine = _module(made, name, where).double().eval()
        if _transposed_convs(mine) < depth:
            fail("unet.unet.no_transposed_conv",
                 f"{where} has {_transposed_convs(mine)} nn.ConvTranspose2d for its {depth} "
                 "up-levels. The question asks for a learned 2x2 transposed convolution with "
                 "stride 2 on every level of the expanding path (F.interpolate or nn.Upsample "
                 "have no weights to learn).\nHint: look at how your expanding path doubles the "
                 "size")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = models.UNet(cin, cout, depth, width, padding="valid").double().eval()
        expected_params = models.count_parameters(ref)
        got_params = models.count_parameters(mine)
        if got_params != expected_params:
            fail("unet.unet.param_count",
                 f"{where} has {got_params:,} parameters, expected {expected_params:,} (off by "
                 f"{got_params - expected_params:+,}).\nHint: level i has base_width * 2**i "
                 "channels; each decoder DoubleConv takes skip + up-sampled channels "
                 "(2 x its width); the ConvTranspose2d(2 x w, w, 2, stride=2) halves the channels")
        x = torch.randn(1, cin, size, size, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        _copy_weights(ref, mine, where, "unet.unet.parameters", x)
        with torch.no_grad():
            expected = ref(x)
            got = _tensor(_call(mine, name, x, where=f"{where} on a {size} px input"),
                          name, where)
            if not _close(got, expected):
                with _skip_last([up.conv for up in ref.ups]):
                    swapped = ref(x)
                if _close(got, swapped):
                    fail("unet.unet.swapped",
                         f"{where} gives wrong values on a 1 x {cin} x {size} x {size} input: "
                         "it concatenates [up-sampled, skip]; the skip features must come first "
                         "in the concatenation.\nHint: look at the order of the two maps where "
                         "the expanding path joins the kept encoder map")
        _compare(got, expected, where, f"a 1 x {cin} x {size} x {size} input",
                 f"the output side must be {expected.shape[-1]}: encoder DoubleConv + pool per "
                 "level, bottleneck, then per level up-conv, crop the skip to the up-sampled "
                 "size, concatenate [skip, up], DoubleConv; then the 1x1 head",
                 ("unet.unet.shape", "unet.unet.values"),
                 value_hint="the output size is right: look at which encoder map each level "
                            "concatenates (the one kept on the same level, before pooling), "
                            "and at the order of the steps on each level")
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
        >>> check_valid_sizes(lambda lo, hi, depth: list(range(lo, hi + 1)))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: valid_sizes(540, 600, 4) is wrong: expected [540, 556, 572, 588], got [540, 541, 542, 543, 544, 545, 546, 547, 548, 549, 550, ..., 600] (61 sizes) (wrongly included: [541, 542, 543, 544], missing: []).
        Hint: follow one side through the net: each level loses 4 px to two valid convs and then must be even (and >= 2) to pool; the bottleneck loses 4; each up-level doubles and loses 4; every size must stay >= 1
        [check: unet.valid_sizes.value]
    """
    name = "valid_sizes"
    cases = [(540, 600, 4), (1, 80, 2), (100, 140, 1), (150, 200, 3)]
    for lo, hi, depth in cases:
        where = f"lo={lo}, hi={hi}, depth={depth}"
        got = _call(fn, name, lo, hi, depth, where=where)
        if got is None:
            fail("unet.returned_none", f"{name} returned None on {where}; did you forget "
                                       "`return`?")
        try:
            got = [int(s) for s in got]
        except (TypeError, ValueError):
            fail("unet.valid_sizes.not_a_list", f"{name} returned {type(got).__name__} "
                                                f"{got!r:.60} on {where}; return a list of "
                                                "int sizes")
        expected = models.valid_sizes(lo, hi, depth)
        if got != expected:
            extra = sorted(set(got) - set(expected))[:4]
            missing = sorted(set(expected) - set(got))[:4]
            hint = ("follow one side through the net: each level loses 4 px to two valid convs "
                    "and then must be even (and >= 2) to pool; the bottleneck loses 4; each "
                    "up-level doubles and loses 4; every size must stay >= 1")
            fail("unet.valid_sizes.value",
                 f"{name}({lo}, {hi}, {depth}) is wrong: expected {_short(expected)}, got "
                 f"{_short(got)} (wrongly included: {extra}, missing: {missing}).\nHint: {hint}")
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
    valid-padding U-Net, equal to one whole-image pass over the mirror-padded image, computed
    tile by tile: the net must only ever see inputs of ``tile x tile`` pixels (a forward
    pre-hook on its first block records the sizes), and the result must be a torch tensor.

    Example:
        One pass of the net over the whole padded image gives the right numbers, but is not
        overlap-tile inference:

        >>> def whole_image(net, image, tile):
        ...     out = models.output_size(tile, net.depth)
        ...     context, step = (tile - out) // 2, 2**net.depth
        ...     side = tile + step * -(-(max(image.shape) - out) // step)   # a size the net takes
        ...     padded = np.pad(image, [(context, side - n - context) for n in image.shape],
        ...                     mode="reflect")
        ...     with torch.no_grad():
        ...         return net(torch.as_tensor(padded)[None, None])[0, :, :image.shape[0], :image.shape[1]]
        >>> check_overlap_tile(whole_image)
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: overlap_tile ran the net on an input of 88 x 88 px on a 45 x 38 image, depth-2 net, tile 92: overlap_tile must run the net tile by tile, on inputs of the tile's size (92 x 92).
        Hint: cut tiles of tile x tile pixels out of the mirror-padded image and run the net on each; only their outputs are stitched together
        [check: unet.overlap_tile.not_tiled]

        The library's overlap-tile (or this check's own whole-image pass) scores nothing:

        >>> check_overlap_tile(lambda net, image, tile: _whole_image_scores(net, image))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: overlap_tile called the library's reference implementation unet_teach.course.checks.unet._whole_image_scores on a 45 x 38 image, depth-2 net, tile 92: that is the answer key, not an answer, and earns no points for this question.
        Hint: pad, cut and stitch the tiles yourself; models.output_size is the helper the question hands out; the library's function is only the reference the check compares with
        [check: common.library_reference]
    """
    name = "overlap_tile"
    cases = [(2, 4, (45, 38), 92), (2, 4, (61, 100), 76), (3, 2, (70, 53), 156)]
    for seed, (depth, width, (h, w), tile) in enumerate(cases):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = models.UNet(1, 2, depth, width, padding="valid").double().eval()
        image = np.random.default_rng(seed).random((h, w))
        where = f"a {h} x {w} image, depth-{depth} net, tile {tile}"
        sizes: list[tuple[int, int]] = []
        # the first block sees every input of the net, however forward is reached
        with _recording([net.encoder[0]], sizes):
            made = _call(fn, name, net, image.copy(), tile, where=where)
        got = _tensor(made, name, where, strict_id="unet.overlap_tile.not_a_tensor")
        other = sorted(set(s for s in sizes if s != (tile, tile)))
        if other:
            shown = ", ".join(f"{a} x {b}" for a, b in other[:3]) + (" ..." if len(other) > 3 else "")
            fail("unet.overlap_tile.not_tiled",
                 f"{name} ran the net on an input of {shown} px on {where}: overlap_tile must "
                 f"run the net tile by tile, on inputs of the tile's size ({tile} x {tile}).\n"
                 "Hint: cut tiles of tile x tile pixels out of the mirror-padded image and run "
                 "the net on each; only their outputs are stitched together")
        expected = _whole_image_scores(net, image)
        _compare(got, expected, name, where,
                 "mirror-pad by the context (tile - output) // 2 with np.pad(..., mode='reflect'); "
                 "place tiles a multiple of 2**depth apart (output minus overlap), so every "
                 "pooling window lines up with the whole image's; return raw scores K x H x W",
                 ("unet.overlap_tile.shape", "unet.overlap_tile.values"), tolerance=1e-6)
    report_passed(POINTS, name, len(cases), points)
