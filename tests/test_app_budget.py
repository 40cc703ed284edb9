"""The time budget of ``unet-teach train`` (unet_teach.app.budget) on a fake clock.

The Budget and the training loop read the time from ``budget.clock``; here it is a clock
that moves only when a test (or a training step) moves it, so the arithmetic is checked to
the second without waiting and without flaking on a busy machine.
"""

from __future__ import annotations

import pytest
import torch

from unet_teach.app.budget import Budget, cosine_lr
from unet_teach.app.loop import WARMUP_STEPS, train_loop
from unet_teach.app.validate import slow_end_note


class FakeClock:
    """Seconds that pass only when ``advance`` is called."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_budget_arithmetic_on_a_fake_clock():
    clock = FakeClock()
    budget = Budget(seconds=100, elapsed_before=20, reserve_s=10, reserve_steps=5,
                    clock=clock)
    assert budget.clock_start == 1000.0 and budget.elapsed() == 20   # a resumed training
    clock.advance(30)
    assert budget.elapsed() == 50 and budget.fraction(0) == 0.5
    assert budget.reserve(2.0) == 10 + 5 * 2.0
    # one more 2 s step and the end (20 s) must fit in the 100 s: 50 + 2 + 20 < 100
    assert not budget.spent(7, step_time=2.0)
    clock.advance(27)                                  # 77 + 2 + 20 = 99: still fits
    assert not budget.spent(7, step_time=2.0)
    clock.advance(1)                                   # 78 + 2 + 20 = 100: no more steps
    assert budget.spent(7, step_time=2.0)
    clock.advance(100)
    assert budget.fraction(0) == 1.0                   # the schedule ends at 1
    assert budget.describe() == "1.66667 minutes"


def test_a_steps_budget_ignores_the_clock():
    clock = FakeClock()
    budget = Budget(steps=10, reserve_s=1e9, clock=clock)
    clock.advance(1e6)
    assert budget.fraction(4) == 0.4 and not budget.spent(9, step_time=1e3)
    assert budget.spent(10) and budget.describe() == "10 steps"


def _loop(budget: Budget, clock: FakeClock, step_seconds: float = 1.0, **kwargs):
    """Train a 1 x 1 convolution, each step taking ``step_seconds`` of the fake clock."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, kernel_size=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def next_batch():
        clock.advance(step_seconds)
        return torch.rand(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))

    losses, saved, warm = [], [], []
    step, why = train_loop(net, next_batch, optimizer, torch.nn.functional.cross_entropy,
                           budget, lr=0.1, losses=losses, checkpoint=saved.append,
                           progress=False, precision="fp32", after_warmup=warm.append,
                           **kwargs)
    return step, why, losses, saved, warm, optimizer


def test_the_loop_stops_when_the_end_would_not_fit():
    clock = FakeClock()
    budget = Budget(seconds=10, reserve_s=2, clock=clock)
    step, why, losses, saved, warm, optimizer = _loop(budget, clock, checkpoint_every_s=3)
    # after k steps of 1 s another fits while k + 1 (the step) + 2 (the end) < 10: k = 7
    assert (step, why, len(losses)) == (7, "done", 7)
    assert budget.elapsed() + budget.reserve(1.0) <= budget.seconds
    assert saved == [3, 6]                             # every 3 s of the clock
    assert warm == [1.0] and WARMUP_STEPS == 3         # the step time, once
    # the last step's learning rate is the schedule's at 6 s of 10
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(0.1, 0.6))


def test_a_resumed_loop_trains_for_the_time_that_remains():
    clock = FakeClock()
    budget = Budget(seconds=10, reserve_s=2, elapsed_before=4, clock=clock)
    step, why, losses, _, warm, _ = _loop(budget, clock, step=20)
    assert (step, why, len(losses)) == (23, "done", 3)  # 4 s done: 3 more steps fit
    assert warm == [1.0]


def test_a_budget_too_short_for_the_warm_up_still_reports_the_step_time():
    clock = FakeClock()
    budget = Budget(seconds=10, reserve_s=7, clock=clock)     # 1 + 1 + 7 < 10, 2 + 1 + 7 not
    step, why, _, _, warm, _ = _loop(budget, clock)
    assert (step, why, warm) == (2, "done", [1.0])


def test_the_end_estimate_notes_a_slow_validation():
    budget = Budget(seconds=600, reserve_s=30, reserve_steps=100, clock=FakeClock())
    assert slow_end_note(budget, step_time=1.0) is None            # 130 s of 600
    note = slow_end_note(budget, step_time=2.0)                     # 230 s of 600
    assert "3.8 min of the 10 min budget" in note and "--val-fraction" in note
    assert slow_end_note(Budget(steps=5, reserve_s=1e9), step_time=1.0) is None
