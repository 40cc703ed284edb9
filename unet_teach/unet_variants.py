"""U-Net ablations the book trains next to the real thing.

:class:`NoSkipUNet` is a minimal subclass of :class:`~unet_teach.models.UNet`: the same
encoder, bottleneck, up-sampling and head, but the decoder blocks receive no encoder maps.
Each ``Up`` is rebuilt with ``skip_ch=0`` and is handed a zero-channel slice of the encoder
map, so the crop and concatenation still run (and the valid-padding sizes stay the same)
while carrying nothing. The decoder's first convolutions therefore have fewer input channels:
the no-skip net has fewer parameters, which :func:`~unet_teach.models.count_parameters`
reports.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import UNet, Up


class NoSkipUNet(UNet):
    """A U-Net without skip concatenations (an encoder-decoder); takes ``UNet``'s arguments.

    Shapes: as :class:`~unet_teach.models.UNet` with the same arguments.

    Example:
        >>> from unet_teach.models import count_parameters
        >>> net = NoSkipUNet(1, 2, depth=2, base_width=8)
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
        >>> count_parameters(net) < count_parameters(UNet(1, 2, depth=2, base_width=8))
        True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for i, up in enumerate(self.ups):
            first = up.conv[0]                       # 3x3 conv over [skip, upsampled]
            up_ch, out_ch = up.up.out_channels, first.out_channels
            self.ups[i] = self._rebuilt(up, up_ch, out_ch)

    def _rebuilt(self, old: Up, up_ch: int, out_ch: int) -> Up:
        """An ``Up`` like ``old`` whose DoubleConv expects no skip channels."""
        conv = old.conv
        norm = next((("batch" if isinstance(m, nn.BatchNorm2d) else "instance")
                     for m in conv if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))), None)
        drops = [m.p for m in conv if isinstance(m, nn.Dropout)]
        act = next(m for m in conv if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
        activation = "leaky_relu" if isinstance(act, nn.LeakyReLU) else "relu"
        slope = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.01
        padding = "same" if conv[0].padding != (0, 0) else "valid"
        return Up(old.up.in_channels, 0, up_ch, out_ch, old.mode, old.up.bias is not None,
                  padding, norm, tuple(drops) if len(drops) == 2 else (0.0, 0.0), activation,
                  slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        sizes = []
        for block, down in zip(self.encoder, self.downs):
            x = block(x)
            sizes.append(x[:, :0])    # N x 0 x H_i x W_i: the size to crop to, no content
            x = down(x)
        x = self.bottleneck(x)
        for up, empty in zip(self.ups, reversed(sizes)):
            x = up(x, empty)          # concatenates nothing
        x = self.shuffle(self.head(x))
        if self.final_activation == "sigmoid":
            x = torch.sigmoid(x)
        elif self.final_activation == "softmax":
            x = torch.softmax(x, dim=1)
        return x
