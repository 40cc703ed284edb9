"""How good is a segmentation? Pixel accuracy, Dice and IoU, per class and averaged.

All functions take two label maps of the same shape - ``pred`` and ``target``, integer
class indices, numpy arrays or torch tensors, any number of dimensions (``H x W`` or
``N x H x W``) - and count over every pixel.

Everything comes from the confusion matrix: for class ``c``,
``TP = pred == c and target == c``, ``FP = pred == c and target != c``,
``FN = pred != c and target == c``. Then

* pixel accuracy = correct pixels / all pixels (pixel error = 1 - accuracy);
* Dice(c) = 2 TP / (2 TP + FP + FN)  (the F1 score of class c);
* IoU(c)  = TP / (TP + FP + FN)      (the Jaccard index; IoU = Dice / (2 - Dice)).

A class absent from both maps has no defined Dice or IoU: it is reported as ``nan`` and
left out of the means.

Pixel scores cannot see what matters in a membrane map: a one-pixel gap in a membrane costs
one pixel, yet merges two cells. The region scores compare *cells* instead - the
4-connected components of the label ``regions`` (0, the cell interior, in this package's
masks where 1 = membrane; 255 in the ISBI 2012 label files, whose cells are white):

* ``rand_error`` = 1 - the adapted Rand F-score of pixel pairs (Arganda-Carreras et al. 2015);
* ``variation_of_information`` = (split, merge), conditional entropies in bits;
* ``warping_error`` = the pixels still wrong once the truth is warped onto the prediction
  without changing its topology (Jain et al. 2010): boundary shifts cost nothing.

``threshold_sweep`` thresholds a membrane probability map at many values and scores each.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage


def _numpy(x):
    """``x`` itself, or a torch tensor's values as numpy (detached, on the CPU). torch is
    not imported here: a tensor exists only where torch already is, and the exercises that
    score plain arrays should not pay for loading it."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def _as_labels(x, name: str) -> np.ndarray:
    x = _numpy(x)
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {x.dtype}; "
                        "turn scores into labels first, e.g. scores.argmax(dim=1) or "
                        "(probabilities > 0.5)")
    if x.size and x.min() < 0:
        raise ValueError(f"{name} holds negative class indices (min {x.min()})")
    return x


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}; crop the target to the prediction (a valid-padding "
                         "U-Net's output is smaller than its input)")
    return pred, target


def confusion_matrix(pred, target, num_classes: int | None = None) -> np.ndarray:
    """``num_classes x num_classes`` counts: row = true class, column = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([[1, 1],
               [0, 2]])
    """
    pred, target = _pair(pred, target)
    k = num_classes or int(max(pred.max(initial=0), target.max(initial=0)) + 1)
    if pred.size and max(pred.max(), target.max()) >= k:
        raise ValueError(f"found class index {max(pred.max(), target.max())} >= num_classes={k}")
    counts = np.bincount(target.ravel() * k + pred.ravel(), minlength=k * k)
    return counts.reshape(k, k)


def pixel_accuracy(pred, target) -> float:
    """Fraction of pixels whose predicted class is the true class.

    Example:
        >>> pixel_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.75
    """
    pred, target = _pair(pred, target)
    return float((pred == target).mean())


def pixel_error(pred, target) -> float:
    """``1 - pixel_accuracy``: the fraction of misclassified pixels.

    Not the ISBI 2012 challenge's "pixel error": the challenge defined it through an F-score
    of pixel similarity - 1 minus the maximal F-score of pixel classification over thresholds
    (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142) - so the numbers here are not the
    challenge's.

    Example:
        >>> pixel_error(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.25
    """
    return 1.0 - pixel_accuracy(pred, target)


def _per_class(pred, target, num_classes, dice: bool) -> np.ndarray:
    cm = confusion_matrix(pred, target, num_classes)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp          # predicted c, truly something else
    fn = cm.sum(axis=1) - tp          # truly c, predicted something else
    num = 2 * tp if dice else tp
    den = 2 * tp + fp + fn if dice else tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def dice_per_class(pred, target, num_classes: int | None = None) -> np.ndarray:
    """Dice coefficient of every class, ``num_classes`` floats (``nan`` for absent classes).

    Example:
        >>> dice_per_class(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([0.66666667, 0.8       ])
    """
    return _per_class(pred, target, num_classes, dice=True)


def iou_per_class(pred, target, num_classes: int | None = None) -> np.ndarray:
    """Intersection over union of every class (``nan`` for absent classes).

    Example:
        >>> iou_per_class(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        array([0.5       , 0.66666667])
    """
    return _per_class(pred, target, num_classes, dice=False)


def _classes_needed(pred, target, cls: int) -> int:
    """Enough classes for ``cls`` and every label in either map (at least two)."""
    pred, target = _pair(pred, target)
    return max(cls + 1, 2, int(max(pred.max(initial=0), target.max(initial=0))) + 1)


def dice(pred, target, cls: int = 1) -> float:
    """Dice of one class (default 1, the foreground: membrane or nucleus).

    Example:
        >>> dice(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        0.8
    """
    return float(dice_per_class(pred, target, num_classes=_classes_needed(pred, target, cls))[cls])


def iou(pred, target, cls: int = 1) -> float:
    """IoU of one class (default 1).

    Example:
        >>> round(iou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.6667
    """
    return float(iou_per_class(pred, target, num_classes=_classes_needed(pred, target, cls))[cls])


def mean_dice(pred, target, num_classes: int | None = None) -> float:
    """Dice averaged over the classes present in ``pred`` or ``target``.

    Example:
        >>> round(mean_dice(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.7333
    """
    return float(np.nanmean(dice_per_class(pred, target, num_classes)))


def mean_iou(pred, target, num_classes: int | None = None) -> float:
    """IoU averaged over the classes present (the usual "mIoU").

    Example:
        >>> round(mean_iou(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1])), 4)
        0.5833
    """
    return float(np.nanmean(iou_per_class(pred, target, num_classes)))


# --------------------------------------------------------------------------- cells, not pixels

# Cells touching only at a corner are two cells: a membrane one pixel wide along a diagonal
# leaves the cells on either side touching at corners, and must still separate them.
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _components(labels: np.ndarray, regions: int) -> np.ndarray:
    """The 4-connected components of ``labels == regions`` numbered 1..n; every other pixel 0."""
    return ndimage.label(labels == regions, structure=_FOUR_CONNECTED)[0]


def _image_stack(x: np.ndarray, name: str) -> np.ndarray:
    """``H x W`` or ``N x H x W`` as ``N x H x W`` (components must not join across images)."""
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be H x W or N x H x W, got shape {x.shape}; region "
                         "scores are 2-D: drop the channel axis, e.g. labels[:, 0]")
    return x.reshape((-1,) + x.shape[-2:])


def _check_regions_present(target: np.ndarray, regions: int) -> None:
    for i, t in enumerate(target):
        if not np.any(t == regions):
            raise ValueError(f"target image {i} has no pixel labelled regions={regions}, so it "
                             "has no cells to compare; pass the label of the cell interiors: "
                             "regions=0 for this package's masks (1 = membrane), regions=255 "
                             "for the ISBI 2012 label files")


def _region_pair(pred, target, regions: int) -> tuple[list, list]:
    """Component maps of ``pred`` and ``target``, one pair per image."""
    pred, target = _pair(pred, target)
    pred, target = _image_stack(pred, "pred"), _image_stack(target, "target")
    _check_regions_present(target, regions)
    return ([_components(p, regions) for p in pred], [_components(t, regions) for t in target])


def _rand_error(pred_cells: np.ndarray, target_cells: np.ndarray) -> float:
    # ignore_labels applies to the target only: its label 0 (membrane, no cell identity) drops
    # out; the prediction's 0 stays an ordinary label - all its non-region pixels, one segment.
    # Only the error is used: skimage's precision and recall follow its own naming.
    with np.errstate(divide="ignore", invalid="ignore"):   # no pixel pairs at all -> nan
        from skimage.metrics import adapted_rand_error    # skimage loads slowly: on use
        error, _, _ = adapted_rand_error(target_cells, pred_cells, ignore_labels=(0,))
    return float(error)


def _vi(pred_cells: np.ndarray, target_cells: np.ndarray) -> tuple[float, float]:
    # skimage returns (H(image1 | image0), H(image0 | image1)) with image0 the truth:
    # (split, merge). abs() turns the -0.0 of a perfect score into 0.0.
    from skimage.metrics import variation_of_information as skimage_vi
    split, merge = skimage_vi(image0=target_cells, image1=pred_cells, ignore_labels=(0,))
    return abs(float(split)), abs(float(merge))


def rand_error(pred, target, regions: int = 0) -> float:
    """1 - the adapted Rand F-score between the cells of ``pred`` and of ``target``.

    The cells are the 4-connected components of ``target == regions`` and of
    ``pred == regions`` (``regions`` = 0 for this package's masks, where 1 = membrane; 255 for
    the ISBI 2012 label files). Take every pair of pixels inside target cells and ask "same
    cell?" in the target and in the prediction; the F-score of the prediction's answers is
    ``2 * pairs same in both / (pairs same in target + pairs same in pred)``. A cell cut in two
    (a split) loses the pairs across the cut, two cells joined (a merge) adds false pairs:
    both raise the error, from 0 (the same partition) towards 1.

    Target pixels of any other label are ignored: a membrane pixel belongs to no cell, so it
    has no pair to get right. The prediction's non-region pixels are *not* ignored: they are
    one more segment (label 0 to scikit-image, which ignores labels of the truth only). So
    target-cell pixels that the prediction calls membrane count as one segment spanning all
    the cells they lie in - a membrane predicted thicker than the truth costs a little.

    ``pred``, ``target``: integer labels, ``H x W`` or ``N x H x W`` (a stack is scored image by
    image and averaged). Uses ``skimage.metrics.adapted_rand_error``.

    Example:
        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)   # two cells, a membrane between
        >>> rand_error(target, target)
        0.0
        >>> rand_error(np.zeros_like(target), target)   # membrane missed: the cells merge
        0.375
    """
    pred_cells, target_cells = _region_pair(pred, target, regions)
    return float(np.mean([_rand_error(p, t) for p, t in zip(pred_cells, target_cells)]))


def variation_of_information(pred, target, regions: int = 0) -> tuple[float, float]:
    """``(split, merge)``: the variation of information between the cells, in bits.

    Same cells and ignored pixels as :func:`rand_error`. ``split`` = H(pred | target), the
    over-segmentation: how uncertain the predicted segment is once you know the true cell
    (0 when no target cell is cut). ``merge`` = H(target | pred), the under-segmentation
    (0 when no predicted segment spans two cells). VI = split + merge. Cutting a cell in two
    halves costs its share of pixels x 1 bit of split; joining two equal cells, 1 bit of merge.

    ``pred``, ``target``: integer labels, ``H x W`` or ``N x H x W`` (averaged over images).
    Uses ``skimage.metrics.variation_of_information(image0=target, image1=pred)``.

    Example:
        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)   # two cells, a membrane between
        >>> variation_of_information(target, target)
        (0.0, 0.0)
        >>> split, merge = variation_of_information(np.zeros_like(target), target)  # a merge
        >>> split, round(merge, 6)                     # two equal cells joined: 1 bit
        (0.0, 1.0)
    """
    pred_cells, target_cells = _region_pair(pred, target, regions)
    split, merge = np.mean([_vi(p, t) for p, t in zip(pred_cells, target_cells)], axis=0)
    return float(split), float(merge)


# --------------------------------------------------------------------------- topology: warping

# A pixel is *simple* when flipping it changes no topology: no cell is split, merged, created
# or deleted, no hole is made or filled. Whether it is depends only on its 8 neighbours, so we
# decide it once for each of the 2**8 neighbourhoods and look the answer up.
#
# Index of a neighbourhood: the sum of 2**k over the neighbours k that are cell (object)
# pixels, the neighbours numbered row by row around the centre:
#     0 1 2
#     3 . 4
#     5 6 7
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


def _simple_point_table() -> np.ndarray:
    """256 booleans: is the centre simple, cells 4-connected and membrane 8-connected?

    The test of Bertrand & Malandain (1994) / Kong & Rosenfeld (1989), which looks at the
    centre's 8 neighbours only: the cell neighbours that are 4-adjacent to the centre must lie
    in exactly one 4-connected piece (T4 = 1: flipping the centre neither cuts a cell nor
    joins two, nor makes or removes a one-pixel cell), and the membrane neighbours in exactly
    one 8-connected piece (T8 = 1: no hole made or filled). The test does not ask what the
    centre is, so one table serves flips both ways.
    """
    table = np.zeros(256, dtype=bool)
    four = [(0, 1), (1, 0), (1, 2), (2, 1)]             # N, W, E, S in the 3 x 3 patch
    for index in range(256):
        cell = np.zeros((3, 3), dtype=bool)
        for k, (dy, dx) in enumerate(_NEIGHBOURS):
            cell[1 + dy, 1 + dx] = bool(index >> k & 1)
        membrane = ~cell
        membrane[1, 1] = False                          # the centre itself is left out
        pieces, _ = ndimage.label(cell, structure=_FOUR_CONNECTED)
        t4 = len({pieces[y, x] for y, x in four if cell[y, x]})
        t8 = ndimage.label(membrane, structure=_EIGHT_CONNECTED)[1]
        table[index] = t4 == 1 and t8 == 1
    return table


_SIMPLE = _simple_point_table()


def _binary_image(x, name: str) -> np.ndarray:
    x = _numpy(x)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be one H x W image, got shape {x.shape}; for a stack "
                         "call warp_toward once per image")
    if x.dtype != bool and not np.isin(x, (0, 1)).all():
        raise ValueError(f"{name} must be binary (True/1 = cell), found values "
                         f"{np.unique(x)[:5].tolist()}; pass labels == regions, e.g. "
                         "mask == 0 for this package's masks")
    return x.astype(bool)


def warp_toward(target, pred) -> np.ndarray:
    """The truth ``target``, warped toward ``pred`` by flipping simple pixels only.

    ``target``, ``pred``: binary ``H x W`` maps (True or 1 = cell, the object whose topology
    is kept). Returns a boolean map with the topology of ``target`` - the same cells, the same
    holes - that agrees with ``pred`` wherever a flip could make it agree. The pixels where it
    still differs from ``pred`` are the topological errors: :func:`warping_error` counts them,
    and a chapter can draw them (``warp_toward(t, p) != p``).

    How: every pixel where the warped truth differs from ``pred`` is a candidate; a simple
    candidate is flipped (to ``pred``'s value), a non-simple one waits - a neighbour's flip may
    make it simple later. A flip never creates a new disagreement, so the candidates only
    shrink. Two flips side by side can change the topology even when each alone would not, so
    the candidates are flipped in 9 phases, by (row mod 3, column mod 3): within a phase no
    two candidates share a neighbour, so their flips are independent.

    The order is fixed: first the cells shrink (the candidates ``pred`` calls membrane), phase
    (0, 0), (0, 1), ..., (2, 2), again and again until none flips; then they grow (the
    candidates ``pred`` calls cell) the same way; and both again until neither flips. The
    order matters - a flip can leave a later candidate stuck that another order would have
    flipped - and this one leaves fewer stuck than mixing the two kinds: about a tenth as
    many on cells whose boundary pixels were flipped at random (simple flips only, so the
    true error is 0). Like any order, it gives an upper bound on the smallest count over all
    warpings.

    Cells are 4-connected, membrane (the rest) 8-connected, as in :func:`rand_error`. Pixels
    outside the image count as membrane: a cell can be dented from the image border, and two
    membranes that both reach the border are joined through the outside.

    Example:
        A one-pixel gap in a membrane line joins two cells; the warped truth keeps the
        line closed, so the gap is the one pixel left over.

        >>> cells = np.array([[1, 1, 0, 1, 1]] * 3)     # 1 = cell, 0 = membrane
        >>> gap = cells.copy(); gap[1, 2] = 1
        >>> (warp_toward(cells, gap) != gap).astype(int)
        array([[0, 0, 0, 0, 0],
               [0, 0, 1, 0, 0],
               [0, 0, 0, 0, 0]])
    """
    target, pred = _binary_image(target, "target"), _binary_image(pred, "pred")
    if target.shape != pred.shape:
        raise ValueError(f"target and pred must have the same shape, got {target.shape} and "
                         f"{pred.shape}")
    height, width = target.shape
    # A frame of membrane around the image makes "outside is membrane" true and lets every
    # pixel read 8 neighbours without a bounds check; flat indices keep the gathers cheap.
    warped = np.zeros((height + 2, width + 2), dtype=np.uint8)
    warped[1:-1, 1:-1] = target
    flat = warped.reshape(-1)                               # a view: flips land in `warped`
    offsets = [dy * (width + 2) + dx for dy, dx in _NEIGHBOURS]
    framed_pred = np.pad(pred, 1).reshape(-1)
    shrink = np.flatnonzero(flat > framed_pred)             # truth cell, pred membrane
    grow = np.flatnonzero(flat < framed_pred)               # truth membrane, pred cell
    while True:
        left = shrink.size + grow.size
        shrink = _flip_simple(flat, shrink, offsets, width + 2)
        grow = _flip_simple(flat, grow, offsets, width + 2)
        if shrink.size + grow.size == left:
            return warped[1:-1, 1:-1].astype(bool)


def _flip_simple(flat: np.ndarray, candidates: np.ndarray, offsets: list[int],
                 row: int) -> np.ndarray:
    """Flip the simple ``candidates`` (indices into ``flat``, a framed image ``row`` pixels
    wide), phase by phase, until none of those left is simple; return those left."""
    phase = ((candidates // row - 1) % 3) * 3 + (candidates % row - 1) % 3   # image (y, x)
    while True:
        left = candidates.size
        for p in range(9):
            pick = np.flatnonzero(phase == p)
            at = candidates[pick]
            index = np.zeros(at.size, dtype=np.intp)
            for k, offset in enumerate(offsets):
                index |= flat[at + offset].astype(np.intp) << k
            simple = _SIMPLE[index]
            if simple.any():
                flat[at[simple]] ^= 1                           # now agrees with pred
                keep = np.ones(candidates.size, dtype=bool)
                keep[pick[simple]] = False
                candidates, phase = candidates[keep], phase[keep]
        if candidates.size == left:
            return candidates


def warping_error(pred, target, regions: int = 0) -> float:
    """The fraction of pixels that still differ after warping the truth onto the prediction.

    The warping error of Jain et al. (CVPR 2010, "Boundary learning by optimization with
    topological constraints"), one of the ISBI 2012 challenge's scores and the one the U-Net
    paper's table is sorted by. Pixel error cannot tell a harmless boundary shift from a
    one-pixel gap that merges two cells: both cost about as many pixels. The warping error
    forgives the shifts and counts only topology changes. It warps the truth toward the
    prediction by flipping *simple* pixels - those whose flip splits, merges, creates or
    deletes no cell and makes or fills no hole (:func:`warp_toward`) - and counts the pixels
    where the two still differ, divided by all pixels. A boundary moved by a few pixels costs
    0; a one-pixel gap that merges two cells costs 1 pixel; a cut across a cell costs the
    pixels of its narrowest crossing (1 for a one-pixel line); a membrane speck inside a cell
    (a new hole) or a new small cell costs all its pixels, while a cell or hole the prediction
    misses costs 1 (the truth's shrinks to a pixel first).

    The cells are the pixels ``== regions`` (0 for this package's masks, where 1 = membrane;
    255 for the ISBI 2012 label files), 4-connected; everything else is membrane,
    8-connected - the same cells as :func:`rand_error`. Pixels outside the image count as
    membrane. ``pred``, ``target``: integer labels, ``H x W`` or ``N x H x W`` (a stack is
    scored image by image and averaged), numpy or torch.

    The smallest possible count runs over all orders of flips; we take one fixed order
    (cells shrink before they grow, in the 9 phases of :func:`warp_toward`), so the result is
    an upper bound on that minimum, and the same on every run. With a probability map the
    most confident pixels could go first (the challenge's script does); we have binary
    predictions only.

    Departs from the challenge's script (``WarpingError.java`` in Fiji's Trainable Weka
    Segmentation, by I. Arganda-Carreras): it thresholds a probability map (its
    ``binaryThreshold``), sorts the disagreeing pixels by ``|probability - threshold|``, most
    confident first, and flips them one at a time in that order, each flip seen by the next
    test, shrinking and growing mixed; ties (all of them, for a binary map) keep its
    column-by-column scan order. Its simplicity test (Bertrand & Malandain's 3-D test run on
    the 3 x 3 patch, cells 6- i.e. 4-connected, background 26- i.e. 8-connected) marks the
    same neighbourhoods simple as our table, and it too pads the image with background. It
    can restrict flips to a mask (geometric constraints; none by default). Its plain score
    (``getMetricValue(threshold)``) counts as we do: disagreeing pixels / all pixels,
    averaged over slices. The challenge's leaderboard used a variant, the "minimum splits and
    mergers warping error" (http://brainiac2.mit.edu/isbi_challenge/evaluation): the pixels
    left are classified (split, merger, hole or object added or deleted), only splits and
    mergers count, and the lowest value over thresholds is reported (0.0 to 0.9 in steps of
    0.1 in Fiji's documented example). So the numbers here are not the challenge's, and which
    variant gave the U-Net paper's 0.000353 we could not check.

    Example:
        Two cells, a membrane line between them.

        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)     # 1 = membrane
        >>> warping_error(target, target)
        0.0
        >>> shifted = np.array([[0, 1, 0, 0, 0]] * 3)    # the line moved: 6 pixels differ
        >>> warping_error(shifted, target), pixel_error(shifted, target)
        (0.0, 0.4)
        >>> gap = target.copy(); gap[1, 2] = 0            # one gap merges the cells
        >>> warping_error(gap, target) * gap.size         # costs one pixel
        1.0
    """
    pred, target = _pair(pred, target)
    pred, target = _image_stack(pred, "pred"), _image_stack(target, "target")
    _check_regions_present(target, regions)
    errors = [np.count_nonzero(warp_toward(t == regions, p == regions) != (p == regions))
              / p.size for p, t in zip(pred, target)]
    return float(np.mean(errors))


def segmentation_report(pred, target, num_classes: int = 2,
                        regions: int | None = None) -> dict[str, float]:
    """All the numbers above in one dict (for tables and training histories).

    With ``regions`` (the label of the cells, see :func:`rand_error`) it also holds
    ``rand_error``, ``vi_split`` and ``vi_merge``.

    Example:
        >>> r = segmentation_report(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
        >>> sorted(r)
        ['accuracy', 'dice', 'dice_0', 'dice_1', 'iou', 'iou_0', 'iou_1', 'mean_dice', 'mean_iou']
        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)
        >>> segmentation_report(target, target, regions=0)["rand_error"]
        0.0
    """
    d = dice_per_class(pred, target, num_classes)
    j = iou_per_class(pred, target, num_classes)
    report = {"accuracy": pixel_accuracy(pred, target),
              "dice": float(d[1]) if num_classes > 1 else float(d[0]),
              "iou": float(j[1]) if num_classes > 1 else float(j[0]),
              "mean_dice": float(np.nanmean(d)), "mean_iou": float(np.nanmean(j))}
    for c in range(num_classes):
        report[f"dice_{c}"], report[f"iou_{c}"] = float(d[c]), float(j[c])
    if regions is not None:
        report["rand_error"] = rand_error(pred, target, regions)
        report["vi_split"], report["vi_merge"] = variation_of_information(pred, target, regions)
    return report


# --------------------------------------------------------------------------- choosing a threshold

SWEEP_METRICS = ("pixel_error", "rand_error", "vi_split", "vi_merge", "vi")


def _as_probabilities(x) -> np.ndarray:
    x = _numpy(x)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"probabilities must be H x W or N x H x W, got shape {x.shape}; pass "
                         "the probability of class 1 only, e.g. probs[:, 1]")
    if np.isnan(x).any():
        raise ValueError("probabilities must lie in [0, 1], found nan; check the network's "
                         "output (a diverged training gives nan scores)")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], found min {x.min():.3g}, max "
                         f"{x.max():.3g}; raw scores? apply torch.sigmoid(logits) or "
                         "torch.softmax(logits, dim=1)[:, 1] first")
    return x


def threshold_sweep(probabilities, target, thresholds=None, regions: int = 0,
                    metrics=("pixel_error", "rand_error")) -> dict:
    """Score the prediction ``probabilities > t`` for every threshold ``t``.

    ``probabilities``: the probability of class 1 (membrane, or the foreground), floats in
    [0, 1], ``H x W`` or ``N x H x W``. The prediction at ``t`` is 1 where
    ``probabilities > t``, else 0.

    ``target``: labels of the same shape in this package's convention, 0 and 1 only
    (1 = membrane, 0 = cell interior). Convert an ISBI 2012 label file (255 = cell,
    0 = membrane) first: ``target = (label == 0)``.

    ``regions``: which of the two labels forms the cells for the region scores - 0 for
    membrane maps (cells are the pixels *below* the threshold), 1 where the foreground class
    is the object (nuclei).

    ``metrics``: names from ``SWEEP_METRICS`` - ``pixel_error``, ``rand_error``, ``vi_split``,
    ``vi_merge`` and ``vi`` (= split + merge). All are errors: lower is better.

    ``thresholds``: default 0.05, 0.10, ..., 0.95.

    Returns a dict: ``"thresholds"`` (the array of ``T`` thresholds), one array of ``T`` values
    per metric (the mean over the images), and ``"best"``: for each metric the threshold
    with the lowest value (the lowest such threshold on a tie).

    Example - a membrane with one weak pixel, and two faint specks inside the cells:
        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)        # 1 = membrane between two cells
        >>> probabilities = np.where(target == 1, 0.9, 0.1)
        >>> probabilities[1, 2] = 0.4                          # the weak membrane pixel
        >>> probabilities[0, 0] = probabilities[2, 4] = 0.35   # the specks
        >>> sweep = threshold_sweep(probabilities, target, thresholds=[0.3, 0.5])
        >>> sweep["pixel_error"].round(3)                      # 2 wrong pixels, then 1
        array([0.133, 0.067])
        >>> sweep["rand_error"].round(3)                       # ... but 1 gap merges the cells
        array([0.216, 0.375])
        >>> sweep["best"]
        {'pixel_error': 0.5, 'rand_error': 0.3}
    """
    probabilities = _as_probabilities(probabilities)
    target = _as_labels(target, "target")
    if probabilities.shape != target.shape:
        raise ValueError(f"probabilities and target must have the same shape, got "
                         f"{probabilities.shape} and {target.shape}; crop the target to the "
                         "prediction (a valid-padding U-Net's output is smaller than its input)")
    if target.size and target.max() > 1:
        raise ValueError(f"target must hold 0 and 1 only (1 = membrane), found {target.max()}; "
                         "for an ISBI 2012 label file (255 = cell) pass target = (label == 0)")
    if regions not in (0, 1):
        raise ValueError(f"regions must be 0 (cells = interior, below the threshold) or 1 "
                         f"(cells = foreground, above it), got {regions}")
    thresholds = (np.linspace(0.05, 0.95, 19) if thresholds is None
                  else np.asarray(thresholds, dtype=np.float64))
    if thresholds.ndim != 1 or thresholds.size == 0 or thresholds.min() < 0 or thresholds.max() > 1:
        raise ValueError(f"thresholds must be a non-empty 1-D list of values in [0, 1], got "
                         f"{thresholds!r}")
    unknown = [m for m in metrics if m not in SWEEP_METRICS]
    if isinstance(metrics, str) or unknown or not metrics:
        raise ValueError(f"metrics must be a tuple of names from {SWEEP_METRICS}, got "
                         f"{metrics!r}")

    probabilities = _image_stack(probabilities, "probabilities")
    target = _image_stack(target, "target")
    by_region = any(m != "pixel_error" for m in metrics)
    if by_region:
        _check_regions_present(target, regions)
        target_cells = [_components(t, regions) for t in target]   # same at every threshold

    values = {m: np.empty(len(thresholds)) for m in metrics}
    for k, t in enumerate(thresholds):
        pred = (probabilities > t).astype(np.int64)                 # 1 = membrane / foreground
        scores = {"pixel_error": [float((p != g).mean()) for p, g in zip(pred, target)]}
        if by_region:
            pred_cells = [_components(p, regions) for p in pred]
            scores["rand_error"] = [_rand_error(p, g) for p, g in zip(pred_cells, target_cells)]
            if {"vi_split", "vi_merge", "vi"} & set(metrics):
                vi = np.array([_vi(p, g) for p, g in zip(pred_cells, target_cells)])
                scores["vi_split"], scores["vi_merge"] = vi[:, 0], vi[:, 1]
                scores["vi"] = vi.sum(axis=1)
        for m in metrics:
            values[m][k] = np.mean(scores[m])
    best = {m: float(thresholds[np.argmin(values[m])]) for m in metrics}
    return {"thresholds": thresholds, **values, "best": best}


def best_threshold(probabilities, target, thresholds=None, regions: int = 0,
                   metric: str = "rand_error") -> float:
    """The threshold of :func:`threshold_sweep` with the lowest ``metric``.

    Example:
        >>> target = np.array([[0, 0, 1, 0, 0]] * 3)
        >>> probabilities = np.where(target == 1, 0.6, 0.2)
        >>> best_threshold(probabilities, target, thresholds=[0.1, 0.4, 0.7])
        0.4
    """
    sweep = threshold_sweep(probabilities, target, thresholds, regions, metrics=(metric,))
    return sweep["best"][metric]


# --------------------------------------------------------------------------- instances

def label_instances(foreground, min_size: int = 0) -> np.ndarray:
    """One id per 4-connected component of a binary foreground map (0 = background).

    Components smaller than ``min_size`` pixels are dropped (set to 0): a few stray pixels
    are noise, not objects, and would otherwise count as false detections.

    Shapes: ``H x W`` or ``N x H x W`` (each image labelled on its own).

    Example:
        >>> label_instances(np.array([[1, 1, 0, 1]]))
        array([[1, 1, 0, 2]])
        >>> label_instances(np.array([[1, 1, 0, 1]]), min_size=2)
        array([[1, 1, 0, 0]])
    """
    fg = _as_labels(foreground, "foreground") > 0
    out = []
    for f in _image_stack(fg, "foreground"):
        labels, _ = ndimage.label(f, structure=_FOUR)
        if min_size > 1:
            sizes = np.bincount(labels.ravel())
            keep = sizes >= min_size
            keep[0] = False
            labels, _ = ndimage.label(keep[labels], structure=_FOUR)
        out.append(labels.astype(np.int64))
    return np.stack(out) if fg.ndim == 3 else out[0]


_FOUR = ndimage.generate_binary_structure(2, 1)        # 4-connectivity, as for the regions


def merges(pred, target) -> dict[int, list[int]]:
    """The predicted objects that merged true ones, and which: ``{predicted id: [true ids]}``.

    The book's one rule for a merge: a true object lies *inside* a predicted object when
    more than half of its pixels do, and a predicted object with two or more true objects
    inside it has **merged** them. More than half, so that a true object lies inside one
    predicted object at most, and a boundary drawn a few pixels off merges nothing.

    Swap the arguments for the **splits**: ``merges(target, pred)`` lists, for every true
    object, the predicted objects that lie mostly inside it - the pieces it was cut into.

    Args:
        pred, target: ``H x W`` instance maps, 0 = background (or membrane) and one id per
            object, e.g. from :func:`label_instances`, or the cells of a membrane map
            (``ndimage.label(labels == 0)[0]``).

    Returns:
        For every predicted object that merged, its id and the ids of the true objects
        inside it (ascending); ``{}`` when nothing merged.

    Example:
        >>> truth = np.array([[1, 1, 0, 2, 2, 0, 3, 3]])
        >>> pred = np.array([[7, 7, 7, 7, 7, 0, 8, 9]])   # the gap between 1 and 2 missed
        >>> merges(pred, truth)
        {7: [1, 2]}
        >>> merges(truth, pred)                           # and 3 was cut into 8 and 9
        {3: [8, 9]}
    """
    p, t = _as_labels(pred, "pred"), _as_labels(target, "target")
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and target {t.shape} must be H x W instance maps of "
                         "one shape; score a stack image by image")
    both = (p > 0) & (t > 0)
    # each (predicted, true) pair of ids as one integer: a 1-D unique is ~10x faster than
    # np.unique(axis=1) on the pairs themselves
    base = int(t.max()) + 1 if t.size else 1
    codes, overlap = np.unique(p[both].astype(np.int64) * base + t[both], return_counts=True)
    ids, sizes = np.unique(t[t > 0], return_counts=True)
    size = dict(zip(ids.tolist(), sizes.tolist()))
    inside: dict[int, list[int]] = {}
    for code, n in zip(codes.tolist(), overlap.tolist()):
        a, b = divmod(code, base)
        if 2 * n > size[b]:                       # most of true object b lies in a
            inside.setdefault(a, []).append(b)
    return {a: found for a, found in inside.items() if len(found) >= 2}


def match_instances(pred, target, iou_threshold: float = 0.5) -> dict[str, float]:
    """Instance-level scores: match predicted to true objects one-to-one at IoU >= threshold.

    ``pred`` and ``target`` are instance maps (0 = background, 1..k = objects; e.g. from
    :func:`label_instances`), ``H x W`` or ``N x H x W``. Pairs are matched greedily from the
    highest IoU down, each object at most once; with a threshold above 0.5 the match is
    unique anyway, since an object can overlap only one other by more than half.

    Returns counts summed over the images and the scores from them:
    ``tp`` (matched pairs), ``fp`` (predicted objects left unmatched), ``fn`` (true objects
    left unmatched), ``precision`` = tp / (tp + fp), ``recall`` = tp / (tp + fn), ``f1``,
    and ``merged``: pairs of true objects that one predicted object swallowed - for each
    predicted object, the pairs among the true objects that lie mostly inside it (the rule
    of :func:`merges`; a predicted blob holding three touching cells counts 3 pairs).

    Example:
        >>> truth = np.array([[1, 1, 0, 2, 2]])
        >>> glued = np.array([[1, 1, 1, 1, 1]])               # the gap was missed
        >>> r = match_instances(glued, truth)
        >>> r["tp"], r["fp"], r["fn"], r["merged"]
        (0, 1, 2, 1)
    """
    p = _image_stack(_as_labels(pred, "pred"), "pred")
    t = _image_stack(_as_labels(target, "target"), "target")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} must have the same shape")
    tp = fp = fn = merged = 0
    for pi, ti in zip(p, t):
        p_ids, p_sizes = np.unique(pi[pi > 0], return_counts=True)
        t_ids, t_sizes = np.unique(ti[ti > 0], return_counts=True)
        both = (pi > 0) & (ti > 0)
        pairs, overlap = np.unique(np.stack([pi[both], ti[both]]), axis=1, return_counts=True)
        psize, tsize = dict(zip(p_ids, p_sizes)), dict(zip(t_ids, t_sizes))
        scored = []
        for (a, b), n in zip(pairs.T, overlap):
            iou = n / (psize[a] + tsize[b] - n)
            if iou >= iou_threshold:
                scored.append((iou, a, b))
        used_p, used_t = set(), set()
        for _, a, b in sorted(scored, reverse=True):
            if a not in used_p and b not in used_t:
                used_p.add(a)
                used_t.add(b)
        tp += len(used_p)
        fp += len(p_ids) - len(used_p)
        fn += len(t_ids) - len(used_t)
        merged += sum(len(inside) * (len(inside) - 1) // 2
                      for inside in merges(pi, ti).values())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "merged": merged}
