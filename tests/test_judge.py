"""Results as data (``unet_teach.course.evidence``) and their judge outside the kernel
(``unet_teach.course.grade.judge``), without starting a kernel."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from unet_teach.course import evidence
from unet_teach.course.evidence import decode, encode, fill_parameters, number, parameter_shapes
from unet_teach.course.grade.judge import judge


def want(name, value, rule="equal", bound=None, rtol=1e-7, atol=1e-9):
    return {"name": name, "value": encode(value), "rule": rule, "bound": bound,
            "rtol": rtol, "atol": atol}


def got(name, value):
    return {"name": name, "value": encode(value)}


@pytest.mark.parametrize("value", [None, True, 3, -2.5, float("nan"), float("inf"), "text",
                                   [1, [2.0, "x"]], np.arange(6).reshape(2, 3),
                                   np.linspace(0, 1, 5), np.array([True, False]),
                                   np.float32(0.25), np.int64(7)])
def test_values_survive_the_trip_through_json(value):
    back = decode(json.loads(json.dumps(encode(value))))
    if isinstance(value, np.ndarray):
        assert isinstance(back, np.ndarray) and back.shape == value.shape
        assert np.array_equal(back, value)
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value


def test_a_tensor_that_needs_grad_is_recorded_as_its_values():
    t = torch.ones(2, 2, requires_grad=True) * 3
    assert np.array_equal(decode(encode(t)), np.full((2, 2), 3.0))
    assert number(t.sum()) == 12.0 and number(np.array(2)) == 2.0 and number([1]) == [1]


@pytest.mark.parametrize("bad", [
    "not a dict", {"type": "array", "kind": "float", "shape": [3], "data": "AAAA"},
    {"type": "array", "kind": "object", "shape": [1], "data": ""},
    {"type": "array", "kind": "float", "shape": [-1], "data": ""},
    {"type": "pickle", "v": "gASV"}, {"type": "int", "v": True}, {"type": "float", "v": "1e400x"}])
def test_malformed_records_from_a_kernel_are_refused(bad):
    with pytest.raises(ValueError):
        decode(bad)


def test_equal_within_the_instructors_tolerance_only():
    expected = [want("scores", np.array([1.0, 2.0]), rtol=1e-6, atol=0)]
    assert judge(expected, [got("scores", np.array([1.0, 2.000001]))]) is None
    why = judge(expected, [got("scores", np.array([1.0, 2.1]))])
    assert why == "scores: 1 of 2 values differ from the expected ones (largest difference 0.1)"
    assert "expected shape (2,), got (3,)" in judge(expected, [got("scores", np.zeros(3))])
    assert "expected an array" in judge(expected, [got("scores", 1.5)])
    # the tolerance a student's record carries is ignored: the instructor's applies
    loose = dict(got("scores", np.array([1.0, 2.1])), rtol=1.0, atol=1.0)
    assert judge(expected, [loose]) is not None


def test_numbers_lists_and_nan():
    assert judge([want("d", float("nan"))], [got("d", float("nan"))]) is None
    assert judge([want("d", float("nan"))], [got("d", 0.0)]) == "d: expected nan, got 0"
    assert judge([want("n", 31_030_658)], [got("n", 31_030_657)]) == \
        "n: expected 31030658, got 31030657"
    assert judge([want("sizes", [188])], [got("sizes", [188.0])]) is None
    assert judge([want("sizes", [188])], [got("sizes", [])]) == "sizes: expected 1 items, got 0"
    assert judge([want("flag", True)], [got("flag", 1)]) == "flag: expected True, got 1"


def test_bounds_and_missing_or_duplicated_records():
    expected = [want("seconds", 12.0, rule="lt", bound=60), want("seeds", 3, rule="ge", bound=2)]
    assert judge(expected, [got("seconds", 59.0), got("seeds", 2)]) is None
    assert judge(expected, [got("seconds", 61.0), got("seeds", 2)]) == \
        "seconds: expected < 60, got 61"
    assert "did not report" in judge(expected, [got("seeds", 5)])
    # a name reported twice (the student's code sending its own before or after the real
    # one) fails, whichever of the two is right
    for pair in ([got("d", 0.5), got("d", 0.25)], [got("d", 0.25), got("d", 0.5)]):
        assert "more than once" in judge([want("d", 0.5)], pair)
    # a record whose data is malformed counts as missing
    broken = {"name": "d", "value": {"type": "array", "kind": "float", "shape": [2],
                                     "data": base64.b64encode(b"1234").decode()}}
    assert "did not report" in judge([want("d", 0.5)], [broken])


class Forward(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class CreatedBackwards(nn.Module):
    """The same net, its layers created in the other order."""

    def __init__(self):
        super().__init__()
        self.b = nn.Conv2d(3, 2, 1)
        self.a = nn.Conv2d(1, 3, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_fill_parameters_follows_the_forward_pass_not_the_creation_order():
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    one, two = Forward(), CreatedBackwards()
    assert parameter_shapes(one, x) == parameter_shapes(two, x) == [[3, 1, 3, 3], [3], [2, 3, 1, 1], [2]]
    fill_parameters(one, x, seed=4)
    fill_parameters(two, x, seed=4)
    with torch.no_grad():
        assert torch.equal(one(x), two(x))


def test_record_sends_nothing_outside_the_grader(monkeypatch, capsys):
    monkeypatch.delenv(evidence.ENV, raising=False)
    evidence.record("x", 1)                       # no IPython display outside the grader
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="rule must be one of"):
        evidence.record("x", 1, rule="close")
    with pytest.raises(ValueError, match="needs a bound"):
        evidence.record("x", 1, rule="lt")
