"""The app's subcommands of ``unet-teach``: ``train``, ``predict`` and ``evaluate``.

:func:`register` adds them to the command (:mod:`unet_teach.cli`). ``train``'s options are
built from :mod:`unet_teach.app.settings`, where each is declared once. Bad input makes a
command print one line naming the file and the fix, and exit with status 2 having written
nothing. Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time

from .settings import add_options


def _app(run) -> int:
    """Run an app command; its bad-input errors become one line on stderr and status 2."""
    from .images import InputError

    try:
        return run()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


#: The arguments of ``train`` that are no option of :mod:`unet_teach.app.settings`: what
#: to train on and where to write it.
TRAIN_ARGUMENTS = ("images", "masks", "out")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model on folders of images and masks (:func:`unet_teach.app.train.train`)."""
    start = time.monotonic()                   # --minutes counts from here, loading included
    from .train import train

    options = {k: v for k, v in vars(args).items()
               if k not in (*TRAIN_ARGUMENTS, "command", "func")}
    return _app(lambda: train(args.images, args.masks, args.out, clock_start=start,
                              **options))


def cmd_predict(args: argparse.Namespace) -> int:
    """Segment images with a model file (:func:`unet_teach.app.predict.predict`)."""
    from .predict import predict

    return _app(lambda: predict(args.model, args.inputs, args.out, tta=args.tta,
                                threshold=args.threshold, force=args.force,
                                device=args.device, progress=not args.quiet,
                                split=not args.no_split))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score predicted masks against true ones (:func:`unet_teach.app.evaluate.evaluate`)."""
    from .evaluate import evaluate

    return _app(lambda: evaluate(args.pred, args.truth, regions=args.regions, csv=args.csv,
                                 report=args.report, images=args.images, force=args.force,
                                 progress=not args.quiet))


def _add_train(sub) -> None:
    tr = sub.add_parser("train", help="train a U-Net on your own images and masks",
                        description="Train a U-Net on IMAGES and MASKS, folders of PNG or "
                        "TIFF files paired by name (a.png with a.tif). The masks' values are "
                        "the classes (0/255 = two classes), recorded in the model file.")
    tr.add_argument("images", metavar="IMAGES", help="folder of images (8/16-bit, grey or RGB)")
    tr.add_argument("masks", metavar="MASKS", help="folder of masks: one integer label per "
                    "pixel, e.g. 0/255 or 0..K-1")
    tr.add_argument("--out", required=True, metavar="MODEL.pt", help="the model file; "
                    "written every --checkpoint-minutes and at the end")
    add_options(tr)
    tr.set_defaults(func=cmd_train)


def _add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="segment images with a trained model file",
                        description="Write OUT/<name>.png (in the training masks' values) and "
                        "OUT/<name>_prob.tif (float32 probabilities: of the larger mask value "
                        "for 2 classes, all K maps for more) for every input image.")
    pr.add_argument("model", metavar="MODEL.pt", help="a model file from `unet-teach train`")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    pr.add_argument("--out", required=True, metavar="DIR", help="folder for the predictions")
    pr.add_argument("--tta", action="store_true", help="average over the 8 flips and "
                    "rotations (8 times slower, a little better)")
    pr.add_argument("--no-split", action="store_true", help="a model trained with "
                    "--regions: do not cut touching regions apart at weak spots (the plain "
                    "threshold)")
    pr.add_argument("--threshold", type=float, metavar="T", help="2 classes: the larger value "
                    "where its probability > T (default: the model's, chosen on its "
                    "validation images)")
    pr.add_argument("--force", action="store_true", help="overwrite existing predictions")
    pr.add_argument("--device", help="cpu, cuda, ... (default: as for train)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)


def _add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="score predicted masks against true ones",
                        description="Pixel error, and Dice and IoU of the non-background "
                        "values (background = the smallest value), per image and mean; with "
                        "--regions also Rand error and VI split/merge.")
    ev.add_argument("pred", metavar="PRED", help="folder of predicted masks (*_prob.tif are "
                    "skipped)")
    ev.add_argument("truth", metavar="TRUTH", help="folder of true masks, paired by name")
    ev.add_argument("--regions", type=int, metavar="VALUE", help="the mask value whose "
                    "connected components are the objects (255 for the ISBI labels' cells)")
    ev.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    ev.add_argument("--report", metavar="DIR", help="write DIR/report.html: the table and, "
                    "per image, overlays and an error map")
    ev.add_argument("--images", metavar="DIR", help="the images, for the report's overlays")
    ev.add_argument("--force", action="store_true", help="overwrite --csv and the report")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)


def register(sub) -> None:
    """Add ``train``, ``predict`` and ``evaluate`` to the subcommands ``sub`` (argparse's
    subparsers).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["train", "i", "m", "--out", "m.pt", "--crop", "64"]).crop
        64
    """
    _add_train(sub)
    _add_predict(sub)
    _add_evaluate(sub)
