"""The fully convolutional rewrite of a patch classifier computes exactly what the sliding
window computes, in one pass."""

import numpy as np
import pytest
import torch

from unet_teach.fcn import FullyConvolutional, fcn_scores, fcn_segment, to_fully_convolutional
from unet_teach.patches import PatchClassifier, mirror_pad, patch_preset, sliding_window_scores


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w)).astype(np.float32)


@pytest.mark.parametrize("name, size", [("w17", (23, 31)), ("w33", (40, 37)), ("w65", (33, 34))])
def test_dense_fcn_equals_sliding_window(name, size):
    torch.manual_seed(1)
    net = patch_preset(name).eval()
    img = _image(*size)
    _, probs = fcn_segment(to_fully_convolutional(net), img)
    ref = sliding_window_scores(net, img).T.reshape(-1, *size)
    assert probs.shape == ref.shape
    assert np.abs(probs - ref).max() <= 1e-5


def test_n4_on_sampled_pixels():
    torch.manual_seed(2)
    net = patch_preset("n4").eval()
    img = _image(60, 52, seed=3)
    _, probs = fcn_segment(to_fully_convolutional(net), img)
    rows, cols = np.array([0, 5, 59, 17, 59]), np.array([0, 51, 0, 9, 51])
    ref = sliding_window_scores(net, img, rows, cols)                 # P x K
    assert np.abs(probs[:, rows, cols].T - ref).max() <= 1e-5


def test_two_hidden_layers_and_three_classes_float64():
    torch.manual_seed(3)
    net = PatchClassifier(window=21, convs=((4, 5), (3, 6)), fc=(12, 7), num_classes=3).double().eval()
    img = _image(19, 22, seed=4).astype(np.float64)
    scores = fcn_scores(to_fully_convolutional(net), img)             # 3 x 19 x 22
    x = torch.as_tensor(mirror_pad(img, 10))
    for i, j in [(0, 0), (18, 21), (7, 13)]:
        patch = x[i:i + 21, j:j + 21][None, None]
        assert torch.allclose(scores[:, i, j], net(patch)[0, :, 0, 0], atol=1e-12)


def test_plain_fcn_has_output_stride_two_to_the_stages():
    torch.manual_seed(4)
    net = patch_preset("w33").double().eval()
    fcn = to_fully_convolutional(net, dense=False)
    assert isinstance(fcn, FullyConvolutional) and fcn.stride == 4
    x = torch.rand(1, 1, 33 + 4 * 5, 33 + 4 * 3, dtype=torch.float64)
    out = fcn(x)
    assert out.shape == (1, 2, 6, 4)
    with torch.no_grad():
        assert torch.allclose(out[0, :, 2, 3], net(x[:, :, 8:41, 12:45])[0, :, 0, 0], atol=1e-12)


def test_weights_are_copied_not_shared():
    net = patch_preset("w17")
    fcn = to_fully_convolutional(net)
    with torch.no_grad():
        next(fcn.parameters()).add_(1.0)
    assert not torch.equal(next(fcn.parameters()), next(net.parameters()))


def test_clear_errors():
    net = patch_preset("w17")
    with pytest.raises(ValueError, match="mirror-pad"):
        to_fully_convolutional(net)(torch.zeros(1, 1, 10, 30))
    with pytest.raises(ValueError, match="dense=True"):
        fcn_scores(to_fully_convolutional(net, dense=False), np.zeros((20, 20), np.float32))
    with pytest.raises(TypeError, match="PatchClassifier"):
        to_fully_convolutional(torch.nn.Conv2d(1, 1, 3))


# --------------------------------------------------------------------------- exercise 3 checks

def my_fully_convolutional(net, channels_last=False):
    """A hand-written plain conversion; ``channels_last`` reshapes the first Linear's weight
    as (out, s, s, C), the usual mistake."""
    import copy

    c, s = net.feature_channels, net.feature_size
    layers = [copy.deepcopy(net.features)]
    linears = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        if i == 0:
            conv = torch.nn.Conv2d(c, lin.out_features, s)
            w = lin.weight.data.reshape(lin.out_features, c, s, s)
            if channels_last:
                w = lin.weight.data.reshape(lin.out_features, s, s, c).permute(0, 3, 1, 2)
        else:
            conv = torch.nn.Conv2d(lin.in_features, lin.out_features, 1)
            w = lin.weight.data[:, :, None, None]
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(lin.bias.data)
        layers += [conv, torch.nn.ReLU()] if i < len(linears) - 1 else [conv]
    return torch.nn.Sequential(*layers)


def test_exercise_checks_reject_the_library_and_explain_mistakes(capsys):
    import copy
    import functools
    from unet_teach.checks import unet as checks

    checks.check_fully_convolutional(my_fully_convolutional)
    assert capsys.readouterr().out.strip() == "fully_convolutional: all 6 checks passed - 3 points"

    # the library's conversion is the answer key, not an answer, whichever way it is reached
    for answer in (lambda net: to_fully_convolutional(net, dense=False),
                   functools.partial(to_fully_convolutional, dense=False)):
        with pytest.raises(AssertionError) as info:
            checks.check_fully_convolutional(answer)
        first = str(info.value).splitlines()[0]
        assert first.startswith("fully_convolutional called the library's reference "
                                "implementation unet_teach.fcn.to_fully_convolutional on ")
        assert first.endswith("earns no points for this question.")

    def lazy(net):                      # the library reached only when the check runs the net
        class Lazy(torch.nn.Module):
            def forward(self, x):
                return to_fully_convolutional(net, dense=False)(x)
        return Lazy()
    with pytest.raises(AssertionError, match="called the library's reference implementation"):
        checks.check_fully_convolutional(lazy)

    flattened_wrongly = functools.partial(my_fully_convolutional, channels_last=True)
    with pytest.raises(AssertionError, match="(?s)9 x 9 patches.*max abs difference.*Hint: on one patch"):
        checks.check_fully_convolutional(flattened_wrongly)

    def stub(net):
        raise NotImplementedError()
    with pytest.raises(AssertionError, match="not implemented yet"):
        checks.check_fully_convolutional(stub)

    def mutates(net):
        with torch.no_grad():
            next(net.parameters()).zero_()
        return copy.deepcopy(net)
    with pytest.raises(AssertionError, match="changed the patch classifier's weights"):
        checks.check_fully_convolutional(mutates)
