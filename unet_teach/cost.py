"""What a network costs and what it sees: multiply-accumulates and receptive fields.

* :func:`count_macs` / :func:`layer_macs` - multiply-accumulates (MACs) of one forward pass,
  measured with forward hooks on ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` (bias adds
  are not counted; pooling and activations are free by this count);
* :func:`receptive_field` - the receptive field and output stride of a conv/pool stack, from
  the layer hyper-parameters (kernel, stride, dilation);
* :func:`empirical_receptive_field` - the same thing measured by back-propagation, for any
  net (a U-Net included);
* :func:`sliding_window_macs`, :func:`dense_macs`, :func:`redundancy_factor` - the work of a
  patch classifier slid over an image, versus computing every layer's feature once per
  position.

One MAC is one ``a * b + c``; papers that quote FLOPs usually count 2 per MAC.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

# Layers that do not change where a feature looks in the input (they act pixel by pixel or
# not at all) - receptive_field walks past them.
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
              nn.Softmax, nn.LogSoftmax, nn.Identity, nn.Flatten, nn.Dropout, nn.Dropout2d,
              nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)


def _layer_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """MACs of one call of a Conv2d / ConvTranspose2d / Linear layer (whole batch)."""
    if isinstance(module, nn.Conv2d):
        # every output value is a dot product over (C_in / groups) x kh x kw inputs
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        # every input value is scattered into (C_out / groups) x kh x kw outputs
        kh, kw = module.kernel_size
        return inp.numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, int]]:
    """MACs of every Conv2d / ConvTranspose2d / Linear call in one forward pass.

    Args:
        model: any module.
        input_shape: the full input shape, batch included (e.g. ``(1, 1, 95, 95)``).

    Returns:
        ``[(layer name, MACs), ...]`` in call order (a layer called twice appears twice).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
        >>> layer_macs(net, (1, 1, 5, 5))     # 4*3*3 outputs x 9 taps; 2 outputs x 36 inputs
        [('0', 324), ('3', 72)]
    """
    names = {m: name for name, m in model.named_modules()}
    found: list[tuple[str, int]] = []

    def hook(module, args, out):
        found.append((names[module], _layer_cost(module, args[0], out)))

    counted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (batch
    included), summed over Conv2d, ConvTranspose2d and Linear layers; bias excluded.

    Conv2d: ``outputs x (C_in / groups) x kh x kw``; ConvTranspose2d:
    ``inputs x (C_out / groups) x kh x kw``; Linear: ``outputs x in_features``.

    Example:
        >>> count_macs(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 32, 32)) == 8 * 32 * 32 * 3 * 3 * 3
        True
        >>> count_macs(nn.Linear(10, 5), (4, 10))      # batch of 4
        200
    """
    return sum(macs for _, macs in layer_macs(model, input_shape))


def _square(value, name: str, layer: nn.Module) -> int:
    """A square kernel/stride/dilation as one int; a clear error otherwise."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"{type(layer).__name__} has a non-square {name} {tuple(value)}; "
                             "receptive_field handles square layers only - use "
                             "empirical_receptive_field")
        value = value[0]
    return int(value)


def receptive_field(model_or_layers: nn.Module | Iterable[nn.Module]) -> tuple[int, int]:
    """Receptive field and output stride of a sequential stack of Conv2d / MaxPool2d /
    AvgPool2d layers, from their kernel, stride and dilation.

    Walking the layers in order with ``jump`` = distance in input pixels between two
    neighbouring features of the current map (starts at 1)::

        size += (dilation * (kernel - 1)) * jump
        jump *= stride

    Activations, normalisation, dropout and Flatten are skipped (they act per position).
    Padding does not change either number.

    Returns:
        ``(size, stride)``: one output feature sees ``size x size`` input pixels, and
        neighbouring output features are ``stride`` input pixels apart.

    Raises:
        ValueError: for a layer it cannot follow (Linear, upsampling, transposed conv, a
            non-square kernel...); :func:`empirical_receptive_field` handles any net.

    Example:
        >>> receptive_field(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)))
        (5, 1)
        >>> receptive_field([nn.Conv2d(1, 8, 3), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)])
        (8, 2)
    """
    if isinstance(model_or_layers, nn.Module):
        layers = [m for m in model_or_layers.modules() if not list(m.children())]
    else:
        layers = list(model_or_layers)
    size, jump = 1, 1
    for layer in layers:
        if isinstance(layer, _POINTWISE):
            continue
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel = _square(layer.kernel_size, "kernel", layer)
            stride = _square(layer.stride if layer.stride is not None else kernel, "stride", layer)
            dilation = _square(getattr(layer, "dilation", 1), "dilation", layer)
            size += dilation * (kernel - 1) * jump
            jump *= stride
            continue
        hint = (" (for a PatchClassifier pass net.features: its fully connected layers see the "
                "whole window)" if isinstance(layer, nn.Linear) else "")
        raise ValueError(f"receptive_field cannot follow a {type(layer).__name__} layer{hint}; "
                         "use empirical_receptive_field(model) for this net")
    return size, jump


def _make_all_paths_visible(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` in which every input pixel that *can* influence an output
    does so with a nonzero gradient: positive weights, zero biases, neutral normalisation,
    and max-pooling replaced by average pooling (a max sends its gradient to one input)."""
    net = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(0)
    for name, module in list(net.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen,
                                               dtype=torch.float64) + 0.5)
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()          # mean 0, var 1, weight 1, bias 0: identity
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d) and child.dilation in (1, (1, 1)):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                         child.padding, child.ceil_mode))
    return net


def empirical_receptive_field(model: nn.Module, in_channels: int = 1, size: int = 129) -> int:
    """Receptive field measured by back-propagation: the width (in input pixels) of the
    region whose gradient on the centre output pixel is nonzero.

    Works for any net that maps ``1 x in_channels x size x size`` to ``1 x K x h x w``
    (a U-Net included). The net is copied to float64 and eval mode, and its weights are made
    positive (max-pooling swapped for average pooling) so that no path is hidden by a ReLU
    or a max; the result is the connectivity of the architecture, not of trained weights.
    A model with a ``window`` attribute (a :class:`~unet_teach.patches.PatchClassifier`)
    is fed patches of that size.

    Raises:
        ValueError: if the gradient reaches the input border - the receptive field may be
            larger than ``size``; pass a larger ``size``.

    Example:
        >>> stack = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
        >>> empirical_receptive_field(stack, size=33), receptive_field(stack)[0]
        (8, 8)
    """
    window = getattr(model, "window", None)
    size = int(window) if window is not None else int(size)
    net = _make_all_paths_visible(model)
    x = torch.ones(1, in_channels, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)                                                   # 1 x K x h x w
    if out.ndim != 4:
        raise ValueError(f"expected a 1 x K x h x w output, got shape {tuple(out.shape)}")
    h, w = out.shape[-2:]
    out[0, :, h // 2, w // 2].sum().backward()
    seen = x.grad[0].abs().sum(dim=0) > 0                          # size x size bool
    rows = torch.nonzero(seen.any(dim=1)).flatten()
    cols = torch.nonzero(seen.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("the centre output does not depend on the input at all")
    touches = (window is None and (rows.min() == 0 or rows.max() == size - 1
                                   or cols.min() == 0 or cols.max() == size - 1))
    if touches:
        raise ValueError(f"the receptive field reaches the border of the {size} x {size} test "
                         f"input, so it may be larger; call again with a larger size=")
    return int(rows.max() - rows.min() + 1)


def _check_patch_net(model: nn.Module) -> None:
    if not hasattr(model, "window"):
        raise TypeError(f"expected a PatchClassifier (a net with a .window), got "
                        f"{type(model).__name__}")


def per_position_macs(model: nn.Module) -> int:
    """MACs to produce one output pixel when every layer's features are computed once per
    image position and shared by all windows that need them (dense evaluation).

    Each Conv2d then costs ``C_in x C_out x k x k`` per position (its kernel is dilated
    instead of applied to a pooled map), and a Linear layer ``in x out`` (it becomes a
    convolution over the last feature map). Pooling is free by this count.

    Example:
        >>> per_position_macs(nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3)))
        324
    """
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += m.in_channels // m.groups * m.out_channels * kh * kw
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


def sliding_window_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs to segment an ``height x width`` image with a patch classifier by running its
    window through the net once per pixel: ``height * width * count_macs(one patch)``.

    Example:
        >>> from unet_teach.patches import PatchClassifier
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))   # 9 -> 7 -> 3
        >>> sliding_window_macs(net, 10, 10) == 100 * (7*7*4*9 + 4*3*3*8 + 8*2)
        True
    """
    _check_patch_net(model)
    one_patch = count_macs(model, (1, model.in_channels, model.window, model.window))
    return height * width * one_patch


def dense_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs to segment an ``height x width`` image when every layer's feature is computed
    once per position (see :func:`per_position_macs`): ``height * width * per_position``.

    The mirrored margin around the image (a window's half-width) is not counted, so this is
    the work the image itself needs.

    Example:
        >>> from unet_teach.patches import PatchClassifier
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))
        >>> dense_macs(net, 10, 10) == 100 * (4*9 + 4*3*3*8 + 8*2)
        True
    """
    _check_patch_net(model)
    return height * width * per_position_macs(model)


def redundancy_factor(model: nn.Module) -> float:
    """How many times more MACs the sliding window spends than dense evaluation (the same
    for every image size): ``count_macs(one patch) / per_position_macs``.

    Example:
        >>> from unet_teach.patches import patch_preset
        >>> round(redundancy_factor(patch_preset("w17")), 2)
        13.17
    """
    _check_patch_net(model)
    return sliding_window_macs(model, 1, 1) / dense_macs(model, 1, 1)
