"""``unet-teach evaluate``: score predicted masks against true ones, per image and on average.

Predictions and truths are mask files paired by name (``<stem>.png`` from ``predict``; its
``*_prob.tif`` files are skipped), compared in their stored values (0/255 with 0/255). The
scores, per image and their mean over images (:mod:`unet_teach.metrics`):

* ``pixel_error`` - the fraction of pixels whose value differs;
* ``dice``, ``iou`` - of the foreground: every value but the **background, the smallest
  value** (0). For two-valued masks that is the other value (255 in 0/255 masks, 1 in 0/1
  masks); with more classes, the mean over the non-background classes, and one
  ``dice_<value>``/``iou_<value>`` column each. A class absent from both is left out (nan);
* with ``regions`` = a mask value: the objects are the 4-connected components of the pixels
  of that value (255 for the ISBI 2012 labels, whose cell interiors are white), compared as
  segmentations: ``rand_error`` (1 - adapted Rand F-score) and the variation of information
  ``vi_split``/``vi_merge`` in bits (:func:`unet_teach.metrics.rand_error`,
  :func:`unet_teach.metrics.variation_of_information`, on the masks as stored), and the
  ``warping_error``: the fraction of pixels that stay wrong when the truth is warped onto the
  prediction without changing its topology - boundary shifts cost nothing; merges, splits,
  and cells or holes added or lost cost the pixels no such warp can fix
  (:func:`unet_teach.metrics.warping_error`).

``csv`` writes the table; ``report`` a quality-control page (:mod:`unet_teach.app.report`).
"""

from __future__ import annotations

import csv as csv_module
import io
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..metrics import (dice_per_class, iou_per_class, pixel_error, rand_error,
                       variation_of_information, warping_error)
from .images import (NORMALIZATION, InputError, check_outputs, check_same_size, list_images,
                     load_image, pair_files, read_mask, write_atomic)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def scores(pred: np.ndarray, truth: np.ndarray, values: list[int],
           regions: int | None = None) -> dict[str, float]:
    """The scores of one predicted mask against its truth, both in mask values.

    ``values``: all the values of the masks compared, sorted (the first is the background).

    Example:
        >>> truth = np.array([[0, 0, 255, 255]]); pred = np.array([[0, 255, 255, 255]])
        >>> scores(pred, truth, [0, 255])
        {'pixel_error': 0.25, 'dice': 0.8, 'iou': 0.6666666666666666}
    """
    pi, ti = np.searchsorted(values, pred), np.searchsorted(values, truth)
    d = dice_per_class(pi, ti, num_classes=len(values))
    j = iou_per_class(pi, ti, num_classes=len(values))
    row = {"pixel_error": pixel_error(pred, truth), "dice": _nanmean(d[1:]),
           "iou": _nanmean(j[1:])}
    if len(values) > 2:
        row.update({f"dice_{v}": float(d[i]) for i, v in enumerate(values) if i})
        row.update({f"iou_{v}": float(j[i]) for i, v in enumerate(values) if i})
    if regions is not None:
        row["rand_error"] = rand_error(pred, truth, regions)
        row["vi_split"], row["vi_merge"] = variation_of_information(pred, truth, regions)
        row["warping_error"] = warping_error(pred, truth, regions)
    return row


def format_table(columns: list[str], rows: list[dict]) -> str:
    """A plain-text table, one line per row (``image`` first), 4 decimals."""
    width = max(5, *(len(str(r["image"])) for r in rows))
    head = f"{'image':<{width}}" + "".join(f"  {c:>{max(len(c), 7)}}" for c in columns)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['image']:<{width}}" + "".join(
            f"  {r[c]:>{max(len(c), 7)}.4f}" for c in columns))
    return "\n".join(lines)


def evaluate(pred, truth, *, regions: int | None = None, csv=None, report=None, images=None,
             force: bool = False, progress: bool = True) -> int:
    """Score the masks in ``pred`` against those in ``truth``; print a table; optionally write
    it to ``csv`` and a quality-control page to ``report/report.html`` (overlays drawn on the
    images in ``images`` when given). Returns the exit status; bad input raises
    :class:`~unet_teach.app.images.InputError` before anything is written.
    """
    outputs = []
    if csv is not None:
        outputs.append(Path(csv))
    if report is not None:
        report = Path(report)
        if report.exists() and not report.is_dir():
            raise InputError(f"{report}: exists and is not a folder; --report is the folder "
                             "for report.html")
        outputs.append(report / "report.html")
    check_outputs(outputs, force)
    pairs = pair_files(pred, truth, first="predictions", second="masks", skip_prob=True)
    image_files = list_images(images, "images") if images is not None else {}
    for stem, _, mask_file in pairs:
        if images is not None and stem not in image_files:
            raise InputError(f"{mask_file}: no image named {stem}.png or {stem}.tif in "
                             f"{images}; --images pairs with the masks by file name")
    masks = {}
    for stem, pred_file, truth_file in pairs:
        p, t = read_mask(pred_file), read_mask(truth_file)
        check_same_size(truth_file, t, pred_file, p)
        masks[stem] = (p, t)
    pred_values = sorted(set().union(*(np.unique(p).tolist() for p, _ in masks.values())))
    truth_values = sorted(set().union(*(np.unique(t).tolist() for _, t in masks.values())))
    if len(pred_values) == len(truth_values) == 2 and pred_values != truth_values:
        raise InputError(f"{pred}: the predictions hold the values {pred_values} but the "
                         f"masks in {truth} hold {truth_values}; compare masks in the same "
                         "values (predict with a model trained on masks like these)")
    values = sorted(set(pred_values) | set(truth_values))
    if regions is not None:
        for stem, pred_file, truth_file in pairs:
            if not np.any(masks[stem][1] == regions):
                raise InputError(f"{truth_file}: has no pixel of value {regions}, so no regions "
                                 f"to compare; --regions is the mask value of the objects "
                                 f"(its values: {np.unique(masks[stem][1]).tolist()}; 255 for "
                                 "the ISBI labels' cell interiors)")
    loaded = {}
    for stem, _, truth_file in pairs:
        if images is not None:
            loaded[stem], _ = load_image(image_files[stem], 1, NORMALIZATION)
            check_same_size(image_files[stem], loaded[stem], truth_file, masks[stem][1])

    rows = []
    for stem, (p, t) in tqdm(masks.items(), desc="scoring", unit="image",
                             disable=not progress, file=sys.stderr):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)        # nan for absent classes
            rows.append({"image": stem, **scores(p, t, values, regions)})
    columns = [c for c in rows[0] if c != "image"]
    mean = {"image": "mean", **{c: _nanmean([r[c] for r in rows]) for c in columns}}
    background = values[0]
    fg = [v for v in values if v != background]
    print(f"{len(rows)} image(s); background = value {background}; dice and iou of value"
          f"{'s' if len(fg) > 1 else ''} {', '.join(map(str, fg))}"
          + ("" if len(fg) < 2 else " (mean)")
          + (f"; regions = connected pixels of value {regions}" if regions is not None else ""))
    print(format_table(columns, rows + [mean]))
    if csv is not None:
        buffer = io.StringIO()
        writer = csv_module.DictWriter(buffer, ["image", *columns], lineterminator="\n")
        writer.writeheader()
        for r in rows + [mean]:
            writer.writerow({k: (v if k == "image" else f"{v:.6g}") for k, v in r.items()})
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(csv, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))
        print(f"wrote {csv}")
    if report is not None:
        from .report import write_report
        page = write_report(report / "report.html", columns, rows, mean, masks, values,
                            loaded, title=f"{pred} against {truth}", regions=regions)
        print(f"wrote {page}")
    return 0
