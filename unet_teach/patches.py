"""Segmentation by classifying the patch around each pixel (Ciresan et al., 2012).

The idea in three steps:

1. for a pixel, cut out the odd-sized ``window x window`` patch centred on it (mirroring the
   image at its borders, so every pixel has a full patch);
2. a small CNN (conv-pool stacks, then fully connected layers) classifies the patch; its
   answer is the label of the *centre* pixel;
3. slide the window over every pixel to segment the whole image.

Mirroring follows numpy's ``reflect`` mode (= torch's reflect padding): the edge pixel is
not repeated, so row -1 is row 1, row -2 is row 2.

A :class:`PatchClassifier` returns ``N x K x 1 x 1`` scores - a 1 x 1 "segmentation" of the
centre pixel - so :func:`unet_teach.train.fit` trains it unchanged on the
``(patches, labels)`` of :func:`patch_dataset`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi
from torch import nn
from torch.utils.data import TensorDataset

from .losses import probabilities


def _check_window(window: int) -> int:
    if not (isinstance(window, (int, np.integer)) and window >= 1 and window % 2 == 1):
        raise ValueError(f"window must be a positive odd integer (the patch is centred on a "
                         f"pixel), got {window!r}")
    return int(window)


def mirror_pad(image: np.ndarray, radius: int) -> np.ndarray:
    """Pad an ``H x W`` image by ``radius`` pixels on every side by mirroring (numpy
    ``reflect``: the edge pixel is not repeated).

    Example:
        >>> mirror_pad(np.array([[1, 2, 3], [4, 5, 6]]), 1)
        array([[5, 4, 5, 6, 5],
               [2, 1, 2, 3, 2],
               [5, 4, 5, 6, 5],
               [2, 1, 2, 3, 2]])
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected one H x W image, got shape {image.shape}")
    if radius >= min(image.shape):
        raise ValueError(f"a mirror of {radius} px needs an image larger than {radius} px a "
                         f"side, got {image.shape}; use a smaller window")
    return np.pad(image, radius, mode="reflect")


def extract_patch(image: np.ndarray, row: int, col: int, window: int) -> np.ndarray:
    """The ``window x window`` patch centred on pixel ``(row, col)``, borders mirrored.

    Example:
        >>> extract_patch(np.arange(9).reshape(3, 3), 0, 2, 3)   # top-right corner
        array([[4, 5, 4],
               [1, 2, 1],
               [4, 5, 4]])
    """
    return extract_patches(image, window, rows=[row], cols=[col])[0]


def extract_patches(image: np.ndarray, window: int, rows=None, cols=None) -> np.ndarray:
    """The ``window x window`` patch centred on each pixel, borders mirrored.

    Args:
        image: ``H x W`` array.
        window: odd patch size.
        rows, cols: pixel coordinates (equal-length integer arrays); default: every pixel,
            in row-major order.

    Returns:
        ``P x window x window`` array (``P = H*W`` by default), same dtype as ``image``.
        ``patches[p, window // 2, window // 2]`` is the pixel ``(rows[p], cols[p])``.

    Example:
        >>> img = np.arange(16.0).reshape(4, 4)
        >>> extract_patches(img, 3).shape
        (16, 3, 3)
        >>> extract_patches(img, 3, rows=[0], cols=[0])[0]
        array([[5., 4., 5.],
               [1., 0., 1.],
               [5., 4., 5.]])
    """
    window = _check_window(window)
    image = np.asarray(image)
    padded = mirror_pad(image, window // 2)
    # A view of every window (no copy): windows[i, j] is the patch centred on pixel (i, j).
    windows = sliding_window_view(padded, (window, window))          # H x W x w x w
    if rows is None and cols is None:
        return windows.reshape(-1, window, window).copy()
    rows, cols = np.asarray(rows), np.asarray(cols)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same length, got {rows.shape} and {cols.shape}")
    h, w = image.shape
    if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w):
        raise ValueError(f"pixel coordinates must lie inside the {h} x {w} image")
    return windows[rows, cols].copy()


def patch_dataset(images: np.ndarray, masks: np.ndarray, window: int, n: int,
                  seed: int = 0, balanced: bool = False) -> TensorDataset:
    """Sample ``n`` labelled patches for training a patch classifier.

    Every pixel of every image is a candidate: ``N`` images of ``H x W`` offer ``N*H*W``
    labelled windows. With ``balanced=True`` half the samples are membrane (class 1) pixels,
    as Ciresan et al. did to counter the class imbalance.

    Returns:
        A ``TensorDataset`` of ``(patches n x 1 x window x window float32,
        labels n x 1 x 1 int64)``.

    Example:
        >>> from unet_teach.data import synthetic_membranes
        >>> images, masks = synthetic_membranes(2, 32)
        >>> x, y = patch_dataset(images, masks, window=9, n=100)[:]
        >>> tuple(x.shape), tuple(y.shape)
        ((100, 1, 9, 9), (100, 1, 1))
    """
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim != 3 or images.shape != masks.shape:
        raise ValueError(f"images and masks must both be N x H x W, got {images.shape} and {masks.shape}")
    rng = np.random.default_rng(seed)
    if balanced:
        picks = []
        for cls, count in ((1, n // 2), (0, n - n // 2)):
            idx = np.flatnonzero(masks.ravel() == cls)
            if idx.size == 0:
                raise ValueError(f"no pixel of class {cls} to sample from")
            picks.append(rng.choice(idx, count, replace=idx.size < count))
        flat = rng.permutation(np.concatenate(picks))
    else:
        flat = rng.integers(0, masks.size, n)
    k, rows, cols = np.unravel_index(flat, masks.shape)
    patches = np.empty((n, window, window), dtype=np.float32)
    for i in np.unique(k):                      # one image at a time: one mirror-pad each
        sel = k == i
        patches[sel] = extract_patches(images[i], window, rows[sel], cols[sel])
    labels = masks[k, rows, cols]
    return TensorDataset(torch.from_numpy(patches)[:, None],
                         torch.from_numpy(labels.astype(np.int64))[:, None, None])


class PatchClassifier(nn.Module):
    """A Ciresan-style patch classifier: conv -> ReLU -> 2x2 max-pool stages, then fully
    connected layers; it labels the centre pixel of a ``window x window`` patch.

    Args:
        window: odd patch size the net is built for.
        convs: ``(kernel, channels)`` of each conv-pool stage.
        fc: widths of the hidden fully connected layers.
        num_classes: outputs of the last layer.
        in_channels: image channels.
        pools: how many stages, counted from the input, end in the 2x2 max-pool (default:
            all). The others are conv -> ReLU only, so nets with the same convolutions can
            differ in nothing but their pooling.

    Shapes: ``N x in_channels x window x window -> N x num_classes x 1 x 1``.

    Example:
        >>> net = PatchClassifier(window=25, convs=((4, 16), (4, 32)), fc=(64,))
        >>> net(torch.zeros(8, 1, 25, 25)).shape
        torch.Size([8, 2, 1, 1])
        >>> net.feature_size       # 25 -conv4-> 22 -pool-> 11 -conv4-> 8 -pool-> 4
        4
        >>> PatchClassifier(window=25, convs=((4, 16), (4, 32)), pools=1).feature_size
        8
    """

    def __init__(self, window: int = 95, convs=((4, 48), (5, 48), (4, 48), (4, 48)),
                 fc=(200,), num_classes: int = 2, in_channels: int = 1,
                 pools: int | None = None):
        super().__init__()
        self.window = _check_window(window)
        self.in_channels, self.num_classes = in_channels, num_classes
        pools = len(convs) if pools is None else pools
        if not (isinstance(pools, (int, np.integer)) and 0 <= pools <= len(convs)):
            raise ValueError(f"pools counts the stages that end in a max-pool: 0 to "
                             f"{len(convs)} for {len(convs)} stages, got {pools!r}")
        self.pools = int(pools)
        layers: list[nn.Module] = []
        size, ch = window, in_channels
        for i, (kernel, out) in enumerate(convs):
            if size - kernel + 1 < 2:
                raise ValueError(f"window {window} is too small for these stages: a {kernel}x{kernel} "
                                 f"conv meets a {size}x{size} map; use a larger window or fewer stages")
            layers += [nn.Conv2d(ch, out, kernel), nn.ReLU(inplace=True)]
            size, ch = size - kernel + 1, out
            if i < pools:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.feature_size, self.feature_channels = size, ch
        dims = [ch * size * size, *fc]
        head: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            head += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        head.append(nn.Linear(dims[-1], num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.window, self.window):
            raise ValueError(f"expected N x {self.in_channels} x {self.window} x {self.window} "
                             f"patches, got {tuple(x.shape)}; cut them with extract_patches")
        x = self.features(x)                   # N x C x s x s
        return self.classifier(x)[:, :, None, None]   # N x K x 1 x 1


PATCH_PRESETS = {
    # Ciresan et al.'s N4: a 95 px window, four conv-pool stages of 48 maps, fc 200.
    "n4": dict(window=95, convs=((4, 48), (5, 48), (4, 48), (4, 48)), fc=(200,)),
    # Smaller windows for CPU budgets (same design, fewer/narrower stages).
    "w65": dict(window=65, convs=((4, 32), (5, 32), (4, 32)), fc=(128,)),
    "w33": dict(window=33, convs=((4, 24), (4, 32)), fc=(96,)),
    "w17": dict(window=17, convs=((4, 16), (3, 32)), fc=(64,)),
}


def patch_preset(name: str, **overrides) -> PatchClassifier:
    """A named patch classifier: ``"n4"`` (95 px, Ciresan's N4), ``"w65"``, ``"w33"``, ``"w17"``.

    Example:
        >>> patch_preset("n4").feature_size        # 95 -> 92 -> 46 -> 42 -> 21 -> 18 -> 9 -> 6 -> 3
        3
    """
    if name not in PATCH_PRESETS:
        raise ValueError(f"unknown patch preset {name!r}; choose one of {sorted(PATCH_PRESETS)}")
    return PatchClassifier(**{**PATCH_PRESETS[name], **overrides})


@torch.no_grad()
def sliding_window_scores(model: PatchClassifier, image: np.ndarray, rows=None, cols=None,
                          batch_size: int = 512, device=None) -> np.ndarray:
    """Class probabilities of the given pixels (default: all), one patch per pixel.

    This is the slow, literal method: every pixel's patch goes through the whole network on
    its own, although neighbouring patches overlap almost entirely.

    Returns:
        ``P x K`` float32 probabilities (softmax), in the order of ``rows, cols`` (or
        row-major over the image).

    Example:
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))
        >>> sliding_window_scores(net, np.zeros((6, 6), np.float32)).shape
        (36, 2)
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected one H x W image, got shape {image.shape}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if rows is None:
        rows, cols = np.divmod(np.arange(image.size), image.shape[1])
    rows, cols = np.asarray(rows), np.asarray(cols)
    was_training = model.training
    model.eval()
    out = np.empty((len(rows), model.num_classes), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        sl = slice(start, start + batch_size)
        patches = extract_patches(image, model.window, rows[sl], cols[sl])   # B x w x w
        x = torch.from_numpy(patches)[:, None].to(device)                     # B x 1 x w x w
        out[sl] = probabilities(model(x))[:, :, 0, 0].cpu().numpy()        # B x K
    model.train(was_training)
    return out


def sliding_window_segment(model: PatchClassifier, image: np.ndarray, batch_size: int = 512,
                           device=None) -> tuple[np.ndarray, np.ndarray]:
    """Segment a whole ``H x W`` image by classifying the patch around every pixel.

    Returns:
        ``(labels H x W int64, probabilities K x H x W float32)``.

    Example:
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))
        >>> labels, probs = sliding_window_segment(net, np.zeros((6, 5), np.float32))
        >>> labels.shape, probs.shape
        ((6, 5), (2, 6, 5))
    """
    image = np.asarray(image, dtype=np.float32)
    probs = sliding_window_scores(model, image, batch_size=batch_size, device=device)  # HW x K
    probs = probs.T.reshape(-1, *image.shape)                                         # K x H x W
    return probs.argmax(axis=0).astype(np.int64), probs


# ----------------------------------------------------------------------------- measuring


def sample_pixels(shape: tuple[int, int], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct pixel coordinates drawn uniformly from an ``H x W`` image.

    Returns:
        ``(rows, cols)``, two int arrays of length ``min(n, H*W)``.

    Example:
        >>> rows, cols = sample_pixels((4, 5), 6, seed=0)
        >>> len(rows), bool(rows.max() < 4 and cols.max() < 5)
        (6, True)
    """
    h, w = shape
    flat = np.random.default_rng(seed).choice(h * w, size=min(n, h * w), replace=False)
    return np.divmod(flat, w)


def time_sliding_window(model: PatchClassifier, image: np.ndarray, n_pixels: int | None = None,
                        seed: int = 0, batch_size: int = 512, device=None) -> dict[str, float]:
    """Time sliding-window segmentation of ``image``: all pixels, or a random sample of
    ``n_pixels`` extrapolated to the whole image (the cost per pixel does not depend on
    where the pixel is).

    Returns:
        ``{"pixels_timed", "seconds_timed", "pixels_per_second", "seconds_per_image",
        "extrapolated"}`` (``extrapolated`` is 1.0 when only a sample was timed).

    Example:
        >>> net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,))
        >>> t = time_sliding_window(net, np.zeros((20, 20), np.float32), n_pixels=50)
        >>> t["pixels_timed"], t["extrapolated"]
        (50, 1.0)
    """
    image = np.asarray(image, dtype=np.float32)
    total = image.size
    if n_pixels is None or n_pixels >= total:
        rows, cols = np.divmod(np.arange(total), image.shape[1])
    else:
        rows, cols = sample_pixels(image.shape, n_pixels, seed)
    sliding_window_scores(model, image, rows[:batch_size], cols[:batch_size],
                          batch_size=batch_size, device=device)            # warm-up
    if device is not None and torch.device(device).type == "cuda" or (
            device is None and next(model.parameters()).is_cuda):
        torch.cuda.synchronize()
    start = time.perf_counter()
    sliding_window_scores(model, image, rows, cols, batch_size=batch_size, device=device)
    seconds = time.perf_counter() - start      # the scores come back to the CPU: synchronised
    per_pixel = seconds / len(rows)
    return {"pixels_timed": len(rows), "seconds_timed": seconds,
            "pixels_per_second": 1.0 / per_pixel, "seconds_per_image": per_pixel * total,
            "extrapolated": float(len(rows) < total)}


def window_overlap(window: int, dy: int, dx: int = 0) -> float:
    """Fraction of a ``window x window`` patch shared with the patch whose centre is
    ``(dy, dx)`` pixels away: ``(w - |dy|) (w - |dx|) / w^2`` (0 when they do not meet).
    For horizontal neighbours (``dy=1``) it is ``(w - 1) / w``.

    Example:
        >>> window_overlap(65, 1)                    # neighbours share 64 of 65 columns
        0.9846153846153847
        >>> window_overlap(5, 5), window_overlap(5, 2, 2)
        (0.0, 0.36)
    """
    window = _check_window(window)
    shared = max(window - abs(dy), 0) * max(window - abs(dx), 0)
    return shared / window ** 2


def distance_to_boundary(mask: np.ndarray) -> np.ndarray:
    """For every pixel of a label map, the Euclidean distance (in pixels) to the nearest
    pixel of another class; pixels touching another class get 1.

    Args:
        mask: ``H x W`` or ``N x H x W`` class indices.

    Returns:
        float64 array of the same shape (``inf`` in an image holding a single class).

    Example:
        >>> distance_to_boundary(np.array([[0, 0, 0, 1, 1]]))
        array([[3., 2., 1., 1., 2.]])
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return np.stack([distance_to_boundary(m) for m in mask])
    if mask.ndim != 2:
        raise ValueError(f"expected an H x W or N x H x W label map, got shape {mask.shape}")
    out = np.full(mask.shape, np.inf)
    for cls in np.unique(mask):
        inside = mask == cls
        if inside.all():
            continue
        # the EDT gives, for each True pixel, the distance to the nearest False pixel
        out[inside] = ndi.distance_transform_edt(inside)[inside]
    return out


def near_boundary(mask: np.ndarray, distance: float = 2) -> np.ndarray:
    """True for pixels within ``distance`` px of a pixel of another class (on either side
    of a membrane/interior boundary). Same shape as ``mask``, bool.

    Example:
        >>> near_boundary(np.array([[0, 0, 0, 1, 1]]), distance=1)
        array([[False, False,  True,  True, False]])
    """
    return distance_to_boundary(mask) <= distance
