"""The exercises' checks under the name students' notebooks import; they live in
:mod:`unet_teach.course.checks`.

Every form a released notebook uses keeps working::

    from unet_teach import checks                      # the chapter 1 checks
    from unet_teach.checks import pixel_metrics
    from unet_teach.checks import patches as checks
    from unet_teach.checks import unet as checks
    from unet_teach.checks import losses as checks
    from unet_teach.checks import augmentation as checks

Example:
    >>> from unet_teach.checks import unet as checks
    >>> checks.POINTS["unet"]
    4
"""

import importlib

from .course.checks import pixel_metrics  # noqa: F401
from .course.checks import (POINTS, check_baseline, check_dice, check_iou,  # noqa: F401
                            check_mean_iou, check_pixel_accuracy)

_LAZY = ("augmentation", "losses", "patches", "unet")


def __getattr__(name: str):
    # The other exercises' checks load on first use (``from unet_teach.checks import unet``):
    # they import torch, which exercise 1 does not need.
    if name in _LAZY:
        return importlib.import_module(f"unet_teach.course.checks.{name}")
    raise AttributeError(f"module 'unet_teach.checks' has no attribute {name!r}")
