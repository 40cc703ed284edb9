"""U-Net, built from a handful of small blocks, and the named variants the book compares.

Read this file top to bottom next to the U-Net chapter:

1. ``DoubleConv``  - two 3x3 convolutions, the unit of work at every level;
2. ``Down``        - halve the resolution (max-pool or a strided convolution);
3. ``Up``          - double the resolution, crop the skip map if needed, concatenate;
4. ``UNet``        - a contracting path of ``depth`` downs and an expanding path of
   ``depth`` ups, plus a 1x1 (or 3x3) head that gives one score map per class;
5. ``preset``      - the paper's network and the Keras-, PyTorch- and TensorFlow-style
   variants, each as a set of ``UNet`` arguments.

Shapes are written ``N x C x H x W`` (batch, channels, height, width).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

PADDINGS = ("same", "valid")
DOWNS = ("maxpool", "strided_conv")
UPS = ("transposed", "nearest_conv", "bilinear")
NORMS = (None, "batch", "instance")
ACTIVATIONS = ("relu", "leaky_relu")


def _choice(name: str, value, allowed: tuple) -> None:
    """Refuse an unknown mode string instead of quietly building something else."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")


def _activation(name: str, slope: float) -> nn.Module:
    _choice("activation", name, ACTIVATIONS)
    return nn.ReLU(inplace=True) if name == "relu" else nn.LeakyReLU(slope, inplace=True)


def _norm(name: str | None, channels: int) -> nn.Module:
    _choice("norm", name, NORMS)
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by [norm] -> [dropout] -> activation.

    With ``padding="same"`` the spatial size is kept; with ``"valid"`` (the paper's
    choice) each convolution trims one pixel from every border, so H and W shrink by 4.

    Shapes: ``N x in_ch x H x W -> N x out_ch x H' x W'`` with ``H' = H`` (same) or
    ``H - 4`` (valid).

    Example:
        >>> block = DoubleConv(1, 64, padding="valid")
        >>> block(torch.zeros(1, 1, 572, 572)).shape
        torch.Size([1, 64, 568, 568])
    """

    def __init__(self, in_ch: int, out_ch: int, padding: str = "same",
                 norm: str | None = None, dropout: tuple[float, float] = (0.0, 0.0),
                 activation: str = "relu", slope: float = 0.01):
        _choice("padding", padding, PADDINGS)
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for cin, p in zip((in_ch, out_ch), dropout):
            layers.append(nn.Conv2d(cin, out_ch, kernel_size=3, padding=pad))
            layers.append(_norm(norm, out_ch))
            if p > 0:
                layers.append(nn.Dropout(p))
            layers.append(_activation(activation, slope))
        super().__init__(*layers)


class Down(nn.Sequential):
    """Halve the resolution. ``maxpool``: 2x2 max-pooling (the paper, Keras and TF
    styles). ``strided_conv``: a 3x3 convolution with stride 2 that keeps the channels,
    followed by the activation (the PyTorch style) - a learned down-sampling instead of
    a fixed one.

    Shapes: ``N x C x H x W -> N x C x H/2 x W/2`` (H, W even).

    Example:
        >>> Down(8)(torch.zeros(2, 8, 64, 64)).shape
        torch.Size([2, 8, 32, 32])
    """

    def __init__(self, channels: int, mode: str = "maxpool", activation: str = "relu",
                 slope: float = 0.01):
        _choice("down", mode, DOWNS)
        if mode == "maxpool":
            super().__init__(nn.MaxPool2d(2))
        else:
            super().__init__(nn.Conv2d(channels, channels, 3, stride=2, padding=1),
                             _activation(activation, slope))


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Cut the central ``height x width`` window out of ``x`` (``N x C x H x W``).

    The valid-padding U-Net needs this: the encoder map of a level is larger than the
    up-sampled decoder map it is concatenated with, because every convolution after it
    trimmed a border. (With odd margins the extra pixel is taken from the bottom/right.)

    Example:
        >>> center_crop(torch.zeros(1, 64, 568, 568), 392, 392).shape
        torch.Size([1, 64, 392, 392])
    """
    h, w = x.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"cannot crop {h}x{w} to a larger {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width]


class Up(nn.Module):
    """Double the resolution, concatenate the encoder's map of the same level,
    DoubleConv.

    Up-sampling modes:
      * ``transposed``  - a learned 2x2 transposed convolution with stride 2 (paper,
        Keras, TF styles) that also sets the channel count to ``up_ch``;
      * ``nearest_conv`` - nearest-neighbour x2 then a 1x1 convolution to ``up_ch``
        (PyTorch style; free of the checkerboard artefacts transposed convolutions
        can make);
      * ``bilinear``    - bilinear x2 then a 1x1 convolution to ``up_ch``.

    The skip is optional: with ``skip_ch=0`` the block takes no encoder map
    (``skip=None``) and is a plain decoder step - the ablation the U-Net chapter trains.

    Shapes: ``x: N x in_ch x h x w`` and ``skip: N x skip_ch x H x W`` (``H >= 2h``)
    -> ``N x out_ch x H' x W'``.

    Example:
        >>> up = Up(in_ch=128, skip_ch=64, up_ch=64, out_ch=64)
        >>> up(torch.zeros(1, 128, 16, 16), torch.zeros(1, 64, 32, 32)).shape
        torch.Size([1, 64, 32, 32])
        >>> plain = Up(in_ch=128, skip_ch=0, up_ch=64, out_ch=64)
        >>> plain(torch.zeros(1, 128, 16, 16)).shape
        torch.Size([1, 64, 32, 32])
    """

    def __init__(self, in_ch: int, skip_ch: int, up_ch: int, out_ch: int,
                 mode: str = "transposed", up_bias: bool = True, padding: str = "same",
                 norm: str | None = None, dropout: tuple[float, float] = (0.0, 0.0),
                 activation: str = "relu", slope: float = 0.01):
        super().__init__()
        _choice("up", mode, UPS)
        self.mode, self.skip_ch = mode, skip_ch
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(in_ch, up_ch, kernel_size=2, stride=2,
                                         bias=up_bias)
        else:
            self.up = nn.Conv2d(in_ch, up_ch, kernel_size=1, bias=up_bias)
        self.conv = DoubleConv(skip_ch + up_ch, out_ch, padding=padding, norm=norm,
                               dropout=dropout, activation=activation, slope=slope)

    def forward(self, x: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.up(x)                                     # N x up_ch x 2h x 2w
        else:
            resize = "nearest" if self.mode == "nearest_conv" else "bilinear"
            x = F.interpolate(x, scale_factor=2, mode=resize)  # N x in_ch x 2h x 2w
            x = self.up(x)                                     # N x up_ch x 2h x 2w
        if (skip is None) != (self.skip_ch == 0):
            raise ValueError(f"this Up block was built with skip_ch={self.skip_ch}; "
                             "pass a skip map exactly when skip_ch > 0")
        if skip is not None:
            # the encoder map is larger when the convolutions are valid: cut its centre
            skip = center_crop(skip, x.shape[-2], x.shape[-1])  # N x skip_ch x 2h x 2w
            x = torch.cat([skip, x], dim=1)           # N x (skip_ch + up_ch) x 2h x 2w
        return self.conv(x)


def _pair(p: float | tuple[float, float]) -> tuple[float, float]:
    return (float(p), float(p)) if isinstance(p, (int, float)) else (float(p[0]), float(p[1]))


class UNet(nn.Module):
    """One configurable U-Net. It returns raw scores: the activation belongs to the loss
    (:mod:`unet_teach.losses`), which picks sigmoid or softmax from the number of maps.

    Args:
        in_channels: channels of the input image (1 for EM, 3 for RGB).
        out_channels: score maps the head produces (one per class; 1 for a sigmoid mask).
        depth: number of down-samplings (the paper and all presets use 4).
        base_width: channels at the first level; level ``i`` has ``base_width * 2**i``.
        padding: ``"same"`` keeps sizes (output = input); ``"valid"`` is the paper's
            unpadded convolution with crop-and-concatenate (output smaller than input).
        down: ``"maxpool"`` or ``"strided_conv"``.
        up: ``"transposed"``, ``"nearest_conv"`` or ``"bilinear"``.
        up_bias: whether the up-sampling layer has a bias (the TF style's has none).
        norm: ``None``, ``"batch"`` or ``"instance"`` after every 3x3 convolution.
        dropout: dropout probability after each of the two convolutions of a block (one
            float for both, or a pair).
        activation: ``"relu"`` or ``"leaky_relu"`` (negative slope ``leaky_slope``).
        head_kernel: kernel of the last convolution (1 in the paper, 3 in the PyTorch style).
        pixel_shuffle: if set to ``r``, the head makes ``out_channels * r**2`` maps and a
            depth-to-space step turns them into ``out_channels`` maps ``r`` times larger.
        skips: concatenate the encoder maps into the expanding path (the U-Net); ``False``
            gives the same net without them, a plain encoder-decoder.
        checkpointing: in training, keep only each block's input and recompute the
            block's inner activations during the backward pass (gradient checkpointing):
            less activation memory for about one extra forward pass of time; the
            gradients are the same.
        final_activation: removed; passing anything but ``None`` raises an error. Apply
            :func:`unet_teach.losses.probabilities` (or ``torch.sigmoid``) to the scores.

    Shapes: ``N x in_channels x H x W -> N x out_channels x H_out x W_out`` where
    ``H_out = H`` for same padding, ``H - 184`` for the paper's valid net (depth 4), and
    times ``pixel_shuffle`` when set. ``H`` must be a size the net can take; see
    :func:`valid_sizes` and :meth:`check_input`.

    Example:
        >>> net = UNet(in_channels=1, out_channels=2, depth=2, base_width=8)
        >>> net(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, depth: int = 4,
                 base_width: int = 64, padding: str = "same", down: str = "maxpool",
                 up: str = "transposed", up_bias: bool = True, norm: str | None = None,
                 dropout: float | tuple[float, float] = 0.0, activation: str = "relu",
                 leaky_slope: float = 0.01, head_kernel: int = 1, pixel_shuffle: int | None = None,
                 skips: bool = True, checkpointing: bool = False, final_activation: None = None):
        super().__init__()
        if final_activation is not None:
            raise ValueError(f"final_activation={final_activation!r}: UNet returns raw scores "
                             "and has no final activation; apply it outside, e.g. "
                             "unet_teach.losses.probabilities(net(x)) (sigmoid for one map, "
                             "softmax otherwise), and train on the raw scores")
        for name, value, allowed in [("padding", padding, PADDINGS), ("down", down, DOWNS),
                                     ("up", up, UPS), ("norm", norm, NORMS),
                                     ("activation", activation, ACTIVATIONS)]:
            _choice(name, value, allowed)
        if depth < 1 or base_width < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("depth, base_width, in_channels and out_channels must be >= 1")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.padding, self.pixel_shuffle, self.skips = padding, pixel_shuffle, skips
        self.checkpointing = checkpointing
        conv = dict(padding=padding, norm=norm, dropout=_pair(dropout), activation=activation,
                    slope=leaky_slope)
        widths = [base_width * 2**i for i in range(depth + 1)]   # e.g. 64, 128, 256, 512, 1024
        self.widths = widths

        # Contracting path: a DoubleConv at each level, then a Down to the next.
        self.encoder = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = in_channels
        for w in widths[:-1]:
            self.encoder.append(DoubleConv(in_ch=ch, out_ch=w, **conv))
            self.downs.append(Down(channels=w, mode=down, activation=activation,
                                   slope=leaky_slope))
            ch = w
        self.bottleneck = DoubleConv(in_ch=ch, out_ch=widths[-1], **conv)

        # Expanding path: from the bottom level up, each Up halves the channels and (with
        # skips) concatenates the encoder map of its level.
        self.ups = nn.ModuleList()
        for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
            self.ups.append(Up(in_ch=w_low, skip_ch=w if skips else 0, up_ch=w, out_ch=w,
                               mode=up, up_bias=up_bias, **conv))

        # Head: one score map per class ("heatmaps"); optionally depth-to-space.
        head_out = out_channels * (pixel_shuffle or 1) ** 2
        self.head = nn.Conv2d(widths[0], head_out, head_kernel, padding=head_kernel // 2)
        self.shuffle = nn.PixelShuffle(pixel_shuffle) if pixel_shuffle else nn.Identity()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says what to do if ``x`` is not an input this net takes."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}; "
                            "convert with torch.as_tensor(x, dtype=torch.float32)")
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D batch N x C x H x W, got shape {tuple(x.shape)}; "
                             "add the missing axes, e.g. x[None, None] for one H x W image")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]} "
                             f"(shape {tuple(x.shape)}); channels come second: N x C x H x W")
        if not torch.is_floating_point(x):
            raise ValueError(f"expected a floating-point tensor, got {x.dtype}; "
                             "use x.float() (and scale 8-bit images to [0, 1])")
        for axis, size in (("height", x.shape[2]), ("width", x.shape[3])):
            check_size(size, self.depth, self.padding, axis)

    def _run(self, block: nn.Module, *args):
        # Checkpointing only pays in training: without gradients nothing is stored anyway.
        # Dropout inside a recomputed block draws the same mask again (checkpoint restores
        # the random state), so the gradients match an ordinary pass. BatchNorm would
        # update its running statistics a second time during the recomputation; the
        # buffers are put back afterwards so that they match an ordinary pass too.
        if not (self.checkpointing and self.training and torch.is_grad_enabled()):
            return block(*args)
        calls = 0

        def run(*inputs):
            nonlocal calls
            calls += 1
            if calls == 1:
                return block(*inputs)
            saved = [b.clone() for b in block.buffers()]
            out = block(*inputs)
            with torch.no_grad():
                for b, old in zip(block.buffers(), saved):
                    b.copy_(old)
            return out

        # Early stop would end the recomputation as soon as the last saved tensor is
        # rebuilt, before the buffers are put back; this needs the whole of `run`.
        with set_checkpoint_early_stop(False):
            return checkpoint(run, *args, use_reentrant=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # self._run(block, x) is block(x); with checkpointing=True it also saves memory
        skips = []
        for block, down in zip(self.encoder, self.downs):
            x = self._run(block, x)   # N x w_i x H_i x W_i
            skips.append(x)           # kept for the expanding path
            x = down(x)               # N x w_i x H_i/2 x W_i/2
        x = self._run(self.bottleneck, x)             # N x w_depth x h x w
        for up, skip in zip(self.ups, reversed(skips)):
            x = self._run(up, x, skip if self.skips else None)   # N x w_i x H'_i x W'_i
        return self.shuffle(self.head(x))             # N x out_channels x H_out x W_out


# --------------------------------------------------------------------------- sizes

def output_size(size: int, depth: int = 4, padding: str = "valid") -> int | None:
    """Follow one side length through the net; return the output side, or ``None`` if the
    net cannot take it (a pooling step meets an odd size, or a map shrinks to nothing).

    Example:
        >>> output_size(572), output_size(570), output_size(256, padding="same")
        (388, None, 256)
    """
    trim = 4 if padding == "valid" else 0      # two 3x3 convs lose 2 px a side each... 4 in all
    s = size
    for _ in range(depth):                     # contracting path
        s -= trim
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= trim                                  # bottleneck
    if s < 1:
        return None
    for _ in range(depth):                     # expanding path
        s = 2 * s - trim
        if s < 1:
            return None
    return s


def valid_sizes(lo: int, hi: int, depth: int = 4, padding: str = "valid") -> list[int]:
    """All side lengths in ``[lo, hi]`` the net can take.

    Example:
        >>> valid_sizes(540, 600)
        [540, 556, 572, 588]
    """
    return [s for s in range(max(lo, 1), hi + 1) if output_size(s, depth, padding) is not None]


def nearest_valid_sizes(size: int, depth: int = 4, padding: str = "valid") -> tuple[int | None, int]:
    """The nearest valid side lengths below and above ``size`` (``None`` if none below).

    Example:
        >>> nearest_valid_sizes(570)
        (556, 572)
    """
    below = next((s for s in range(size - 1, 0, -1) if output_size(s, depth, padding)), None)
    above = next(s for s in range(size + 1, size + 2**(depth + 6))
                 if output_size(s, depth, padding))
    return below, above


def check_size(size: int, depth: int = 4, padding: str = "valid", axis: str = "size") -> None:
    """Raise ``ValueError`` naming the nearest valid sizes if the net cannot take ``size``.

    Example:
        >>> check_size(572)        # fine, returns None
        >>> check_size(570)
        Traceback (most recent call last):
        ...
        ValueError: input height/width 570 cannot pass through a depth-4 U-Net with valid padding; the nearest valid sizes are 556 and 572 (crop or mirror-pad the image)
    """
    if output_size(size, depth, padding) is not None:
        return
    below, above = nearest_valid_sizes(size, depth, padding)
    near = f"{below} and {above}" if below else f"{above} (the smallest)"
    name = "input height/width" if axis == "size" else f"input {axis}"
    raise ValueError(f"{name} {size} cannot pass through a depth-{depth} U-Net with {padding} "
                     f"padding; the nearest valid sizes are {near} (crop or mirror-pad the image)")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.

    Example:
        >>> count_parameters(preset("paper"))
        31030658
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    # Ronneberger et al. 2015: unpadded 3x3 convs, 64..1024 channels, max-pool, 2x2 up-conv,
    # crop-and-concatenate, 1x1 head to two class scores (softmax applied by the loss).
    "paper": dict(in_channels=1, out_channels=2, depth=4, base_width=64, padding="valid"),
    # Keras style: get_unet() in train.py of jocicmarko/ultrasound-nerve-segmentation
    # (commit 61761bf, the version with Conv2DTranspose): same padding, 32..512, ReLU,
    # transposed convs, one score map (the original ends in a sigmoid; here the loss
    # applies it, see unet_teach.losses).
    "keras": dict(in_channels=1, out_channels=1, depth=4, base_width=32, padding="same"),
    # PyTorch style (as the book's source article describes it; no one public file):
    # conv-BN-Dropout-LeakyReLU blocks, strided-conv down-sampling, nearest + 1x1 conv
    # up-sampling, a 3x3 head to three maps (sigmoid in the original).
    "pytorch": dict(in_channels=3, out_channels=3, depth=4, base_width=64, padding="same",
                    down="strided_conv", up="nearest_conv", norm="batch", dropout=(0.3, 0.4),
                    activation="leaky_relu", leaky_slope=0.01, head_kernel=3),
    # TensorFlow (slim) style, the article's UNet_1X: the body of network() in train_Fuji.py
    # of cchen156/Learning-to-See-in-the-Dark (leaky ReLU 0.2, 32..512, max-pool, bias-free
    # transposed convs), but 3 input channels (SID packs 9 or 4 raw ones) and a 1x1 head to
    # six maps (the article's; not in SID) ...
    "tf": dict(in_channels=3, out_channels=6, depth=4, base_width=32, padding="same",
               up_bias=False, activation="leaky_relu", leaky_slope=0.2),
    # ... or, as UNet_3X and SID's Fuji net, to 27 = 3 * 3**2 maps rearranged by
    # depth-to-space into a 3-channel image three times larger (a restoration head).
    # SID's own nets: preset("tf_3x", in_channels=9) (Fuji) and
    # preset("tf_3x", in_channels=4, pixel_shuffle=2) (Sony).
    "tf_3x": dict(in_channels=3, out_channels=3, depth=4, base_width=32, padding="same",
                  up_bias=False, activation="leaky_relu", leaky_slope=0.2, pixel_shuffle=3),
}


def preset(name: str, **overrides) -> UNet:
    """Build a named U-Net variant; keyword ``overrides`` replace any of its arguments.

    Names: ``"paper"`` (572x572 -> 388x388, 31,030,658 parameters), ``"keras"``,
    ``"pytorch"``, ``"tf"`` and ``"tf_3x"`` (see ``PRESETS`` for the code each follows, and
    the book's chapter on the three reference implementations). No source prints a
    parameter count: the counts the book and ``tests/test_models.py`` give are the layers'
    own arithmetic.

    Example:
        >>> net = preset("keras", base_width=8)          # a narrow version
        >>> net(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return UNet(**{**PRESETS[name], **overrides})
