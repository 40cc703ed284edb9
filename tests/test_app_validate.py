"""The validation of ``unet-teach train`` (unet_teach.app.validate) on hand-made maps.

A "net" whose class-1 probability is its input (``Given``) runs through the real
``validate``: so the probability map is made by hand, and the threshold each rule must
choose is known from how it was made, not recomputed by the rule.

The map (``hand_made``): 16 cells of 30 x 30 px between 2 px membranes (class 1), with
P(membrane) 0.95 on membranes and 0.005 in cells, and four things whose pixel counts set
the answer:

* G = 8 membrane pixels at 0.425: a weak spot; above 0.425 the two cells it parts merge;
* E = 12 cell pixels at 0.445 beside a membrane: a blurred edge, wrong below 0.445;
* I = 60 cell pixels at 0.175: a fuzzy patch, wrong below 0.175;
* D = 400 cell pixels at 0.975: specks, wrong at every threshold tried.

So the pixel error is D + E = 412 px over 0.18 .. 0.42 (no merge), D + E + G = 420 over
0.43 .. 0.44, D + G = 408 (the lowest, with a merge) over 0.45 .. 0.94, and more below 0.18.
The lowest pixel error is at 0.45; the ``--regions`` rule (lowest Rand error among the
thresholds within 2 % of the lowest pixel error: 416.2 px) must keep 0.18 .. 0.42, where no
cells merge, and take its lowest, 0.18.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_teach.app import validate as v
from unet_teach.threshold import PIXEL_SLACK, THRESHOLDS, choose_threshold, threshold_curves

D, E, G, I = 400, 12, 8, 60                 # noqa: E741 (the counts named in the docstring)


class Given(torch.nn.Module):
    """A same-padding "net" whose class-1 probability is its one input channel."""

    depth, padding = 1, "same"

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        p = x.clamp(1e-6, 1 - 1e-6)                                  # N x 1 x H x W
        return torch.cat([torch.zeros_like(p), torch.log(p) - torch.log1p(-p)], dim=1)


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """``(P(membrane) 128 x 128 float32, class indices 128 x 128)``: see the docstring."""
    truth = np.zeros((128, 128), np.int64)
    for k in range(0, 128, 32):
        truth[k:k + 2] = truth[:, k:k + 2] = 1
    p = np.where(truth == 1, 0.95, 0.005)
    p[10:14, 32:34] = 0.425                 # G: the wall between the first two cells
    p[34, 40:52] = 0.445                    # E: beside the membrane above the 6th cell
    p[75:81, 75:85] = 0.175                 # I: inside the 11th cell
    for c0 in range(2, 128, 32):            # D: the bottom row of cells, every 3rd pixel
        p[99:127:3, c0 + 1:c0 + 30:3] = 0.975
    assert [(p == x).sum() for x in (0.425, 0.445, 0.175, 0.975)] == [G, E, I, D]
    return p.astype(np.float32), truth


def test_the_hand_made_map_has_the_answer_the_docstring_says():
    # the design's arithmetic, checked once: the slack keeps the no-merge interval only
    lowest = D + G
    assert D + E <= PIXEL_SLACK * lowest < D + E + G and D + E + I > PIXEL_SLACK * lowest


@pytest.mark.parametrize("regions, threshold, pixels", [(0, 0.18, D + E), (None, 0.45, D + G)],
                         ids=["regions", "plain"])
def test_validate_chooses_the_known_threshold(regions, threshold, pixels):
    p, truth = hand_made()
    result = v.validate(Given(), [(p[None], truth, None)], 2, "cpu", regions=regions)
    assert result["threshold"] == threshold
    assert result["pixel_error"] == pytest.approx(pixels / truth.size)
    assert result["scored_pixels"] == truth.size
    if regions is not None:
        assert result["threshold_metric"] == "rand_error" and result["rand_error"] > 0
        # at the plain rule's threshold the first two cells merge: a higher Rand error
        merged = v.score([np.stack([1 - p, p])], [truth], 2, regions=None)
        assert merged["threshold"] == 0.45


@pytest.mark.parametrize("regions, threshold, pixels", [(0, 0.18, D + E), (None, 0.45, D + G)],
                         ids=["regions", "plain"])
def test_validate_above_its_pixel_cap_scores_whole_windows_up_to_the_cap(regions, threshold,
                                                                         pixels):
    # two 512 x 512 images, the hand-made 128 px map 4 x 4 times; the cap takes two of
    # their eight 256 px windows, each four whole maps: the same answer, on 2 x 256^2 px
    p, truth = hand_made()
    big_p, big_t = np.tile(p, (4, 4)), np.tile(truth, (4, 4))
    parts = [(big_p[None], big_t, None), (big_p[None].copy(), big_t.copy(), None)]
    cap = 2 * v.WINDOW ** 2 + 1000
    result = v.validate(Given(), parts, 2, "cpu", regions=regions, cap=cap)
    assert result["scored_pixels"] == 2 * v.WINDOW ** 2 <= cap
    assert result["threshold"] == threshold
    assert result["pixel_error"] == pytest.approx(pixels / truth.size)


def test_windows_are_whole_inside_the_images_apart_and_seeded():
    shapes = [(700, 600), (300, 256), (100, 90)]
    assert v.windows(shapes, cap=10**6) == [(i, slice(0, h), slice(0, w))
                                            for i, (h, w) in enumerate(shapes)]
    cut = v.windows(shapes, cap=300_000, side=256, seed=3)
    sizes = [(r.stop - r.start) * (c.stop - c.start) for _, r, c in cut]
    assert 300_000 - 256**2 < sum(sizes) <= 300_000      # up to the cap, less than a window
    covered = [np.zeros(s, int) for s in shapes]
    for i, rows, cols in cut:
        assert rows.stop <= shapes[i][0] and cols.stop <= shapes[i][1]
        assert rows.stop - rows.start == min(256, shapes[i][0])      # whole windows
        covered[i][rows, cols] += 1
    assert max(c.max() for c in covered) == 1                        # none overlap
    assert v.windows(shapes, cap=300_000, side=256, seed=3) == cut
    assert v.windows(shapes, cap=300_000, side=256, seed=4) != cut


def test_the_coarse_to_fine_sweep_picks_the_full_sweeps_threshold(monkeypatch):
    p, truth = hand_made()
    probs, truths = [np.stack([1 - p, p])], [truth]
    full = THRESHOLDS[choose_threshold(*threshold_curves(probs, truths, 0))]
    tried = []

    def counted(probs, truths, regions, thresholds):
        tried.extend(thresholds)
        return threshold_curves(probs, truths, regions, thresholds=thresholds)

    monkeypatch.setattr(v, "threshold_curves", counted)
    result = v.score(probs, truths, 2, regions=0)
    assert result["threshold"] == full == 0.18
    assert len(tried) == len(set(tried)) < len(THRESHOLDS) / 2
