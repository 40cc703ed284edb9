"""Instant feedback for the exercises, one module per exercise notebook.

An exercise imports the checks of its chapter, e.g. ``from unet_teach.checks import
patches as checks`` (:mod:`unet_teach.checks` re-exports this package, the name students'
notebooks use), and calls ``checks.check_<question>(your_function)`` after each answer: it
prints the points on success and raises ``CheckFailed`` (an ``AssertionError``) that says
what is wrong (and gives a hint) otherwise. The message's last line, ``[check: <id>]``, names
the check that failed: ``all_messages()[id]`` is a fixed text (what is wrong, where to look)
that a grader can show in place of the message, which came from the student's kernel. Each
module's ``POINTS`` maps a question to its points, its ``MESSAGES`` its check ids to their
texts (``_common.MESSAGES`` holds those of the helpers every exercise shares).

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


def all_messages() -> dict[str, str]:
    """Every exercise's ``MESSAGES`` and the shared helpers' in one dict: the fixed texts a
    grader may copy into a feedback file, by check id (imports every check module, and so
    torch).

    Example:
        >>> messages = all_messages()
        >>> messages["common.not_implemented"].splitlines()[0]
        'The answer is not implemented yet: the function still raises NotImplementedError.'
    """
    from . import _common, augmentation, losses, patches, pixel_metrics, unet
    found: dict[str, str] = {}
    for module in (_common, pixel_metrics, patches, unet, losses, augmentation):
        for key, text in module.MESSAGES.items():
            if key in found:
                raise RuntimeError(f"check id {key!r} is defined twice")
            found[key] = text
    return found
