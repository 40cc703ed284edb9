"""Inference: run a trained net over whole images and turn its scores into labels.

(The overlap-tile strategy of the U-Net paper, for images larger than memory or of sizes the
net cannot take, joins this module in the U-Net chapter.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .train import scores_to_labels


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
        labels.append(scores_to_labels(out).cpu())
        probs.append((torch.sigmoid(out) if out.shape[1] == 1 else out.softmax(dim=1)).cpu())
    model.train(was_training)
    return torch.cat(labels).numpy(), torch.cat(probs).numpy()
