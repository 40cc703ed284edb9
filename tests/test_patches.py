"""unet_teach.patches against independent references (numpy/torch padding and unfold)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_teach.data import synthetic_membranes
from unet_teach.patches import (PatchClassifier, distance_to_boundary, extract_patch,
                                extract_patches, mirror_pad, near_boundary, patch_dataset,
                                patch_preset, sample_pixels, sliding_window_scores,
                                sliding_window_segment, time_sliding_window, window_overlap)

RNG = np.random.default_rng(0)
IMAGE = RNG.random((13, 11)).astype(np.float32)


@pytest.mark.parametrize("window", [1, 3, 7, 9])
def test_patches_match_numpy_reflect_pad(window):
    r = window // 2
    padded = np.pad(IMAGE, r, mode="reflect")
    patches = extract_patches(IMAGE, window)                          # HW x w x w
    for p, (i, j) in enumerate(np.ndindex(*IMAGE.shape)):
        np.testing.assert_array_equal(patches[p], padded[i:i + window, j:j + window])
        np.testing.assert_array_equal(extract_patch(IMAGE, i, j, window), patches[p])


@pytest.mark.parametrize("window", [3, 5, 9])
def test_patches_match_torch_reflect_pad_and_unfold(window):
    r = window // 2
    x = torch.from_numpy(IMAGE)[None, None]                           # 1 x 1 x H x W
    cols = F.unfold(F.pad(x, (r, r, r, r), mode="reflect"), window)   # 1 x w*w x HW
    expected = cols[0].T.reshape(-1, window, window).numpy()
    np.testing.assert_array_equal(extract_patches(IMAGE, window), expected)


def test_selected_pixels_and_centre():
    rows, cols = sample_pixels(IMAGE.shape, 20, seed=3)
    patches = extract_patches(IMAGE, 5, rows, cols)
    np.testing.assert_array_equal(patches[:, 2, 2], IMAGE[rows, cols])
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 20            # distinct pixels


def test_sliding_window_equals_per_pixel_calls():
    torch.manual_seed(0)
    net = PatchClassifier(window=9, convs=((3, 4),), fc=(8,)).eval()
    labels, probs = sliding_window_segment(net, IMAGE, batch_size=17)  # odd batch: many batches
    rows, cols = sample_pixels(IMAGE.shape, 12, seed=1)
    padded = np.pad(IMAGE, 4, mode="reflect")
    for i, j in zip(rows, cols):
        x = torch.from_numpy(padded[i:i + 9, j:j + 9].copy())[None, None]
        with torch.no_grad():
            p = net(x)[0, :, 0, 0].softmax(0).numpy()
        np.testing.assert_allclose(probs[:, i, j], p, rtol=1e-5, atol=1e-6)
        assert labels[i, j] == p.argmax()
    scores = sliding_window_scores(net, IMAGE, rows, cols)
    np.testing.assert_allclose(scores, probs[:, rows, cols].T, rtol=1e-5, atol=1e-6)


def test_patch_dataset_labels_are_centre_pixels():
    images, masks = synthetic_membranes(2, 32, seed=1)
    x, y = patch_dataset(images, masks, window=7, n=200, seed=0, balanced=True)[:]
    assert x.shape == (200, 1, 7, 7) and y.shape == (200, 1, 1)
    assert y.float().mean() == 0.5                                    # balanced
    # every patch's centre value is a pixel of the image set with that label
    centre = x[:, 0, 3, 3].numpy()
    for v, label in zip(centre[:20], y[:20, 0, 0].numpy()):
        hits = np.argwhere(np.isclose(images, v))
        assert any(masks[k, i, j] == label for k, i, j in hits)


def test_window_overlap_and_boundary_distance():
    assert window_overlap(65, 1) == pytest.approx(64 / 65)
    assert window_overlap(9, 0, 3) == pytest.approx(6 / 9)
    assert window_overlap(9, 9) == 0.0
    mask = np.zeros((7, 7), np.int64)
    mask[:, 3] = 1                                                    # a vertical membrane
    d = distance_to_boundary(mask)
    np.testing.assert_array_equal(d[0], [3, 2, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(near_boundary(mask, 1)[0], [0, 0, 1, 1, 1, 0, 0])
    assert np.isinf(distance_to_boundary(np.zeros((3, 3)))).all()


def test_timing_extrapolates():
    net = patch_preset("w17")
    t = time_sliding_window(net, np.zeros((64, 64), np.float32), n_pixels=64)
    assert t["pixels_timed"] == 64 and t["extrapolated"] == 1.0
    assert t["seconds_per_image"] == pytest.approx(t["seconds_timed"] / 64 * 64 * 64)


def test_clear_errors():
    with pytest.raises(ValueError, match="odd"):
        extract_patches(IMAGE, 4)
    with pytest.raises(ValueError, match="smaller window"):
        mirror_pad(IMAGE, 11)
    with pytest.raises(ValueError, match="inside"):
        extract_patches(IMAGE, 3, rows=[13], cols=[0])
    with pytest.raises(ValueError, match="extract_patches"):
        PatchClassifier(window=9, convs=((3, 4),), fc=(8,))(torch.zeros(1, 1, 8, 8))


def test_pools_drops_the_pooling_of_the_later_stages_only():
    torch.manual_seed(0)
    net = PatchClassifier(window=33, convs=((3, 4),) * 3, fc=(8,), pools=1).eval()
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert net.feature_size == 11                       # 33 -> 31 -> 15 -> 13 -> 11, by hand
    assert PatchClassifier(33, convs=((3, 4),) * 3, pools=3).feature_size == 2
    assert PatchClassifier(9, convs=((3, 4),) * 3, pools=0).feature_size == 3
    # the same computation written out with torch.nn.functional
    x = torch.randn(5, 1, 33, 33)
    c1, c2, c3 = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    y = F.max_pool2d(F.relu(F.conv2d(x, c1.weight, c1.bias)), 2)
    y = F.relu(F.conv2d(F.relu(F.conv2d(y, c2.weight, c2.bias)), c3.weight, c3.bias))
    with torch.no_grad():
        expected = net.classifier(y)[:, :, None, None]
        torch.testing.assert_close(net(x), expected)


def test_pools_default_is_every_stage_with_the_same_weights():
    a = PatchClassifier(window=25, convs=((4, 16), (4, 32)), fc=(64,))
    b = PatchClassifier(window=25, convs=((4, 16), (4, 32)), fc=(64,), pools=2)
    assert a.pools == b.pools == 2
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    with pytest.raises(ValueError, match="pools counts"):
        PatchClassifier(window=25, convs=((4, 16), (4, 32)), pools=3)
    with pytest.raises(ValueError, match="too small"):
        PatchClassifier(window=9, convs=((3, 4),) * 3, pools=1)   # 9 -> 7 -> 3 -> 1
