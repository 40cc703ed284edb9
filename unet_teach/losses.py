"""Scores -> probabilities, labels and loss values: the one place where that happens.

A network in this package returns **raw scores** ``N x K x H x W`` (one map per class, no
activation), and everything downstream starts here:

1. ``probabilities`` - the activation, chosen by the number of maps: one map is a binary
   problem (sigmoid); two or more are mutually exclusive classes (softmax over channels);
2. ``to_labels``     - the decision: ``score > 0`` for one map (probability > 0.5), else the
   arg-max over classes;
3. ``cross_entropy`` - the mean negative log-likelihood per pixel, optionally weighted per
   pixel (the U-Net paper's weight map, see ``weight_map``);
4. ``dice_loss`` and ``dice_ce_loss`` - the overlap loss and nnU-Net's default sum;
5. ``weight_map``    - the paper's w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)).

Keeping the activation out of the network (as MONAI does) means one net serves every loss,
and ``torch.nn.functional``'s log-sum-exp inside the cross-entropy stays numerically stable:
``log(softmax(x))`` computed in two steps underflows for confident scores.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def _check_scores(scores: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 4:
        shape = tuple(scores.shape) if hasattr(scores, "shape") else type(scores).__name__
        raise ValueError(f"expected raw scores N x K x H x W, got {shape}; a single score map "
                         "still needs its channel axis: scores[:, None]")
    if not torch.is_floating_point(scores):
        raise ValueError(f"expected floating-point scores, got {scores.dtype}")


def _check_target(scores: torch.Tensor, target: torch.Tensor) -> None:
    if target.ndim != 3 or target.shape[0] != scores.shape[0] \
            or target.shape[-2:] != scores.shape[-2:]:
        raise ValueError(f"target {tuple(target.shape)} does not fit scores "
                         f"{tuple(scores.shape)}: expected class indices N x H x W of the same "
                         "size (for a valid-padding net, center_crop the mask to the output)")


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from raw scores.

    Shapes: ``N x 1 x H x W`` (sigmoid: the probability of class 1) or ``N x K x H x W``
    (softmax over the K channels, summing to 1 at every pixel).

    Example:
        >>> probabilities(torch.zeros(1, 2, 1, 1)).flatten().tolist()
        [0.5, 0.5]
        >>> probabilities(torch.tensor([[[[0.0]]]])).item()
        0.5
    """
    _check_scores(scores)
    return torch.sigmoid(scores) if scores.shape[1] == 1 else scores.softmax(dim=1)


def to_labels(scores: torch.Tensor) -> torch.Tensor:
    """Labels ``N x H x W`` (int64) from raw scores ``N x K x H x W``: ``score > 0`` for one
    map, arg-max over the classes otherwise.

    Example:
        >>> to_labels(torch.tensor([[[[2.0]], [[-1.0]]]])).tolist()
        [[[0]]]
        >>> to_labels(torch.tensor([[[[0.3, -0.3]]]])).tolist()
        [[[1, 0]]]
    """
    _check_scores(scores)
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).long()
    return scores.argmax(dim=1)


def cross_entropy(scores: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-pixel negative log-likelihood of ``target`` under ``scores``.

    One map (K = 1): binary cross-entropy on the logit; K >= 2: softmax cross-entropy. Both
    are mean negative log-likelihoods per pixel, so their values can be compared directly.

    Args:
        scores: raw scores ``N x K x H x W``.
        target: class indices ``N x H x W`` (0/1 for K = 1).
        weight: optional per-pixel weights ``N x H x W``. The result is
            ``(weight * loss).sum() / (N * H * W)``: the mean over pixels, not divided by
            the weights' sum, so a weight of 10 makes a pixel count ten times.

    Example:
        >>> s, t = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
        >>> round(cross_entropy(s, t).item(), 4)                       # log 2
        0.6931
        >>> round(cross_entropy(s, t, weight=torch.full((1, 2, 2), 2.0)).item(), 4)
        1.3863
    """
    _check_scores(scores)
    _check_target(scores, target)
    if scores.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(scores[:, 0], target.to(scores.dtype),
                                                       reduction="none")     # N x H x W
    else:
        per_pixel = F.cross_entropy(scores, target.long(), reduction="none")  # N x H x W
    if weight is None:
        return per_pixel.mean()
    if weight.shape != per_pixel.shape:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit the target "
                         f"{tuple(per_pixel.shape)}: expected one weight per pixel, N x H x W")
    return (weight.to(per_pixel.dtype) * per_pixel).sum() / per_pixel.numel()


def default_loss(scores: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`unet_teach.train.fit` uses when given no loss: :func:`cross_entropy`
    (weighted when the data set yields weight maps).

    Example:
        >>> round(default_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2)).item(), 4)
        0.6931
    """
    return cross_entropy(scores, target, weight)


def dice_loss(scores: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
              include_background: bool = False) -> torch.Tensor:
    """Soft Dice loss over the batch: 1 - the mean over classes of
    ``(2 sum p_c g_c + s) / (sum p_c + sum g_c + s)``, sums over N, H and W.

    ``p_c`` is the predicted probability of class c (:func:`probabilities`) and ``g_c`` the
    one-hot target. For one score map the classes are ``1 - p`` (background) and ``p``.
    Class 0 is left out unless ``include_background``: on thin membranes the background is
    easy and large, and counting it would hide how the small class does.

    Example:
        >>> t = torch.tensor([[[0, 1], [1, 1]]])
        >>> perfect = torch.stack([1 - t, t], 1).float() * 40 - 20     # confident, right
        >>> round(dice_loss(perfect, t).item(), 4)
        0.0
        >>> round(dice_loss(-perfect, t).item(), 4)                     # confident, wrong
        1.0
    """
    p = probabilities(scores)                                   # N x K x H x W
    _check_target(scores, target)
    if p.shape[1] == 1:
        p = torch.cat([1 - p, p], dim=1)                        # N x 2 x H x W
    g = F.one_hot(target.long(), p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (0, 2, 3)
    overlap = (p * g).sum(dims)                                 # K
    dice = (2 * overlap + smooth) / (p.sum(dims) + g.sum(dims) + smooth)
    return 1 - (dice if include_background else dice[1:]).mean()


def dice_ce_loss(scores: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Dice + cross-entropy, 1 : 1 (nnU-Net's default); ``weight`` goes to the cross-entropy.

    Example:
        >>> t = torch.ones(1, 2, 2, dtype=torch.long)
        >>> round(dice_ce_loss(torch.zeros(1, 2, 2, 2), t).item(), 4)   # (1 - 2/3) + log 2
        1.0265
    """
    return dice_loss(scores, target) + cross_entropy(scores, target, weight)


def weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
               balance: bool = True) -> np.ndarray:
    """The U-Net paper's per-pixel loss weights for touching cells.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``, where d1 and d2 are the
    distances from x to the nearest and the second-nearest cell. The second term is added on
    background pixels only, and only when there are at least two cells: it is large in the
    thin gaps between cells, which is where a net must learn to draw a border. ``w_c``
    balances the classes: (number of pixels) / (2 * number of pixels of x's class), so
    background and cells weigh the same in total; 1 everywhere with ``balance=False``.

    Args:
        instances: int ``H x W``; 0 = background, 1..n = cells (labels need not be
            consecutive).
        w0, sigma: the paper's values are the defaults (10 and 5 px).
        balance: include the class-balancing term ``w_c``.

    Returns:
        float32 ``H x W``.

    Example:
        >>> cells = np.zeros((1, 7), int); cells[0, :3] = 1; cells[0, 4:] = 2
        >>> print(weight_map(cells, balance=False).round(2))       # the gap is column 3
        [[ 1.    1.    1.   10.23  1.    1.    1.  ]]
    """
    instances = np.asarray(instances)
    if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"expected an integer H x W instance map (0 = background, 1..n = "
                         f"cells), got {instances.dtype} {instances.shape}; label a binary "
                         "mask first, e.g. scipy.ndimage.label(mask)[0]")
    cell = instances > 0
    w = np.ones(instances.shape, np.float64)
    if balance:
        n_cell = cell.sum()
        for is_cell, count in ((True, n_cell), (False, cell.size - n_cell)):
            if count:
                w[cell == is_cell] = cell.size / (2 * count)
    ids = np.unique(instances[cell])
    if len(ids) >= 2:
        # Distance from every pixel to each cell; keep the two smallest per pixel.
        d1 = np.full(instances.shape, np.inf)
        d2 = np.full(instances.shape, np.inf)
        for i in ids:
            d = ndimage.distance_transform_edt(instances != i)       # H x W
            d2 = np.where(d < d1, d1, np.minimum(d2, d))
            d1 = np.minimum(d1, d)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
        w += np.where(cell, 0.0, border)
    return w.astype(np.float32)
