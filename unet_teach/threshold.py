"""Choosing the threshold that turns a probability map into objects.

For two classes a net gives each pixel the probability ``p`` of the foreground; a threshold
``t`` makes it a mask (``p > t``). Which ``t``? The lowest *pixel error* is the obvious
answer, but when the objects are regions separated by thin boundaries (the ISBI 2012 cells
between membranes), one missing boundary pixel merges two cells while costing a single
pixel. So ``unet-teach train --regions`` and chapter 10 choose the threshold on validation
images with two curves at once:

* :data:`THRESHOLDS` - every threshold tried, 0.01 apart;
* :func:`threshold_curves` - the pixel error and the mean Rand error at each of them, of the
  output ``predict`` writes (regions cut apart at weak spots, :func:`unet_teach.infer.decide`
  with ``SPLIT_LEVEL``);
* :func:`choose_threshold` - the lowest Rand error among the thresholds whose pixel error is
  within ``PIXEL_SLACK`` of the lowest.
"""

from __future__ import annotations

import numpy as np

from .infer import decide
from .metrics import rand_error

#: With ``regions``: touching regions are cut apart between cores where the net gives the
#: region class more than this probability (``split_regions``; at least the threshold).
SPLIT_LEVEL = 0.5
#: With ``regions``: the threshold has the lowest validation Rand error among those whose
#: validation pixel error is at most this factor above the lowest. The pixel error is flat
#: near its lowest and steep below it, and a few validation images place that bend only
#: roughly. Chosen by cross-validation inside the ISBI training slices 00-19
#: (scripts/threshold_rule.py, results/README.md): among slacks of 0 to 10 % and none, 2 %
#: kept the held-out errors closest to the benchmark's goals.
PIXEL_SLACK = 1.02

#: The thresholds tried, every 0.01, because with a weighted loss the useful ones can lie
#: below 0.2, where one step of 0.02 would move the pixel error by more than ``PIXEL_SLACK``.
THRESHOLDS = np.round(np.arange(0.01, 0.99, 0.01), 2)


def threshold_curves(probs: list[np.ndarray], truths: list[np.ndarray],
                     regions: int, thresholds=THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """What ``predict`` would score at every threshold of ``thresholds``: the pixel error
    over all the images' pixels and the mean Rand error of the images, the regions of class
    ``regions`` cut apart at weak spots (cores above ``SPLIT_LEVEL``).

    ``probs``: K x H x W probabilities, one array an image; ``truths``: H x W class indices.
    Returns two arrays of ``len(thresholds)``.
    """
    pixel, rand = [], []
    for threshold in thresholds:
        labels = [decide(q, threshold, (regions, SPLIT_LEVEL)) for q in probs]
        pixel.append(sum(int((a != u).sum()) for a, u in zip(labels, truths))
                     / sum(u.size for u in truths))
        rand.append(float(np.mean([rand_error(a, u, regions=regions)
                                   for a, u in zip(labels, truths)])))
    return np.array(pixel), np.array(rand)


def choose_threshold(pixel: np.ndarray, rand: np.ndarray,
                     slack: float = PIXEL_SLACK) -> int:
    """The index of the threshold ``train --regions`` keeps: the lowest Rand error among
    those whose pixel error is at most ``slack`` times the lowest (``slack`` = inf: the
    lowest Rand error of all), the lowest threshold on a tie.

    Example:
        >>> choose_threshold(np.array([0.10, 0.08, 0.081, 0.09]),
        ...                  np.array([0.05, 0.07, 0.06, 0.04]))
        2
    """
    allowed = pixel <= slack * pixel.min()
    return int(np.argmin(np.where(allowed, rand, np.inf)))
