"""Checks for exercise 4 (losses for thin, imbalanced, touching structures).

Each check runs your function on a few fixed inputs, in float64 on the CPU, and compares it
with the reference in :mod:`unet_teach.losses`: the loss values and, for the two losses, the
gradients that ``loss.backward()`` puts on the scores. On success it prints one line with the
points; otherwise it raises ``CheckFailed`` (an ``AssertionError``) naming the input, the
expected and the returned value, and a hint (often the mistake your value matches, e.g. "you
counted the background class"), then the check's id (``MESSAGES[id]`` is the fixed text a
grader shows for it).

**The library is not the answer key.** The package holds the reference of every function an
exercise asks for, so a one-line answer ``return losses.dice_loss(scores, target)`` would
pass any comparison. :func:`call_own` (from ``_common``, shared by the checks of every
exercise) therefore watches the call of your function with a
profiler hook (``sys.setprofile``, also for threads it starts) and records every entry into
the code of the reference functions named for the question. Calling one, by any route (an
import alias, a wrapper, ``functools.partial``, or another library function that calls it,
such as ``dice_ce_loss``), fails the check with the reason "called the library's reference
implementation", so the question scores no points, and the grade report says why. Helpers
the question does not ask for (``torch.nn.functional``, ``scipy.ndimage``, ``numpy``) stay
allowed. Matching is by the code's file and qualified name, so reloading the module does not
slip through, and by the code's fingerprint, so neither does the library's source compiled
again (``exec(inspect.getsource(losses.dice_loss))``, or the text pasted into the cell); what
the hook cannot see is the source retyped with changes (which a person reading the submission
sees) and code run in another process.
The reference is called by the check itself only outside that window, for the expected
values.

Example:
    >>> import torch.nn.functional as F
    >>> check_weighted_cross_entropy(lambda s, t, w:
    ...     (w * F.cross_entropy(s, t, reduction="none")).mean() if s.shape[1] > 1 else
    ...     (w * F.binary_cross_entropy_with_logits(s[:, 0], t.to(s.dtype), reduction="none")).mean())
    weighted_cross_entropy: all 5 checks passed - 2 points

    Handing the task to the library scores nothing:

    >>> from unet_teach.losses import dice_loss
    >>> check_dice_loss(lambda scores, target, smooth=1e-5: dice_loss(scores, target, smooth))
    Traceback (most recent call last):
    ...
    unet_teach.course.checks._common.CheckFailed: dice_loss called the library's reference implementation unet_teach.losses.dice_loss on '2 x 3 x 5 x 4 scores (K = 3), random labels' (scores (2, 3, 5, 4) float64, target (2, 5, 4) int64): that is the answer key, not an answer, and earns no points for this question.
    Hint: write the computation yourself with torch (softmax or sigmoid, one-hot targets, sums over N, H, W); the library's function is only the reference the check compares with
    [check: common.library_reference]
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ... import losses
from ._common import call_own, fail, report_passed

TOLERANCE = 1e-6          # float64 here; a float32 computation agrees to about 1e-7
# What a grader may copy into a feedback file for each check that fails, by the id the check
# raises with (see _common.CheckFailed): a fixed text, what is wrong and where to look.
MESSAGES: dict[str, str] = {
    # the form of the answer (every question)
    "losses.returned_none":
        "The function returned None instead of its result.\nHint: look at the end of your "
        "function: the value it computes must be given back with `return`.",
    "losses.not_a_tensor":
        "The loss is not a torch tensor (a Python or numpy number, for example), so "
        "loss.backward() cannot train a net with it.\nHint: look for .item(), .numpy() or "
        "float(...) on the way to your result.",
    "losses.not_one_number":
        "The loss has several values instead of one number for the whole batch.\nHint: look "
        "at the last reduction: the question asks for a 0-dim tensor.",
    "losses.not_connected":
        "The loss is not connected to the scores, so loss.backward() cannot train a net.\n"
        "Hint: look for .detach(), .item(), .numpy() or torch.tensor(...) of intermediate "
        "values: compute with torch operations on the scores all the way.",
    "losses.backward_failed":
        "loss.backward() failed on the loss your function returns.\nHint: run the check cell "
        "to see torch's error; an in-place change of a tensor that the gradient needs is a "
        "common cause.",
    # Q1 Dice
    "losses.dice_loss.value":
        "dice_loss gives the wrong value on at least one of the check's inputs.\nHint: go "
        "through the question's steps one by one (probabilities, one-hot target, Dice per "
        "class with sums over N, H and W, then the loss from the classes it names) and look "
        "for the one you do differently.",
    "losses.dice_loss.not_finite":
        "dice_loss is not finite (nan or inf) on one of the check's inputs.\nHint: look at "
        "where you divide or take a logarithm: the smooth term keeps the ratio defined when a "
        "class is absent.",
    "losses.dice_loss.background":
        "dice_loss counts class 0 (the background), which the question leaves out.\nHint: look "
        "at which classes you average over.",
    "losses.dice_loss.not_loss":
        "dice_loss returns the Dice coefficient itself, not the loss (0 for a perfect "
        "prediction).\nHint: look at the last step: the question turns the mean Dice into a "
        "loss.",
    "losses.dice_loss.per_image":
        "dice_loss computes one Dice per image (sums over H and W only) instead of one per "
        "class for the whole batch.\nHint: look at the dimensions you sum over: N, H and W "
        "together.",
    "losses.dice_loss.numerator_smooth":
        "dice_loss adds smooth to the denominator only.\nHint: compare your ratio with the "
        "question's formula: smooth appears in the numerator too.",
    "losses.dice_loss.smooth_ignored":
        "dice_loss ignores its smooth argument: it gives the same loss whatever smooth it is "
        "given.\nHint: look at where your function uses smooth (a constant written in the "
        "formula instead of the argument, perhaps).",
    "losses.dice_loss.no_activation":
        "dice_loss uses the raw scores as if they were probabilities.\nHint: look at the "
        "question's first step: turn the scores into probabilities first.",
    "losses.dice_loss.softmax_one_map":
        "dice_loss applies a softmax to a single map (K = 1), which gives 1 everywhere.\n"
        "Hint: look at the question's first step for one map: a sigmoid, and the two classes "
        "built from it.",
    "losses.dice_loss.softmax_axis":
        "dice_loss takes the softmax over the wrong axis.\nHint: the probabilities of the "
        "classes must sum to 1 at every pixel: look at the dim of your softmax (the class "
        "axis of N x K x H x W).",
    "losses.dice_loss.gradient":
        "dice_loss gives the right value but the wrong gradient.\nHint: do not detach or round "
        "anything on the way, and let torch differentiate the activation (softmax or sigmoid) "
        "itself.",
    # Q2 weighted cross-entropy
    "losses.weighted_cross_entropy.value":
        "weighted_cross_entropy gives the wrong value on at least one of the check's inputs.\n"
        "Hint: compare your steps with the question's formula: the per-pixel negative "
        "log-likelihood (softmax for K >= 2, binary on the logit for K = 1), times the weight, "
        "summed, divided by the number of pixels.",
    "losses.weighted_cross_entropy.not_finite":
        "weighted_cross_entropy is not finite for confident scores: taking the log of a "
        "softmax (or sigmoid) in two steps underflows to log(0).\nHint: look at how you get "
        "the log-probabilities: the question names the one-step functions.",
    "losses.weighted_cross_entropy.by_weight_sum":
        "weighted_cross_entropy divides by the sum of the weights instead of the number of "
        "pixels.\nHint: look at the denominator: a weight of 10 must make a pixel count ten "
        "times.",
    "losses.weighted_cross_entropy.unweighted":
        "weighted_cross_entropy ignores the weights: it is the plain mean cross-entropy.\n"
        "Hint: look at where each pixel's loss is multiplied by its weight.",
    "losses.weighted_cross_entropy.not_divided":
        "weighted_cross_entropy returns the weighted sum without dividing it.\nHint: look at "
        "the question's formula: the sum is divided by N * H * W.",
    "losses.weighted_cross_entropy.softmax_one_map":
        "weighted_cross_entropy uses a softmax cross-entropy on a single map (K = 1), which is "
        "0 everywhere.\nHint: one map means the binary cross-entropy on the logit: look at "
        "how your function treats K = 1.",
    "losses.weighted_cross_entropy.gradient":
        "weighted_cross_entropy gives the right value but the wrong gradient.\nHint: do not "
        "detach or round anything on the way, and let torch differentiate the activation "
        "itself.",
    # Q3 weight map
    "losses.weight_map.changed_input":
        "weight_map changed the instance map it was given.\nHint: look for assignments into "
        "`instances`; only read it, and build new arrays.",
    "losses.weight_map.shape":
        "weight_map returns an array of the wrong shape.\nHint: one weight per pixel: the "
        "result has the instance map's shape.",
    "losses.weight_map.value":
        "weight_map gives wrong weights on at least one of the check's inputs.\nHint: check "
        "the two terms of the formula separately: the class weight alone (an input with no "
        "cell or one cell has no border term), then the border term, which uses the distances "
        "to the nearest and second-nearest cell.",
    "losses.weight_map.on_cells":
        "weight_map adds the border term on the cells' pixels too.\nHint: the question adds "
        "it on background pixels only: look at where your border term is added.",
    "losses.weight_map.no_balance":
        "weight_map leaves out the class-balancing weight w_c.\nHint: look at the question's "
        "definition of w_c: cells and background must weigh the same in total.",
    "losses.weight_map.twice_nearest":
        "weight_map uses the distance to the nearest cell twice instead of the nearest and "
        "the second-nearest.\nHint: look at how you pick d1 and d2 out of the per-cell "
        "distance maps.",
    "losses.weight_map.consecutive":
        "weight_map assumes the cell labels are 1, 2, 3...; labels need not be consecutive "
        "(3, 7 and 12 is fine).\nHint: look at how you list the cells you make distance maps "
        "for: only labels that occur in the map.",
}

POINTS = {"dice_loss": 3, "weighted_cross_entropy": 2, "weight_map": 3}


# --------------------------------------------------------------------------- helpers

def _scores(seed: int, shape, scale: float = 3.0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def _labels(seed: int, shape, k: int) -> torch.Tensor:
    return torch.randint(0, k, shape, generator=torch.Generator().manual_seed(seed))


def _confident(target: torch.Tensor, k: int, right: bool, margin: float = 20.0) -> torch.Tensor:
    """Scores N x K x H x W that say the target's class (``right``) or another one, sure."""
    if k == 1:
        sign = (2 * target - 1).double()[:, None]                        # +1 on class 1
        return sign * margin * (1 if right else -1)
    chosen = target if right else (target + 1) % k
    return F.one_hot(chosen, k).permute(0, 3, 1, 2).double() * 2 * margin - margin


def _describe(scores: torch.Tensor, target: torch.Tensor) -> str:
    return (f"scores {tuple(scores.shape)} {str(scores.dtype).replace('torch.', '')}, target "
            f"{tuple(target.shape)} {str(target.dtype).replace('torch.', '')}")


def _loss_value(value, name: str, where: str) -> torch.Tensor:
    if value is None:
        fail("losses.returned_none", f"{name} returned None on {where}; did you forget "
                                     "`return`?")
    if not isinstance(value, torch.Tensor):
        fail("losses.not_a_tensor", f"{name} returned {type(value).__name__} {value!r:.40} on "
                                    f"{where}; return a torch tensor (not .item() or a numpy "
                                    "number): loss.backward() needs the graph")
    if value.numel() != 1:
        fail("losses.not_one_number", f"{name} returned a tensor of shape {tuple(value.shape)} "
                                      f"on {where}; return one number for the whole batch (a "
                                      "0-dim tensor)")
    return value.reshape(())


def _close(got: float, expected: float, tolerance: float = TOLERANCE) -> bool:
    return abs(got - expected) <= tolerance * max(1.0, abs(expected))


def _check_loss(fn: Callable, name: str, where: str, args: tuple, reference: Callable,
                mistakes: Callable, hint: str, references: tuple, advice: str,
                ids: dict[str, str]) -> None:
    """Compare ``fn(*args)`` (loss value, then gradient on the scores) with ``reference``.

    ``mistakes()`` lists ``(value, why, check id)`` of the usual slips, tried in order when
    the value is wrong; ``ids`` names the checks of a value that is not finite
    (``"not_finite"``), of any other wrong value (``"value"``) and of a wrong gradient
    (``"gradient"``)."""
    scores = args[0]
    ref_scores = scores.clone().requires_grad_(True)
    expected_loss = reference(ref_scores, *args[1:])
    expected_loss.backward()
    expected = float(expected_loss.detach())
    tolerance = TOLERANCE if scores.dtype == torch.float64 else 1e-5
    mine = scores.clone().requires_grad_(True)
    rest = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args[1:])
    place = f"'{where}' ({_describe(scores, args[1])})"
    got_t = _loss_value(call_own(fn, name, mine, *rest, references=references, where=place,
                                 advice=advice), name, place)
    got = float(got_t.detach())
    if not np.isfinite(got):
        fail(ids["not_finite"],
             f"{name} is not finite on {place}: got {got}, expected {expected:.6g}.\nHint: "
             "log(softmax(x)) in two steps underflows to log(0) for confident scores; use "
             "F.log_softmax / F.cross_entropy, or F.binary_cross_entropy_with_logits for one map")
    if not _close(got, expected, tolerance):
        diagnosis, key = next(((why, key) for value, why, key in mistakes()
                               if _close(got, float(value), tolerance)), (hint, ids["value"]))
        fail(key, f"{name} is wrong on {place}: expected {expected:.6g}, got "
                  f"{got:.6g} (off by {abs(got - expected):.3g}).\nHint: {diagnosis}")
    if not got_t.requires_grad:
        fail("losses.not_connected",
             f"{name}'s result on {place} is not connected to the scores, so loss.backward() "
             "cannot train a net.\nHint: compute with torch operations on the scores all the "
             "way; no .item(), .numpy(), .detach() or torch.tensor(...) of intermediate values")
    try:
        got_t.backward()
    except RuntimeError as err:
        fail("losses.backward_failed",
             f"loss.backward() failed on {name}'s result on {place}: {err}".split("\n")[0])
    grad, ref_grad = mine.grad, ref_scores.grad.double()
    if grad is None or not torch.allclose(grad.double(), ref_grad, atol=10 * tolerance,
                                          rtol=10 * tolerance):
        diff = "no gradient" if grad is None else \
            f"max difference {(grad.double() - ref_grad).abs().max().item():.3g}"
        fail(ids["gradient"],
             f"the gradient of {name} on {place} differs from the reference's ({diff}) "
             "although the value agrees.\nHint: do not detach or round anything on the way, and "
             "let torch differentiate the activation (softmax/sigmoid) itself")


# --------------------------------------------------------------------------- Q1 Dice

def _dice_variant(scores, target, smooth=1e-5, *, background=False, activation="auto",
                  per_image=False, numerator_smooth=True, as_loss=True):
    """The soft Dice loss with one thing changed: what the usual mistakes compute."""
    k = scores.shape[1]
    if activation == "auto":
        p = torch.sigmoid(scores) if k == 1 else scores.softmax(1)
    elif activation == "none":
        p = scores
    elif activation == "softmax_always":
        p = scores.softmax(1)
    else:                                   # softmax over the wrong axis
        p = scores.softmax(int(activation))
    if k == 1:
        p = torch.cat([1 - p, p], 1)
    g = F.one_hot(target.long(), p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    dims = (2, 3) if per_image else (0, 2, 3)
    top = 2 * (p * g).sum(dims) + (smooth if numerator_smooth else 0)
    dice = top / ((p + g).sum(dims) + smooth)
    dice = dice if background else dice[..., 1:]
    value = dice.mean()
    return 1 - value if as_loss else value


DICE_REFERENCES = (losses.dice_loss, losses.dice_ce_loss)
DICE_ADVICE = ("write the computation yourself with torch (softmax or sigmoid, one-hot "
               "targets, sums over N, H, W)")


def check_dice_loss(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(scores, target, smooth=1e-5) -> 0-dim tensor``: the soft Dice loss of raw
    scores ``N x K x H x W`` (softmax for K >= 2; sigmoid, classes ``(1 - p, p)``, for K = 1)
    against class indices ``N x H x W``, sums over N, H and W, background class 0 left out,
    ``1 -`` the mean over the other classes. An answer that ignores ``smooth`` is named as such
    (on the case that sets it, the check runs it again with the default ``smooth``).

    Example:
        >>> check_dice_loss(lambda scores, target, smooth=1e-5:
        ...                 _dice_variant(scores, target, smooth))
        dice_loss: all 7 checks passed - 3 points
        >>> check_dice_loss(lambda scores, target, smooth=1e-5:
        ...                 _dice_variant(scores, target, smooth, background=True))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice_loss is wrong on '2 x 3 x 5 x 4 scores (K = 3), random labels' (scores (2, 3, 5, 4) float64, target (2, 5, 4) int64): expected 0.586623, got 0.593968 (off by 0.00734).
        Hint: you counted class 0 (the background); leave it out: on thin membranes the large, easy background would hide how the small class does
        [check: losses.dice_loss.background]
        >>> check_dice_loss(lambda scores, target, smooth=1e-5: _dice_variant(scores, target))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice_loss is wrong on 'K = 3 with smooth=1.0' (scores (2, 3, 4, 4) float64, target (2, 4, 4) int64): expected ..., got ... (off by ...).
        Hint: smooth is ignored: your dice_loss gives the same loss with smooth=1.0 as with the default smooth=1e-05; use the argument in both places the formula has it
        [check: losses.dice_loss.smooth_ignored]
    """
    name = "dice_loss"
    t3 = _labels(1, (2, 5, 4), 3)
    t1 = _labels(2, (2, 6, 6), 2)
    t2 = _labels(3, (1, 7, 5), 2)
    cases = [
        ("2 x 3 x 5 x 4 scores (K = 3), random labels", _scores(1, (2, 3, 5, 4)), t3, None),
        ("one sigmoid map (K = 1), random 0/1 labels", _scores(2, (2, 1, 6, 6)), t1, None),
        ("K = 2, confident and right", _confident(t2, 2, True), t2, None),
        ("K = 2, confident and wrong", _confident(t2, 2, False), t2, None),
        ("an empty mask (no foreground), K = 2", _scores(4, (2, 2, 4, 4)),
         torch.zeros(2, 4, 4, dtype=torch.long), None),
        ("all foreground, K = 1", _scores(5, (1, 1, 5, 6)), torch.ones(1, 5, 6, dtype=torch.long),
         None),
        ("K = 3 with smooth=1.0", _scores(6, (2, 3, 4, 4)), _labels(6, (2, 4, 4), 3), 1.0),
    ]
    for where, scores, target, smooth in cases:
        args = (scores, target) if smooth is None else (scores, target, smooth)
        s = 1e-5 if smooth is None else smooth
        k = scores.shape[1]

        def mistakes(scores=scores, target=target, s=s, k=k, smooth=smooth):
            found = []
            if smooth is not None and not _close(float(_dice_variant(scores, target, s)),
                                                 float(_dice_variant(scores, target))):
                # the same input with the default smooth: an answer that ignores the
                # argument gives what it gave here
                default = _loss_value(call_own(fn, name, scores.clone(), target.clone(),
                                               references=DICE_REFERENCES, where=f"'{where}' "
                                               "with the default smooth", advice=DICE_ADVICE),
                                      name, f"'{where}' with the default smooth")
                found.append((default.detach(), "smooth is ignored: your dice_loss gives the "
                              f"same loss with smooth={s!r} as with the default smooth=1e-05; "
                              "use the argument in both places the formula has it",
                              "losses.dice_loss.smooth_ignored"))
            found += [
                (_dice_variant(scores, target, s, background=True), "you counted class 0 (the "
                 "background); leave it out: on thin membranes the large, easy background "
                 "would hide how the small class does", "losses.dice_loss.background"),
                (_dice_variant(scores, target, s, as_loss=False), "that is the Dice "
                 "coefficient; the loss is 1 - Dice (0 for a perfect prediction)",
                 "losses.dice_loss.not_loss"),
                (_dice_variant(scores, target, s, per_image=True), "sum over N, H and W "
                 "together (one Dice per class for the whole batch), not per image",
                 "losses.dice_loss.per_image"),
                (_dice_variant(scores, target, s, numerator_smooth=False), "add smooth to the "
                 "numerator too: (2 sum p g + smooth) / (sum p + sum g + smooth)",
                 "losses.dice_loss.numerator_smooth"),
                (_dice_variant(scores, target, s, activation="none"), "turn the raw scores into "
                 "probabilities first: softmax over the class axis (dim=1), sigmoid for K = 1",
                 "losses.dice_loss.no_activation"),
            ]
            if k == 1:
                found.append((_dice_variant(scores, target, s, activation="softmax_always"),
                              "a softmax over one channel is 1 everywhere; one map means "
                              "sigmoid, with classes (1 - p, p)",
                              "losses.dice_loss.softmax_one_map"))
            else:
                found += [(_dice_variant(scores, target, s, activation=d), f"softmax over "
                           f"the class axis, dim=1 (not dim={d})", "losses.dice_loss.softmax_axis")
                          for d in (0, -1)]
            return found

        _check_loss(fn, name, where, args, losses.dice_loss, mistakes,
                    "probabilities p (softmax over dim=1, or sigmoid with classes (1 - p, p) "
                    "for K = 1), one-hot g, per class (2 sum p g + smooth) / (sum p + sum g + "
                    "smooth) with sums over N, H, W, then 1 - the mean over classes 1..K-1",
                    DICE_REFERENCES, DICE_ADVICE,
                    {"not_finite": "losses.dice_loss.not_finite", "value": "losses.dice_loss.value",
                     "gradient": "losses.dice_loss.gradient"})
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q2 cross-entropy

def _per_pixel_nll(scores, target):
    if scores.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(scores[:, 0], target.to(scores.dtype),
                                                  reduction="none")
    return F.cross_entropy(scores, target.long(), reduction="none")


CE_REFERENCES = (losses.cross_entropy, losses.default_loss, losses.dice_ce_loss)
CE_ADVICE = ("write it yourself: per-pixel NLL with F.cross_entropy(..., reduction='none') "
             "(or F.binary_cross_entropy_with_logits for K = 1), times the weights, summed, "
             "divided by N * H * W")


def check_weighted_cross_entropy(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(scores, target, weight) -> 0-dim tensor``: ``(weight * per-pixel negative
    log-likelihood).sum() / (N * H * W)``, softmax cross-entropy for K >= 2 and binary
    cross-entropy on the logit for K = 1.

    Example:
        >>> check_weighted_cross_entropy(lambda s, t, w: (w * _per_pixel_nll(s, t)).sum() / w.sum())
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: weighted_cross_entropy is wrong on '2 x 3 x 4 x 5 scores (K = 3), weights in [0.5, 3]' (scores (2, 3, 4, 5) float64, target (2, 4, 5) int64): expected 4.97204, got 2.78557 (off by 2.19).
        Hint: divide by the number of pixels N * H * W, not by the weights' sum: a weight of 10 must make a pixel count ten times
        [check: losses.weighted_cross_entropy.by_weight_sum]
    """
    name = "weighted_cross_entropy"
    gen = torch.Generator().manual_seed(7)
    t3 = _labels(7, (2, 4, 5), 3)
    t1 = _labels(8, (3, 5, 5), 2)
    t2 = _labels(9, (2, 6, 4), 2)
    cases = [
        ("2 x 3 x 4 x 5 scores (K = 3), weights in [0.5, 3]", _scores(7, (2, 3, 4, 5)), t3,
         0.5 + 2.5 * torch.rand(2, 4, 5, generator=gen, dtype=torch.float64)),
        ("one map (K = 1), weights in [1, 10]", _scores(8, (3, 1, 5, 5)), t1,
         1 + 9 * torch.rand(3, 5, 5, generator=gen, dtype=torch.float64)),
        ("K = 2, all weights 1 (the plain mean cross-entropy)", _scores(9, (2, 2, 6, 4)), t2,
         torch.ones(2, 6, 4, dtype=torch.float64)),
        ("K = 2, confident scores (+-60) in float32, half of them wrong",
         (_confident(t2, 2, True, 60.0) * torch.where(torch.arange(4) % 2 == 0, 1.0, -1.0)
          .double()).float(), t2, torch.full((2, 6, 4), 2.0)),
        ("K = 1, confident scores (+-60) in float32, some wrong",
         (_confident(t1, 1, True, 60.0) * torch.where(torch.arange(5) < 2, -1.0, 1.0)
          .double()).float(), t1, torch.ones(3, 5, 5)),
    ]
    for where, scores, target, weight in cases:
        def mistakes(scores=scores, target=target, weight=weight):
            nll = _per_pixel_nll(scores, target)
            found = [((weight * nll).sum() / weight.sum(), "divide by the number of pixels "
                      "N * H * W, not by the weights' sum: a weight of 10 must make a pixel "
                      "count ten times", "losses.weighted_cross_entropy.by_weight_sum"),
                     (nll.mean(), "multiply each pixel's loss by its weight before summing",
                      "losses.weighted_cross_entropy.unweighted"),
                     ((weight * nll).sum(), "divide the weighted sum by N * H * W (the number "
                      "of pixels)", "losses.weighted_cross_entropy.not_divided")]
            if scores.shape[1] == 1:
                found.append((torch.zeros(()), "a softmax cross-entropy over one channel is 0; "
                              "one map means binary cross-entropy on the logit "
                              "(F.binary_cross_entropy_with_logits)",
                              "losses.weighted_cross_entropy.softmax_one_map"))
            return found

        _check_loss(fn, name, where, (scores, target, weight),
                    lambda s, t, w: losses.cross_entropy(s, t, w), mistakes,
                    "per-pixel NLL: F.cross_entropy(scores, target, reduction='none') for K >= 2, "
                    "F.binary_cross_entropy_with_logits(scores[:, 0], target.float(), "
                    "reduction='none') for K = 1; then (weight * nll).sum() / (N * H * W)",
                    CE_REFERENCES, CE_ADVICE,
                    {"not_finite": "losses.weighted_cross_entropy.not_finite",
                     "value": "losses.weighted_cross_entropy.value",
                     "gradient": "losses.weighted_cross_entropy.gradient"})
    report_passed(POINTS, name, len(cases), points)


# --------------------------------------------------------------------------- Q3 weight map

def _weight_variant(instances, w0=10.0, sigma=5.0, *, balance=True, on_cells=False,
                    twice_nearest=False, consecutive=False):
    """The paper's weight map with one thing changed: what the usual mistakes compute."""
    from scipy import ndimage

    cell = instances > 0
    w = np.ones(instances.shape)
    if balance:
        n = cell.sum()
        for is_cell, count in ((True, n), (False, cell.size - n)):
            if count:
                w[cell == is_cell] = cell.size / (2 * count)
    ids = range(1, instances.max() + 1) if consecutive else np.unique(instances[cell])
    dist = [ndimage.distance_transform_edt(instances != i) for i in ids]
    if len(dist) >= 2:
        dist = np.sort(np.stack(dist), axis=0)
        d1, d2 = dist[0], dist[0] if twice_nearest else dist[1]
        border = w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma ** 2))
        w += border if on_cells else np.where(cell, 0, border)
    return w


def _squares(gap: int) -> np.ndarray:
    out = np.zeros((12, 17), np.int64)
    out[2:10, 1:8] = 1
    out[2:10, 8 + gap:15 + gap] = 2
    return out


def _instance_cases() -> list[tuple[str, np.ndarray, tuple]]:
    one = np.zeros((9, 11), np.int64)
    one[2:6, 3:9] = 1
    labels = np.zeros((14, 14), np.int64)
    labels[1:5, 1:6], labels[7:13, 2:6], labels[3:11, 8:13] = 3, 7, 12
    return [("two squares one pixel apart", _squares(1), ()),
            ("two touching squares (no gap)", _squares(0), ()),
            ("one cell", one, ()),
            ("no cell at all", np.zeros((6, 7), np.int64), ()),
            ("three cells labelled 3, 7 and 12", labels, ()),
            ("two squares one pixel apart, w0=5, sigma=2", _squares(1), (5.0, 2.0))]


def check_weight_map(fn: Callable, points: float | None = None) -> None:
    """Check ``fn(instances, w0=10, sigma=5) -> H x W`` float weights: the U-Net paper's
    ``w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``, the second term on background pixels
    only and only with two or more cells, ``w_c = (H W) / (2 * pixels of that class)``.

    Example:
        >>> check_weight_map(lambda inst, w0=10, sigma=5: _weight_variant(inst, w0, sigma))
        weight_map: all 6 checks passed - 3 points
        >>> check_weight_map(lambda inst, w0=10, sigma=5:
        ...                  _weight_variant(inst, w0, sigma, on_cells=True))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: weight_map is wrong on 'two squares one pixel apart' (12 x 17, labels [1, 2]): 112 of 204 weights differ, e.g. at pixel (2, 1): expected 0.910714, got 3.69109.
        Hint: add the border term on background pixels only (instances == 0); cells keep w_c
        [check: losses.weight_map.on_cells]
    """
    name = "weight_map"
    for where, instances, extra in _instance_cases():
        labels = np.unique(instances[instances > 0]).tolist()
        place = f"'{where}' ({instances.shape[0]} x {instances.shape[1]}, labels {labels})"
        expected = losses.weight_map(instances, *extra).astype(np.float64)
        given = instances.copy()
        got = call_own(fn, name, given, *extra, references=(losses.weight_map,), where=place,
                       advice="write it yourself with scipy.ndimage.distance_transform_edt, "
                              "one distance map per cell")
        if not np.array_equal(given, instances):
            fail("losses.weight_map.changed_input", f"{name} changed its input on {place}; only "
                                                    "read `instances`")
        if got is None:
            fail("losses.returned_none", f"{name} returned None on {place}; did you forget "
                                         "`return`?")
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().numpy()
        got = np.asarray(got, dtype=np.float64)
        if got.shape != expected.shape:
            fail("losses.weight_map.shape", f"{name} returned shape {got.shape} on {place}; "
                                            f"expected {expected.shape}, one weight per pixel")
        bad = ~np.isclose(got, expected, rtol=1e-4, atol=1e-5)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            hint, key = next(((why, key) for variant, why, key in [
                (_weight_variant(instances, *extra, on_cells=True), "add the border term on "
                 "background pixels only (instances == 0); cells keep w_c",
                 "losses.weight_map.on_cells"),
                (_weight_variant(instances, *extra, balance=False), "add the class-balancing "
                 "w_c: (number of pixels) / (2 * number of pixels of the pixel's class), so "
                 "cells and background weigh the same in total", "losses.weight_map.no_balance"),
                (_weight_variant(instances, *extra, twice_nearest=True), "d2 is the distance to "
                 "the *second* nearest cell: look at how you pick the two smallest distances at "
                 "each pixel", "losses.weight_map.twice_nearest"),
                (_weight_variant(instances, *extra, consecutive=True), "labels need not be "
                 f"consecutive (this map has {labels}): look at how you list the cells you make "
                 "distance maps for; a number between the labels is not a cell",
                 "losses.weight_map.consecutive"),
            ] if variant.shape == got.shape and np.allclose(got, variant, rtol=1e-4, atol=1e-5)),
                ("compare your map with the question's formula one term at a time: the class "
                 "weight w_c alone first (an input with no cell, or one cell, has no border "
                 "term), then the border term, which is added on background pixels when there "
                 "are at least two cells and uses the distances to the nearest and the "
                 "second-nearest cell", "losses.weight_map.value"))
            fail(key, f"{name} is wrong on {place}: {int(bad.sum())} of {bad.size} weights "
                      f"differ, e.g. at pixel {at}: expected {expected[at]:.6g}, got "
                      f"{got[at]:.6g}.\nHint: {hint}")
    report_passed(POINTS, name, len(_instance_cases()), points)
