"""The fit loop, evaluation, checkpoints, whole-image prediction and the run profile."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from unet_teach.data import synthetic_membranes
from unet_teach.infer import predict
from unet_teach.metrics import dice, pixel_accuracy
from unet_teach.models import UNet, center_crop, output_size
from unet_teach.profile import PROFILES, Profile, default_device, get_profile
from unet_teach.losses import cross_entropy, default_loss
from unet_teach.train import (CheckpointError, as_dataset, evaluate, fit, load_checkpoint,
                              save_checkpoint, seed_everything)

CPU = torch.device("cpu")
HISTORY_KEYS = {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_dice", "seconds",
                "step_loss"}


def tiny_unet(seed: int = 0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{"in_channels": 1, "out_channels": 2, "depth": 2, "base_width": 4, **kw})


@pytest.fixture(scope="module")
def membranes():
    train = synthetic_membranes(16, 32, seed=0)
    val = synthetic_membranes(4, 32, seed=1)
    return train, val


def _strip_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


# --------------------------------------------------------------------------- fit


def test_fit_loss_decreases_and_history_shape(membranes):
    train, val = membranes
    net = tiny_unet()
    before = evaluate(net, val)
    h = fit(net, train, val, epochs=6, batch_size=4, lr=1e-2, device="cpu", progress=False)
    assert set(h) == HISTORY_KEYS
    for key in ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_dice", "seconds"):
        assert len(h[key]) == 6, key
    assert h["epoch"] == [1, 2, 3, 4, 5, 6]
    assert h["step"] == [4, 8, 12, 16, 20, 24]             # 16 images / batch 4 per epoch
    assert len(h["step_loss"]) == 24
    assert all(np.isfinite(h["step_loss"]))
    assert h["seconds"] == sorted(h["seconds"]) and h["seconds"][0] > 0
    # the epoch's train loss is the mean of its step losses (equal batch sizes)
    assert h["train_loss"][0] == pytest.approx(np.mean(h["step_loss"][:4]))
    assert h["train_loss"][-1] == pytest.approx(np.mean(h["step_loss"][-4:]))
    print("train loss", np.round(h["train_loss"], 3), "val loss", np.round(h["val_loss"], 3))
    assert h["train_loss"][-1] < 0.9 * h["train_loss"][0]      # measured: 0.54 -> 0.42
    assert h["val_loss"][-1] < h["val_loss"][0] < before["loss"]
    assert h["val_accuracy"][-1] > 0.8
    assert all(0 <= a <= 1 for a in h["val_accuracy"])
    # the last validation numbers are those of the trained model
    after = evaluate(net, val)
    assert after["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert after["dice"] == pytest.approx(h["val_dice"][-1], rel=1e-6, nan_ok=True)


def test_fit_without_val_keeps_val_lists_empty(membranes):
    h = fit(tiny_unet(), membranes[0], epochs=2, device="cpu", progress=False)
    assert h["val_loss"] == h["val_accuracy"] == h["val_dice"] == []
    assert len(h["train_loss"]) == 2


def test_fit_is_deterministic_per_seed(membranes):
    train, val = membranes
    runs = [fit(tiny_unet(seed=3), train, val, epochs=2, batch_size=4, seed=5, device="cpu",
                progress=False) for _ in range(2)]
    assert _strip_seconds(runs[0]) == _strip_seconds(runs[1])
    other = fit(tiny_unet(seed=3), train, val, epochs=2, batch_size=4, seed=6, device="cpu",
                progress=False)
    assert other["step_loss"] != runs[0]["step_loss"]     # another shuffle order


def _draw_from_the_globals():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _seed_the_globals(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _NoisyData(torch.utils.data.Dataset):
    """Membranes with noise drawn from numpy's and Python's global generators, as a user's
    data set might do."""

    def __init__(self, images, masks):
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        noise = 0.1 * np.random.rand(*self.images[i].shape) * random.random()
        return (torch.from_numpy(self.images[i] + noise.astype(np.float32))[None],
                torch.from_numpy(self.masks[i]).long())


def test_fit_leaves_the_callers_random_generators_as_they_were(membranes):
    _seed_the_globals(11)
    expected = _draw_from_the_globals()             # what the caller draws next, no fit
    net = tiny_unet(seed=5, dropout=0.3)            # (built first: that draws too)
    _seed_the_globals(11)
    fit(net, _NoisyData(*membranes[0]), epochs=1, seed=3, device="cpu", progress=False)
    assert _draw_from_the_globals() == expected


def test_fit_repeats_dropout_and_the_datas_draws_whatever_the_callers_state(membranes):
    # dropout and the data set draw from the global generators: fit seeds them itself
    nets = []
    for caller in (0, 1):
        net = tiny_unet(seed=5, dropout=0.3)
        _seed_the_globals(caller)
        fit(net, _NoisyData(*membranes[0]), epochs=1, seed=2, device="cpu", progress=False)
        nets.append(net)
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), k


def test_fit_seed_makes_model_weights_identical(membranes):
    a, b = tiny_unet(seed=1), tiny_unet(seed=1)
    for net in (a, b):
        fit(net, membranes[0], epochs=1, seed=2, device="cpu", progress=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_fit_max_steps(membranes):
    h = fit(tiny_unet(), membranes[0], epochs=10, max_steps=6, batch_size=4, device="cpu",
            progress=False)
    assert len(h["step_loss"]) == 6
    assert h["step"] == [4, 6] and h["epoch"] == [1, 2]
    assert len(h["train_loss"]) == 2
    # max_steps larger than the epochs allow changes nothing
    h = fit(tiny_unet(), membranes[0], epochs=2, max_steps=100, batch_size=8, device="cpu",
            progress=False)
    assert h["step"] == [2, 4]


def test_fit_custom_optimizer_and_loss(membranes):
    net = tiny_unet()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)          # lr 0: weights must not move
    seen = []

    def loss_fn(out, target):
        seen.append((tuple(out.shape), tuple(target.shape), target.dtype))
        return default_loss(out, target)

    before = copy.deepcopy(net.state_dict())
    fit(net, membranes[0], epochs=1, batch_size=8, optimizer=opt, loss_fn=loss_fn, device="cpu",
        progress=False)
    assert seen == [((8, 2, 32, 32), (8, 32, 32), torch.int64)] * 2
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fit_accepts_dataset_and_multichannel(membranes):
    images, masks = membranes[0]
    rgb = np.repeat(images[:, None], 3, axis=1)
    ds = TensorDataset(torch.from_numpy(rgb), torch.from_numpy(masks))
    h = fit(tiny_unet(in_channels=3), ds, (rgb[:4], masks[:4]), epochs=1, device="cpu",
            progress=False)
    assert len(h["val_loss"]) == 1


def test_fit_single_map_net_uses_bce(membranes):
    net = tiny_unet(out_channels=1)
    h = fit(net, membranes[0], membranes[1], epochs=3, lr=1e-2, device="cpu", progress=False)
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert 0 <= h["val_accuracy"][-1] <= 1


def test_valid_padding_net_trains_with_cropped_target():
    size = 60
    out = output_size(size, depth=2)
    assert out == 20
    images, masks = synthetic_membranes(8, size, seed=4)
    crops = center_crop(torch.from_numpy(masks), out, out)
    seen = []

    def loss_fn(scores, target):
        seen.append(target.clone())
        return default_loss(scores, target)

    net = tiny_unet(padding="valid")
    h = fit(net, (images, masks), (images[:2], masks[:2]), epochs=2, batch_size=4, lr=1e-2,
            loss_fn=loss_fn, device="cpu", progress=False)
    assert all(np.isfinite(h["train_loss"]))
    assert len(h["val_dice"]) == 2
    train_targets = torch.cat(seen[:2])                      # epoch 1: every image once
    assert tuple(train_targets.shape) == (8, out, out)
    # every target the loss saw is the centre crop of one of the masks
    for t in train_targets:
        assert any(torch.equal(t, c) for c in crops)
    got = sorted(t.numpy().tobytes() for t in train_targets)
    assert got == sorted(c.numpy().tobytes() for c in crops)
    scores = evaluate(net, (images, masks))
    labels, probs = predict(net, images)
    assert labels.shape == (8, out, out) and probs.shape == (8, 2, out, out)
    assert scores["accuracy"] == pytest.approx(pixel_accuracy(labels, crops.numpy()))


# --------------------------------------------------------------------------- evaluate / predict


def test_evaluate_against_direct_computation(membranes):
    images, masks = membranes[1]
    net = tiny_unet(seed=4)
    scores = evaluate(net, (images, masks), batch_size=3)
    assert set(scores) == {"loss", "accuracy", "dice"}
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(images)[:, None])
    target = torch.from_numpy(masks)
    assert scores["loss"] == pytest.approx(F.cross_entropy(out, target).item(), rel=1e-5)
    labels = out.argmax(dim=1)
    assert scores["accuracy"] == pytest.approx(pixel_accuracy(labels, target))
    assert scores["dice"] == pytest.approx(dice(labels, target), nan_ok=True)


def test_evaluate_three_class_net():
    """``evaluate`` (and so ``fit`` with validation) must work for a K = 3 class net."""
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16)).astype(np.float32)
    masks = rng.integers(0, 3, (4, 16, 16))
    net = tiny_unet(out_channels=3)
    scores = evaluate(net, (images, masks))
    assert 0 <= scores["accuracy"] <= 1 and np.isfinite(scores["loss"])


def test_predict_shapes_and_consistency(membranes):
    images = membranes[1][0]
    net = tiny_unet(seed=2).train()
    labels, probs = predict(net, images, batch_size=3)
    assert net.training                                      # mode restored
    assert labels.shape == (4, 32, 32) and labels.dtype == np.int64
    assert probs.shape == (4, 2, 32, 32) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    # batch size does not change the answer; tensors and N x 1 x H x W work too
    labels1, probs1 = predict(net, torch.from_numpy(images)[:, None], batch_size=1)
    np.testing.assert_array_equal(labels1, labels)
    np.testing.assert_allclose(probs1, probs, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(images)[:, None]).softmax(dim=1).numpy()
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)


def test_predict_single_map_and_errors():
    net = tiny_unet(out_channels=1)
    x = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    labels, probs = predict(net, x)
    assert probs.shape == (2, 1, 16, 16)
    assert probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_array_equal(labels, (probs[:, 0] > 0.5).astype(np.int64))
    with pytest.raises(ValueError, match="N x H x W or N x C x H x W"):
        predict(net, x[0, 0])
    # integer images are converted to float (the docstring asks for floats in [0, 1])
    labels_u8, _ = predict(net, (x * 0).astype(np.uint8))
    assert labels_u8.shape == (2, 16, 16)


def test_fit_passes_weight_maps_to_the_loss_cropped_like_the_mask():
    size, out = 60, 20                                     # valid padding, depth 2
    images, masks = synthetic_membranes(4, size, seed=4)
    weights = np.random.default_rng(0).random((4, size, size)).astype(np.float32) + 0.5
    seen = []

    def loss_fn(scores, target, weight):
        seen.append((target.clone(), weight.clone()))
        return cross_entropy(scores, target, weight)

    net = tiny_unet(padding="valid")
    fit(net, (images, masks, weights), epochs=1, batch_size=4, loss_fn=loss_fn,
        device="cpu", progress=False, seed=0)
    target, weight = seen[0]
    assert tuple(weight.shape) == (4, out, out)
    # the weights are cropped exactly like the masks: match each sample by its mask crop
    mask_crops = center_crop(torch.from_numpy(masks), out, out)
    weight_crops = center_crop(torch.from_numpy(weights), out, out)
    for t, w in zip(target, weight):
        k = next(i for i in range(4) if torch.equal(mask_crops[i], t))
        torch.testing.assert_close(w, weight_crops[k])


def test_weighted_training_default_loss_uses_the_weights():
    images, masks = synthetic_membranes(4, 32, seed=1)
    ones = np.ones(masks.shape, np.float32)
    net_a, net_b = tiny_unet(), tiny_unet()
    ha = fit(net_a, (images, masks), epochs=1, device="cpu", progress=False)
    hb = fit(net_b, (images, masks, 3 * ones), epochs=1, device="cpu", progress=False)
    # weight 3 everywhere: the mean-over-pixels loss is three times the plain one at step 1
    assert hb["step_loss"][0] == pytest.approx(3 * ha["step_loss"][0], rel=1e-5)


def test_as_dataset_rejects_weights_of_another_shape():
    images, masks = synthetic_membranes(2, 16, seed=0)
    with pytest.raises(ValueError, match="one weight per pixel"):
        as_dataset((images, masks, np.ones((2, 8, 8), np.float32)))


def test_seed_everything():
    g1 = seed_everything(42)
    a = (torch.rand(3), np.random.rand(), torch.rand(2, generator=g1))
    g2 = seed_everything(42)
    b = (torch.rand(3), np.random.rand(), torch.rand(2, generator=g2))
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and torch.equal(a[2], b[2])


# --------------------------------------------------------------------------- as_dataset


def test_as_dataset_conversions_and_errors():
    images = np.zeros((3, 8, 8), np.float64)
    masks = np.zeros((3, 8, 8), np.int32)
    ds = as_dataset((images, masks))
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (8, 8) and y.dtype == torch.int64
    assert len(ds) == 3
    assert as_dataset(ds) is ds
    x, _ = as_dataset([np.zeros((2, 3, 8, 8), np.float32), np.zeros((2, 8, 8), int)])[1]
    assert x.shape == (3, 8, 8)
    with pytest.raises(TypeError, match="expected \\(images, masks\\)"):
        as_dataset(images)
    with pytest.raises(TypeError):
        as_dataset((images, masks, masks, masks))
    with pytest.raises(ValueError, match="N x H x W"):
        as_dataset((images[0], masks[0]))
    with pytest.raises(ValueError, match="do not match"):
        as_dataset((images, masks[:2]))
    with pytest.raises(ValueError, match="do not match"):
        as_dataset((images, np.zeros((3, 8, 9), int)))
    with pytest.raises(ValueError, match="floating point.*255"):
        as_dataset((images.astype(np.uint8), masks))


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(membranes, tmp_path):
    net = tiny_unet(seed=7)
    path = tmp_path / "ckpt" / "net.pt"
    h = fit(net, membranes[0], epochs=2, device="cpu", checkpoint=path, progress=False)
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]     # no temporary file
    # the file loads with torch's safe loader, no code run
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model", "extra", "optimizer"}
    assert state["extra"] == {"epoch": 2, "step": h["step"][-1]}
    fresh = tiny_unet(seed=99)
    opt = torch.optim.Adam(fresh.parameters())
    extra = load_checkpoint(path, fresh, opt)
    assert extra == {"epoch": 2, "step": 8}
    for k, v in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    x = torch.from_numpy(membranes[1][0])[:, None]
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), net.eval()(x), rtol=0, atol=0)
    # the optimiser state came back too (Adam's moments for every parameter)
    assert len(opt.state) == len(list(fresh.parameters()))
    first = next(iter(opt.state.values()))
    assert float(first["step"]) == 8


def test_a_save_cut_short_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "net.pt", tiny_unet(seed=1), epoch=1)

    def interrupted(state, f):
        open(f, "wb").write(b"half a checkpoint")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_unet(seed=2), epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path, tiny_unet(seed=3)) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]


def test_save_checkpoint_extra_and_no_optimizer(tmp_path):
    net = tiny_unet()
    p = save_checkpoint(tmp_path / "a" / "b.pt", net, epoch=3, note="hello", lr=0.5)
    assert p == tmp_path / "a" / "b.pt"
    state = torch.load(p, weights_only=True)
    assert "optimizer" not in state
    assert load_checkpoint(p, tiny_unet(seed=1)) == {"epoch": 3, "note": "hello", "lr": 0.5}
    # overwriting an existing checkpoint works (atomic replace)
    save_checkpoint(p, net, epoch=4)
    assert load_checkpoint(p, tiny_unet())["epoch"] == 4


def test_checkpoint_mismatch_depth(tmp_path):
    p = save_checkpoint(tmp_path / "d2.pt", tiny_unet())
    deeper = tiny_unet(depth=3)
    before = copy.deepcopy(deeper.state_dict())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p, deeper)
    msg = str(info.value)
    assert "missing in the checkpoint" in msg
    assert "encoder.2.0.weight" in msg                       # the third level is new
    assert "shape differs" in msg                            # the bottleneck got wider
    assert "bottleneck.0.weight" in msg
    assert "same arguments" in msg
    # nothing was loaded into the model
    for k, v in deeper.state_dict().items():
        assert torch.equal(v, before[k]), k
    # and the other way round: a deeper checkpoint into a shallower model
    p3 = save_checkpoint(tmp_path / "d3.pt", tiny_unet(depth=3))
    with pytest.raises(CheckpointError, match="not in the model"):
        load_checkpoint(p3, tiny_unet())


def test_checkpoint_mismatch_width(tmp_path):
    p = save_checkpoint(tmp_path / "w4.pt", tiny_unet())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(p, tiny_unet(base_width=8))
    msg = str(info.value)
    assert "shape differs" in msg
    assert "encoder.0.0.weight: checkpoint (4, 1, 3, 3) vs model (8, 1, 3, 3)" in msg
    assert "missing in the checkpoint" not in msg
    assert isinstance(info.value, ValueError)


def test_corrupt_checkpoint(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(p, tiny_unet())
    # a truncated real checkpoint
    good = save_checkpoint(tmp_path / "good.pt", tiny_unet())
    raw = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt", tiny_unet())
    # a readable file that is not a checkpoint
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'model'"):
        load_checkpoint(tmp_path / "other.pt", tiny_unet())
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt", tiny_unet())


class _Evil:
    """Unpickling this would create a file: a safe loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"model": _Evil(marker)}, p)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(p, tiny_unet())
    assert not marker.exists()
    # the same file does run code with the unsafe loader (here: harmlessly creates a file),
    # so the check above is meaningful
    loaded = torch.load(p, weights_only=False)
    loaded["model"].close()
    assert marker.exists()


# --------------------------------------------------------------------------- profile


def test_profile_env_override(monkeypatch):
    monkeypatch.delenv("UNET_TEACH_DEVICE", raising=False)
    monkeypatch.setenv("UNET_TEACH_PROFILE", "full")
    p = get_profile()
    assert p.name == "full" and not p.fast
    assert p.pick(fast=1, full=2) == 2
    monkeypatch.setenv("UNET_TEACH_PROFILE", "fast")
    p = get_profile()
    assert p.name == "fast" and p.fast
    assert p.pick(fast=1, full=2) == 1
    monkeypatch.setenv("UNET_TEACH_PROFILE", " FULL ")
    assert get_profile().name == "full"
    monkeypatch.setenv("UNET_TEACH_PROFILE", "")
    assert get_profile().name == ("full" if torch.cuda.is_available() else "fast")


def test_profile_default_follows_device(monkeypatch):
    monkeypatch.delenv("UNET_TEACH_PROFILE", raising=False)
    monkeypatch.setenv("UNET_TEACH_DEVICE", "cpu")
    p = get_profile()
    assert p.name == "fast" and p.device == CPU
    for threads, said in [(1, "1 CPU thread,"), (4, "4 CPU threads,")]:
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        assert str(p) == (f"fast profile on cpu, {said} torch {torch.__version__}")
    monkeypatch.delenv("UNET_TEACH_DEVICE")
    expected = "full" if torch.cuda.is_available() else "fast"
    assert get_profile().name == expected
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_profile_invalid(monkeypatch):
    monkeypatch.setenv("UNET_TEACH_PROFILE", "turbo")
    with pytest.raises(ValueError, match="turbo") as info:
        get_profile()
    assert "fast" in str(info.value) and "full" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_device_cuda_without_cuda(monkeypatch):
    monkeypatch.setenv("UNET_TEACH_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        default_device()


def test_profile_pick_and_dataclass():
    assert PROFILES == ("fast", "full")
    fast, full = Profile("fast", CPU), Profile("full", CPU)
    assert fast.pick(fast="a", full="b") == "a"
    assert full.pick(fast="a", full="b") == "b"
    assert fast.pick(fast=[1], full=None) == [1]
    with pytest.raises(Exception):
        fast.name = "full"                                   # frozen


def test_fit_explains_labels_the_net_cannot_score():
    images = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    masks = np.full((2, 16, 16), 255, dtype=np.int64)          # 8-bit labels, not converted
    net = torch.nn.Conv2d(1, 2, 1)
    with pytest.raises(ValueError, match=r"class index 255 .* 2 class map"):
        fit(net, (images, masks), epochs=1, progress=False)


def test_fit_refuses_empty_training_data():
    empty = (np.zeros((0, 16, 16), np.float32), np.zeros((0, 16, 16), np.int64))
    with pytest.raises(ValueError, match="training data is empty"):
        fit(torch.nn.Conv2d(1, 2, 1), empty, epochs=1, progress=False)


def test_fit_sets_the_epoch_of_a_data_set_that_has_one():
    epochs_seen = []

    class Recording(torch.utils.data.Dataset):
        def __init__(self):
            self.images, self.masks = synthetic_membranes(4, 16, seed=0)

        def set_epoch(self, epoch):
            epochs_seen.append(epoch)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.from_numpy(self.images[i])[None], torch.from_numpy(self.masks[i])

    fit(tiny_unet(), Recording(), epochs=3, batch_size=2, device="cpu", progress=False)
    assert epochs_seen == [1, 2, 3]


def test_fit_onecycle_schedule_rises_then_ends_near_zero(membranes):
    images, masks = membranes[0]
    net = UNet(1, 2, depth=2, base_width=4)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    seen = []

    def loss_fn(scores, target):                    # records the rate this step will use
        seen.append(optimizer.param_groups[0]["lr"])
        return default_loss(scores, target)

    fit(net, (images, masks), epochs=50, max_steps=20, batch_size=2, optimizer=optimizer,
        loss_fn=loss_fn, device="cpu", progress=False, schedule="onecycle")
    assert len(seen) == 20
    assert seen[0] == pytest.approx(0.01 / 25)       # OneCycleLR's start: max / 25
    assert max(seen) == pytest.approx(0.01, rel=0.05)
    assert seen.index(max(seen)) == pytest.approx(0.3 * 19, abs=1.5)
    assert seen[-1] < 1e-4
    with pytest.raises(ValueError, match="onecycle"):
        fit(net, (images, masks), schedule="cosine", progress=False)
