"""The validation part of ``unet-teach train``: held out, scored, and the threshold chosen.

1. :func:`split` - which part validates: whole images when there are at least 4, else the
   bottom rows of every image.
2. :func:`validate` - predict the validation part whole, then score at most
   ``MAX_VAL_PIXELS`` of it (:func:`windows`: whole ``WINDOW`` px windows cut at random,
   seeded, from the validation images; region scores need whole regions, not scattered
   pixels) and, for 2 classes, choose the threshold:

   * without ``regions``: the lowest pixel error, over every threshold of
     :data:`unet_teach.threshold.THRESHOLDS`;
   * with ``regions`` (the class whose connected regions are the objects): the rule of
     :func:`unet_teach.threshold.choose_threshold` on what ``predict`` writes (regions cut
     apart at weak spots). A cut and a Rand error a threshold and image are slow, so the
     sweep goes coarse to fine (:func:`coarse_to_fine`: every 0.05, then every 0.01
     around the best).

:func:`scoring_seconds` estimates the scoring's time for the budget's reserve, and
:func:`slow_end_note` says when the end of a training will take more than a quarter of its
budget, and what to do.
"""

from __future__ import annotations

import numpy as np

from ..infer import decide, predict_probabilities
from ..metrics import rand_error, threshold_sweep
from ..threshold import SPLIT_LEVEL, THRESHOLDS, choose_threshold, threshold_curves

#: Validation scores at most this many pixels; beyond it, windows of them (:func:`windows`).
MAX_VAL_PIXELS = 4_000_000
#: The side of the windows cut from validation images larger than the cap allows.
WINDOW = 256
#: The coarse sweep takes every this many thresholds of THRESHOLDS (0.05 apart), the fine
#: one those within FINE of the coarse sweep's best (0.04 either side, 0.01 apart).
COARSE, FINE = 5, 4


def split(stems: list[str], fraction: float, seed: int) -> dict:
    """Which part validates: ``{"mode": "images", "images": [...]}`` (at least 4 images:
    ``round(fraction * n)``, at least 1, chosen at random with ``seed``), ``{"mode": "rows",
    "fraction": f}`` (fewer: the bottom rows of every image) or ``{"mode": "none"}``.

    Example:
        >>> split([f"{i:02d}" for i in range(20)], 0.1, seed=0)["images"]
        ['12', '16']
        >>> split(["a", "b"], 0.1, seed=0)
        {'mode': 'rows', 'fraction': 0.1}
    """
    if fraction <= 0:
        return {"mode": "none"}
    if len(stems) >= 4:
        n = min(len(stems) - 1, max(1, round(fraction * len(stems))))
        chosen = np.random.default_rng(seed).choice(len(stems), n, replace=False)
        return {"mode": "images", "images": sorted(stems[i] for i in chosen)}
    return {"mode": "rows", "fraction": float(fraction)}


def windows(shapes, cap: int = MAX_VAL_PIXELS, side: int = WINDOW,
            seed: int = 0) -> list[tuple[int, slice, slice]]:
    """What to score of images of ``shapes`` (``H x W``): ``(image index, rows, columns)``.

    Every image whole when they hold at most ``cap`` pixels together; else whole windows
    of ``side x side`` px (the image's side where it is smaller), on a grid over every
    image, chosen at random with ``seed`` until the next would pass the cap (at least one).

    Example:
        >>> windows([(100, 80)], cap=10_000)
        [(0, slice(0, 100, None), slice(0, 80, None))]
        >>> cut = windows([(600, 600), (300, 256)], cap=200_000, side=256)
        >>> len(cut), sum((r.stop - r.start) * (c.stop - c.start) for _, r, c in cut)
        (3, 196608)
    """
    if sum(h * w for h, w in shapes) <= cap:
        return [(i, slice(0, h), slice(0, w)) for i, (h, w) in enumerate(shapes)]
    grid = [(i, slice(r, min(r + side, h)), slice(c, min(c + side, w)))
            for i, (h, w) in enumerate(shapes)
            for r in range(0, max(h - side, 0) + 1, side)
            for c in range(0, max(w - side, 0) + 1, side)]
    chosen, total = [], 0
    for k in np.random.default_rng(seed).permutation(len(grid)):
        i, rows, cols = grid[k]
        size = (rows.stop - rows.start) * (cols.stop - cols.start)
        if chosen and total + size > cap:
            break
        chosen.append(grid[k])
        total += size
    return sorted(chosen, key=lambda w: (w[0], w[1].start, w[2].start))


def coarse_to_fine(curves, thresholds=THRESHOLDS, coarse: int = COARSE,
                   fine: int = FINE) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The ``--regions`` threshold rule (:func:`~unet_teach.threshold.choose_threshold`)
    on a coarse-to-fine sweep: ``(thresholds tried, pixel errors, Rand errors, index of
    the chosen one)``.

    ``curves(ts) -> (pixel, rand)`` scores a list of thresholds. First every ``coarse``-th
    threshold; then every one within ``fine`` places of the coarse sweep's lowest pixel
    error and of its chosen threshold; the rule then chooses among all tried.

    Example:
        >>> ts = np.round(np.arange(0.01, 0.99, 0.01), 2)
        >>> def curves(t):         # pixel error flat over 0.35..0.39, Rand error lowest at 0.36
        ...     return np.maximum(np.abs(t - 0.37), 0.02) + 0.1, np.abs(t - 0.36)
        >>> tried, pixel, rand, k = coarse_to_fine(curves, ts)
        >>> float(tried[k]), len(tried)
        (0.36, 27)
    """
    thresholds = np.asarray(thresholds)
    index = list(range(coarse - 1, len(thresholds), coarse))
    pixel, rand = curves(thresholds[index])
    near = {index[int(np.argmin(pixel))], index[choose_threshold(pixel, rand)]}
    more = sorted({j for c in near for j in range(max(0, c - fine),
                                                  min(len(thresholds), c + fine + 1))}
                  - set(index))
    if more:
        fine_pixel, fine_rand = curves(thresholds[more])
        index, pixel, rand = (index + more, np.concatenate([pixel, fine_pixel]),
                              np.concatenate([rand, fine_rand]))
    order = np.argsort(index)
    pixel, rand = np.asarray(pixel)[order], np.asarray(rand)[order]
    return thresholds[np.asarray(index)[order]], pixel, rand, choose_threshold(pixel, rand)


def validate(model, parts: list[tuple], classes: int, device, seed: int = 0,
             regions: int | None = None, cap: int = MAX_VAL_PIXELS) -> dict:
    """Scores on the validation ``parts`` (``(image, class indices, rows or None)``),
    each predicted whole, and for 2 classes the threshold: see :func:`score`.

    Example:
        >>> from unet_teach.models import UNet
        >>> part = (np.zeros((1, 16, 16), np.float32), np.eye(16, dtype=np.int64), None)
        >>> sorted(validate(UNet(1, 2, depth=1, base_width=2), [part], 2, "cpu"))[:3]
        ['pixel_error', 'pixel_error_default', 'scored_pixels']
    """
    model.eval()
    probs, truths = [], []
    for image, target, rows in parts:
        p = predict_probabilities(model, image, device=device)    # K x H x W
        probs.append(p[:, rows] if rows else p)
        truths.append(target[rows] if rows else target)
    model.train()
    return score(probs, truths, classes, seed=seed, regions=regions, cap=cap)


def score(probs: list[np.ndarray], truths: list[np.ndarray], classes: int, *, seed: int = 0,
          regions: int | None = None, cap: int = MAX_VAL_PIXELS) -> dict:
    """Scores of the probabilities ``probs`` (``K x H x W`` an image) against ``truths``
    (``H x W`` class indices), on at most ``cap`` pixels (:func:`windows`).

    Returns ``scored_pixels``, ``pixel_error`` (at the chosen threshold),
    ``pixel_error_default`` (at 0.5, or the arg-max), ``threshold`` and
    ``threshold_metric`` (2 classes: ``"pixel_error"``, or ``"rand_error"`` with
    ``regions``), with ``regions`` also ``rand_error`` (regions cut apart at weak spots, as
    ``predict`` writes them), ``rand_error_unsplit`` (the plain threshold) and
    ``split_level``; and ``single_class`` (the prediction holds one class everywhere while
    the truth holds several: a sign that training has not worked).

    Example:
        >>> truth = np.array([[0, 0, 1, 0, 0]] * 4)
        >>> p1 = np.where(truth == 1, 0.7, 0.2)
        >>> result = score([np.stack([1 - p1, p1])], [truth], 2)
        >>> result["pixel_error"], result["threshold"], result["pixel_error_default"]
        (0.0, 0.2, 0.0)
    """
    cut = windows([t.shape for t in truths], cap, seed=seed)
    probs = [probs[i][:, rows, cols] for i, rows, cols in cut]
    truths = [truths[i][rows, cols] for i, rows, cols in cut]
    p = np.concatenate([q.reshape(classes, -1) for q in probs], axis=1)   # K x P
    t = np.concatenate([q.ravel() for q in truths])                       # P
    default = decide(p[:, None], 0.5 if classes == 2 else None)[0]
    result = {"scored_pixels": int(t.size),
              "pixel_error_default": float((default != t).mean())}
    chosen = default
    if classes == 2 and regions is not None:
        # What predict writes, scored at each threshold: the regions above it, cut apart
        # where they touch only through a weak spot (split_regions, from cores above
        # SPLIT_LEVEL). The cut is not tuned here: a merge is a rare event, and a few
        # validation images often hold none to learn from. Once gaps no longer merge
        # cells, a lower threshold (thinner boundaries) keeps lowering the Rand error
        # while the pixel error rises, so the threshold is the one with the lowest Rand
        # error among those whose pixel error is within PIXEL_SLACK of the lowest.
        tried, pixel, rand, k = coarse_to_fine(
            lambda ts: threshold_curves(probs, truths, regions, thresholds=ts))
        plain = [decide(q, tried[k]) for q in probs]
        result.update(threshold=float(tried[k]), threshold_metric="rand_error",
                      rand_error=float(rand[k]), pixel_error=float(pixel[k]),
                      split_level=SPLIT_LEVEL,
                      rand_error_unsplit=float(np.mean([rand_error(a, u, regions=regions)
                                                        for a, u in zip(plain, truths)])))
        chosen = decide(p[:, None], tried[k])[0]
    elif classes == 2:
        sweep = threshold_sweep(p[1][None], t[None], thresholds=THRESHOLDS,
                                metrics=("pixel_error",))
        best = sweep["best"]["pixel_error"]
        result.update(threshold=float(best), threshold_metric="pixel_error",
                      pixel_error=float(sweep["pixel_error"][list(THRESHOLDS).index(best)]))
        chosen = decide(p[:, None], best)[0]
    else:
        result["pixel_error"] = result["pixel_error_default"]
    result["single_class"] = bool(len(np.unique(chosen)) == 1 < len(np.unique(t)))
    return result


def scoring_seconds(pixels: int, regions: bool) -> float:
    """About how long :func:`score` takes on ``pixels`` validation pixels: with
    ``regions``, a cut (watershed) and a Rand error a threshold tried, about 0.1 s per
    512 x 512 pixels on a laptop CPU; without, next to nothing.

    Example:
        >>> round(scoring_seconds(10 * 2048**2, regions=True))    # ten 2048^2 images
        53
    """
    if not regions:
        return 0.0
    tried = len(THRESHOLDS) // COARSE + 2 * (2 * FINE)           # at most
    return tried * min(pixels, MAX_VAL_PIXELS) * 0.1 / 512**2


def slow_end_note(budget, step_time: float) -> str | None:
    """A note when the end of a timed training (validation and writing the file,
    ``budget.reserve``) will take more than a quarter of its budget, else ``None``.

    Example:
        >>> from unet_teach.app.budget import Budget
        >>> slow_end_note(Budget(seconds=600, reserve_s=30), step_time=1.0) is None
        True
        >>> slow_end_note(Budget(seconds=600, reserve_s=200), step_time=1.0)[:40]
        'the end of the training (validating and '
    """
    if budget.seconds is None:
        return None
    end = budget.reserve(step_time)
    if end <= budget.seconds / 4:
        return None
    return (f"the end of the training (validating and writing the file) will take about "
            f"{end / 60:.1f} min of the {budget.seconds / 60:g} min budget, more than a "
            "quarter; validate on fewer or smaller images (a lower --val-fraction, or 0 for "
            "none), or give more --minutes")
