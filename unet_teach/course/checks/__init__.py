"""Instant feedback for the exercises, one module per exercise notebook.

An exercise imports the checks of its chapter, e.g. ``from unet_teach.checks import
patches as checks`` (:mod:`unet_teach.checks` re-exports this package, the name students'
notebooks use), and calls ``checks.check_<question>(your_function)`` after each answer: it
prints the points on success and raises ``AssertionError`` that says what is wrong (and gives
a hint) otherwise. Each module's ``POINTS`` maps a question to its points.

The modules, by exercise: ``pixel_metrics`` (1), ``patches`` (2), ``unet`` (3), ``losses``
(4) and ``augmentation`` (5). In every exercise, a check fails an answer that calls the
library's reference implementation of the function asked for (each module's
``REFERENCES``; :func:`unet_teach.course.checks.losses.call_own`, defined in ``_common``).

The chapter 1 checks are also available here directly (``from unet_teach import checks``).

Example:
    >>> from unet_teach.course import checks
    >>> checks.POINTS["dice"]
    3
"""

from .pixel_metrics import (POINTS, check_baseline, check_dice, check_iou, check_mean_iou,  # noqa: F401
                            check_pixel_accuracy)
