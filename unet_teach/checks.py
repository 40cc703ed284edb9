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

from .course.checks import augmentation, losses, patches, pixel_metrics, unet  # noqa: F401
from .course.checks import (POINTS, check_baseline, check_dice, check_iou,  # noqa: F401
                            check_mean_iou, check_pixel_accuracy)
