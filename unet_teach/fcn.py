"""A patch classifier turned into a fully convolutional network, with the same weights.

A :class:`~unet_teach.patches.PatchClassifier` labels the centre pixel of one
``window x window`` patch. Sliding it over an image recomputes almost every feature again
for each pixel, because neighbouring patches overlap almost entirely. Long et al. (2015)
observed that nothing in the net needs the patch to be cut out first:

1. a convolution or a pooling applied to a large image computes, at once, what it would
   compute on every patch of that image;
2. the first fully connected layer sees the whole ``C x s x s`` feature map of a patch: it is
   a convolution whose kernel is ``s x s``; the later fully connected layers are 1x1
   convolutions.

Done literally (``dense=False``), the converted net gives one output every ``2**stages``
pixels: each 2x2 pooling with stride 2 halves the output grid. For one output per pixel
(``dense=True``) we pool with stride 1 instead and *dilate* every later convolution and
pooling by the stride we skipped ("a trous"): a layer that used to read neighbours ``d``
positions apart on the subsampled grid now reads them ``d`` pixels apart on the full grid.

Shapes are written ``N x C x H x W``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .losses import probabilities, to_labels
from .patches import PatchClassifier, mirror_pad


class FullyConvolutional(nn.Module):
    """A patch classifier in fully convolutional form (build it with
    :func:`to_fully_convolutional`).

    Output pixel ``(i, j)`` equals the patch classifier's scores on the input patch
    ``x[..., i*stride : i*stride + window, j*stride : j*stride + window]``.

    Attributes:
        window: the patch size of the original classifier.
        stride: distance in input pixels between neighbouring outputs (1 when dense).

    Shapes: ``N x C x H x W -> N x K x H' x W'`` with ``H' = (H - window) // stride + 1``.
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential, window: int,
                 stride: int):
        super().__init__()
        self.features, self.classifier = features, classifier
        self.window, self.stride = window, stride

    def output_size(self, size: int) -> int:
        """Outputs along a side of ``size`` input pixels (``(size - window) // stride + 1``)."""
        return (size - self.window) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < self.window or w < self.window:
            raise ValueError(f"input {h}x{w} is smaller than the {self.window} px window; "
                             f"mirror-pad the image by window // 2 = {self.window // 2} first")
        scores = self.classifier(self.features(x))        # N x K x H'' x W''
        # Pooling floors odd sizes, so the patch net ignores a last row/column of some maps;
        # the converted net then computes a few extra positions at the end: drop them.
        return scores[..., :self.output_size(h), :self.output_size(w)]   # N x K x H' x W'


def _stages(model: PatchClassifier) -> list[tuple[nn.Conv2d, nn.MaxPool2d]]:
    layers = list(model.features)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    pools = [m for m in layers if isinstance(m, nn.MaxPool2d)]
    if len(convs) != len(pools) or len(layers) != 3 * len(convs):
        raise ValueError("expected features made of conv -> ReLU -> 2x2 max-pool stages, as "
                         "PatchClassifier builds them")
    return list(zip(convs, pools))


def to_fully_convolutional(patch_model: PatchClassifier, dense: bool = True) -> FullyConvolutional:
    """Rewrite a patch classifier as a fully convolutional net with the same weights.

    Every ``Linear`` becomes a ``Conv2d``: the first one with a kernel the size of the last
    feature map (``feature_size x feature_size``), the others 1x1. The weights are copied,
    not shared, so later training of either net does not change the other.

    Args:
        patch_model: a :class:`~unet_teach.patches.PatchClassifier`.
        dense: ``True`` - one output per input pixel (pooling with stride 1, later layers
            dilated by the accumulated factor); ``False`` - the plain conversion, one output
            every ``2**stages`` pixels.

    Returns:
        A :class:`FullyConvolutional` in the patch model's dtype and device, in eval mode.
        Shapes: ``N x C x H x W -> N x K x H' x W'``, ``H' = (H - window) // stride + 1``.

    Example:
        >>> from unet_teach.patches import PatchClassifier
        >>> net = PatchClassifier(window=25, convs=((4, 16), (4, 32)), fc=(64,))
        >>> fcn = to_fully_convolutional(net)
        >>> fcn(torch.zeros(1, 1, 40, 30)).shape           # 40 - 25 + 1 = 16, 30 - 25 + 1 = 6
        torch.Size([1, 2, 16, 6])
        >>> to_fully_convolutional(net, dense=False).stride  # two poolings: every 4th pixel
        4
    """
    if not isinstance(patch_model, PatchClassifier):
        raise TypeError(f"expected a PatchClassifier, got {type(patch_model).__name__}")
    param = next(patch_model.parameters())
    features: list[nn.Module] = []
    d = 1                                           # dilation = stride skipped so far
    for conv, pool in _stages(patch_model):
        k = conv.kernel_size[0]
        new = nn.Conv2d(conv.in_channels, conv.out_channels, k, dilation=d if dense else 1)
        new.weight.data.copy_(conv.weight.data)
        new.bias.data.copy_(conv.bias.data)
        if dense:
            # stride 1 keeps every position; the 2x2 window's pixels are now d apart
            features += [new, nn.ReLU(inplace=True), nn.MaxPool2d(2, stride=1, dilation=d)]
        else:
            features += [new, nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        d *= 2
    linears = [m for m in patch_model.classifier if isinstance(m, nn.Linear)]
    c, s = patch_model.feature_channels, patch_model.feature_size
    head: list[nn.Module] = []
    for i, lin in enumerate(linears):
        if i == 0:   # sees the whole C x s x s map; Flatten ordered it (C, s, s) - same here
            conv = nn.Conv2d(c, lin.out_features, s, dilation=d if dense else 1)
            conv.weight.data.copy_(lin.weight.data.reshape(lin.out_features, c, s, s))
        else:        # sees one vector per position: a 1x1 convolution
            conv = nn.Conv2d(lin.in_features, lin.out_features, 1)
            conv.weight.data.copy_(lin.weight.data[:, :, None, None])
        conv.bias.data.copy_(lin.bias.data)
        head.append(conv)
        if i < len(linears) - 1:
            head.append(nn.ReLU(inplace=True))
    stride = 1 if dense else d
    fcn = FullyConvolutional(nn.Sequential(*features), nn.Sequential(*head),
                             patch_model.window, stride)
    return fcn.to(device=param.device, dtype=param.dtype).eval()


@torch.no_grad()
def fcn_scores(fcn: FullyConvolutional, image: np.ndarray) -> torch.Tensor:
    """Raw class scores of every pixel of one ``H x W`` image in a single forward pass.

    The image is mirror-padded by ``window // 2`` (as the sliding window does), so that each
    pixel's output sees the same patch the patch classifier would. Needs ``stride == 1``
    (``dense=True``).

    Returns:
        ``K x H x W`` tensor of scores (before softmax), on the net's device and dtype.

    Example:
        >>> from unet_teach.patches import PatchClassifier
        >>> fcn = to_fully_convolutional(PatchClassifier(window=9, convs=((3, 4),), fc=(8,)))
        >>> fcn_scores(fcn, np.zeros((6, 5), np.float32)).shape
        torch.Size([2, 6, 5])
    """
    if fcn.stride != 1:
        raise ValueError(f"this net gives one output every {fcn.stride} px; build it with "
                         "to_fully_convolutional(model, dense=True) for a per-pixel map")
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected one H x W image, got shape {image.shape}")
    param = next(fcn.parameters())
    padded = mirror_pad(image, fcn.window // 2)                        # H+w-1 x W+w-1
    x = torch.as_tensor(padded, dtype=param.dtype, device=param.device)[None, None]
    return fcn.eval()(x)[0]                                            # K x H x W


def fcn_segment(fcn: FullyConvolutional, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment an ``H x W`` image with a dense fully convolutional net: mirror-pad once, run
    once. Gives the same result as
    :func:`~unet_teach.patches.sliding_window_segment` with the original patch classifier.

    Returns:
        ``(labels H x W int64, probabilities K x H x W float32)``.

    Example:
        >>> from unet_teach.patches import PatchClassifier, sliding_window_segment
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))
        >>> img = np.random.default_rng(0).random((12, 10)).astype(np.float32)
        >>> labels, probs = fcn_segment(to_fully_convolutional(net), img)
        >>> bool(np.abs(probs - sliding_window_segment(net, img)[1]).max() < 1e-5)
        True
    """
    scores = fcn_scores(fcn, image).float().cpu()[None]                # 1 x K x H x W
    return to_labels(scores)[0].numpy(), probabilities(scores)[0].numpy()
