"""The speed ladder (unet_teach.bench and ``unet-teach bench``) and its timing helpers
(unet_teach.timing) on a CPU, in a tiny configuration: 64 x 64 crops, batch 2, base width
4, 2 timed steps (a few seconds).

On a CPU only the fp32 rung and fp32 inference are timed; every rung that needs CUDA must
be present and say why it was skipped. The FLOP count is checked against a hand count of
the U-Net's convolutions, the peak table against the datasheets' numbers.
"""

from __future__ import annotations

import json
import platform
import socket
from datetime import datetime

import pytest
import torch

from unet_teach import bench, timing
from unet_teach.cost import count_macs
from unet_teach.course.cli import main
from unet_teach.models import UNet

TINY = ["--size", "64", "--batch", "2", "--width", "4", "--steps", "2", "--warmup", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", *TINY, "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


def test_every_rung_is_present_and_the_cuda_ones_say_why_they_were_skipped(result):
    data, _ = result
    assert [r["name"] for r in data["rungs"]] == [r.name for r in bench.LADDER] == [
        "fp32", "tf32", "bf16", "bf16+channels_last", "bf16+channels_last+compile"]
    fp32, *cuda_rungs = data["rungs"]
    assert fp32["skipped"] is None and fp32["images_per_s"] > 0 and fp32["tflops"] > 0
    for row in cuda_rungs + [data["recipe"]]:
        assert row["skipped"].startswith("needs a CUDA GPU"), row
        assert "images_per_s" not in row
    assert data["recipe"]["name"].startswith("common recipe: fp16+GradScaler+channels_last")
    assert data["best"]["name"] == "fp32" and data["best"]["speedup_vs_recipe"] is None
    assert data["memory"]["skipped"] and data["memory"]["rows"] == []
    fp32_inference, bf16_inference = data["inference"]
    assert fp32_inference["tiles_per_s"] > 0 and bf16_inference["skipped"]


def test_json_file_schema(result):
    data, out = result
    assert data["schema"] == bench.SCHEMA
    assert {"date", "device", "torch", "cuda", "config", "flops", "rungs", "recipe", "best",
            "inference", "memory"} <= data.keys()
    datetime.fromisoformat(data["date"])
    assert data["torch"] == torch.__version__ and data["cuda"] == torch.version.cuda
    assert data["device"]["type"] == "cpu" and data["device"]["peak_tflops"] is None
    assert data["config"]["model"] == {**bench.PAPER, "base_width": 4}
    assert {k: data["config"][k] for k in ("size", "batch", "width", "steps", "warmup")} == \
        {"size": 64, "batch": 2, "width": 4, "steps": 2, "warmup": 1}
    timed = data["rungs"][0]
    for key in ("name", "precision", "images_per_s", "step_ms", "tflops", "fraction_of_peak",
                "peak_memory_bytes", "skipped", "first_step_s"):
        assert key in timed, key
    assert timed["fraction_of_peak"] is None and timed["peak_memory_bytes"] is None
    assert timed["images_per_s"] == pytest.approx(2 / (timed["step_ms"] / 1e3))
    assert timed["tflops"] == pytest.approx(
        data["flops"]["training_flops_per_step"] / (timed["step_ms"] / 1e3) / 1e12)
    assert socket.gethostname() not in out.read_text()          # host-independent
    assert not list(out.parent.glob(".*.tmp"))                  # written atomically


def hand_count_macs(size: int, width: int, depth: int = 4) -> int:
    """Forward MACs of a same-padded UNet(1, 2), counted from the architecture by hand:
    a 3x3 conv is out pixels x C_in x C_out x 9, the 2x2 transposed conv is in pixels x
    C_in x C_out x 4, the 1x1 head out pixels x C_in x 2."""
    w = [width * 2**i for i in range(depth + 1)]
    side = [size // 2**i for i in range(depth + 1)]
    macs, c_in = 0, 1
    for i in range(depth + 1):                                  # encoder and bottleneck
        macs += side[i] ** 2 * 9 * (c_in * w[i] + w[i] * w[i])
        c_in = w[i]
    for i in range(depth - 1, -1, -1):                          # expanding path
        macs += side[i + 1] ** 2 * w[i + 1] * w[i] * 4          # transposed conv
        macs += side[i] ** 2 * 9 * (2 * w[i] * w[i] + w[i] * w[i])
    return macs + size**2 * w[0] * 2


def test_flop_accounting_is_6_times_the_forward_macs_times_the_batch(result):
    data, _ = result
    macs = count_macs(UNet(1, 2, depth=4, base_width=4, padding="same"), (1, 1, 64, 64))
    assert macs == hand_count_macs(64, 4)
    assert data["flops"]["forward_macs_per_image"] == macs
    assert data["flops"]["training_flops_per_step"] == 6 * macs * 2


@pytest.mark.parametrize("name, label, fp32, tf32, bf16", [
    # dense numbers: the datasheets' "with sparsity" tensor figures halved
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 67.0, 494.7, 989.4),     # 989 / 1979 sparse
    ("NVIDIA H100 PCIe", "H100 PCIe", 51.0, 378.0, 756.0),          # 756 / 1513 sparse
    ("NVIDIA H100 NVL", "H100 NVL", 60.0, 417.5, 835.5),
    ("NVIDIA H200", "H200 SXM", 67.0, 494.7, 989.4),
    ("NVIDIA A100-SXM4-80GB", "A100", 19.5, 156.0, 312.0),
    ("NVIDIA A100 80GB PCIe", "A100", 19.5, 156.0, 312.0),
    ("NVIDIA L4", "L4", 30.3, 60.0, 121.0),
    ("NVIDIA L40S", "L40S", 91.6, 183.0, 366.5),          # 366 / 733 sparse
    ("Tesla T4", "T4", 8.1, None, None),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 82.6, 82.6, 165.2),
])
def test_peak_table_lookup(name, label, fp32, tf32, bf16):
    peak = bench.peak_tflops(name)
    assert (peak["label"], peak["fp32"], peak["tf32"], peak["bf16"]) == (label, fp32, tf32, bf16)


def test_unknown_devices_have_no_peak():
    assert bench.peak_tflops("NVIDIA GeForce GTX 1080") is None
    assert bench.peak_tflops("CPU x86_64") is None


def test_tf32_is_half_the_16_bit_rate_on_data_centre_tensor_cores():
    # an architectural fact of Ampere and Hopper data-centre parts, independent of the table
    for _, label, _, tf32, bf16, fp16 in bench.PEAKS:
        if label.split()[0] in ("H100", "H200", "GH200", "A100", "A10", "L4", "L40S"):
            assert tf32 == pytest.approx(bf16 / 2, rel=0.01) and bf16 == fp16, label


def test_old_gpus_skip_tf32_and_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    cuda = torch.device("cuda")
    assert "compute capability 8.0" in bench.skip_reason(bench.LADDER[1], cuda)
    assert "7.5" in bench.skip_reason(bench.LADDER[2], cuda)
    assert bench.skip_reason(bench.LADDER[0], cuda) is None
    assert bench.skip_reason(bench.RECIPE, cuda) is None       # fp16 runs on a T4


def test_warmup_steps_are_not_timed():
    calls = []
    t = timing.time_steps(lambda: calls.append("step"), torch.device("cpu"), steps=3, warmup=2,
                          before_timing=lambda: calls.append("reset"))
    assert calls == ["step", "step", "reset", "step", "step", "step"]
    assert len(t["times"]) == 3 and t["best_s"] <= t["median_s"]


def test_out_folder_gets_a_dated_file_name(tmp_path, capsys):
    assert main(["bench", *TINY, "--steps", "1", "--no-memory", "--no-inference",
                 "--no-compile", "--out", f"{tmp_path}/"]) == 0
    files = list(tmp_path.glob("bench-cpu-*.json"))
    assert len(files) == 1 and f"wrote {files[0]}" in capsys.readouterr().out
    assert files[0].name == bench.default_out(".", f"CPU {platform.machine()}").name
    data = json.loads(files[0].read_text())
    assert data["rungs"][-1]["skipped"] == "left out (--no-compile)"
    assert data["inference"] == []


def test_bad_size_is_one_line(capsys):
    assert main(["bench", "--size", "60", "--device", "cpu"]) == 2
    assert "multiples of 16" in capsys.readouterr().err


def test_a_failing_rung_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("triton: no kernel for this shape\nmore detail")

    monkeypatch.setattr(bench, "training_step", broken)
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--no-memory", "--out", str(out)]) == 1
    data = json.loads(out.read_text())
    fp32 = data["rungs"][0]
    assert fp32["error"] == "failed: RuntimeError: triton: no kernel for this shape"
    assert fp32["skipped"] == fp32["error"] and data["best"] is None
    assert data["errors"] == [f"fp32: {fp32['error']}"]
    assert data["inference"][0]["tiles_per_s"] > 0                 # the rest still ran
    assert "error: fp32: failed: RuntimeError" in capsys.readouterr().err


# --------------------------------------------------------------------------- for chapter 11

def alive_bytes_after_forward(model, x, y) -> int:
    """An independent count of what a forward pass keeps: every tensor the forward and the
    loss create, followed by a dispatch mode, that is still alive when only the loss is
    held (so the graph holds it), plus the input and the target, which autograd keeps but
    the forward did not create."""
    import gc
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    created = []

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    created.append((weakref.ref(t), storage.data_ptr(), storage.nbytes()))
            return out

    model.train()
    with Track():
        loss = torch.nn.functional.cross_entropy(model(x), y)
    gc.collect()
    alive = {ptr: n for ref, ptr, n in created if ref() is not None}
    # the loss itself is alive (we hold it) but is not kept for the backward pass
    return sum(alive.values()) - loss.nbytes + x.nbytes + y.nbytes


@pytest.mark.parametrize("checkpointing", [False, True])
def test_saved_activation_bytes_agree_with_the_tensors_left_alive(checkpointing):
    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base_width=4, padding="same", checkpointing=checkpointing)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    counted = bench.saved_activation_bytes(net, x, y)
    assert counted == alive_bytes_after_forward(net, x, y)
    assert net.training                                   # the mode is put back


def test_saved_activation_bytes_hand_count():
    # Conv2d keeps its input (the weight is a parameter, not counted); ReLU keeps its
    # output, which the next Conv2d keeps too: one storage, counted once
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.zeros(2, 1, 16, 16)
    assert bench.saved_activation_bytes(net, x) == 4 * 2 * 16 * 16 * (1 + 3 + 5)
    assert not net.training                                # eval mode put back
    # bf16 autocast: the convolutions keep bf16 copies of their inputs and weights (the
    # copies are new tensors, so they count); the ReLUs keep their bf16 outputs
    bf16 = bench.saved_activation_bytes(net, x, amp="bfloat16")
    weights = 2 * (3 * 1 * 9 + 5 * 3 * 9)
    assert bf16 == 2 * 2 * 16 * 16 * (1 + 3 + 5) + weights


def test_checkpointing_keeps_less_and_the_meta_device_counts_the_same():
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    counts = {}
    for device in ("cpu", "meta"):
        for checkpointing in (False, True):
            torch.manual_seed(0)
            with torch.device(device):
                net = UNet(1, 2, depth=3, base_width=4, padding="same",
                           checkpointing=checkpointing)
            counts[device, checkpointing] = bench.saved_activation_bytes(
                net, x.to(device), y.to(device))
    assert counts["cpu", False] == counts["meta", False]
    assert counts["cpu", True] == counts["meta", True] < counts["cpu", False]
    with pytest.raises(ValueError, match="real device"):
        bench.saved_activation_bytes(net, x.to("meta"), amp="bfloat16")


def test_interleaved_timing_takes_turns():
    calls = []
    t = timing.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                torch.device("cpu"), repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert list(t) == ["a", "b"] and all(len(v) == 3 and min(v) >= 0 for v in t.values())


def test_cpu_bf16_support_is_one_of_three_answers():
    from unet_teach.profile import cpu_bf16_support
    assert cpu_bf16_support() in ("AMX", "AVX-512 BF16", "none")


def test_newest_results_goes_by_the_recorded_date(tmp_path):
    with pytest.raises(FileNotFoundError, match="unet-teach bench --out"):
        bench.newest_results(tmp_path)
    # the name sorts the other way, and the newer file is written first
    bench.write_json(tmp_path / "bench-z-2026-01-01.json",
                     {"date": "2026-05-01T08:00:00+00:00", "n": "newer"})
    bench.write_json(tmp_path / "bench-a-2026-09-09.json",
                     {"date": "2026-04-30T23:00:00-02:00", "n": "older by one hour"})
    (tmp_path / "notes.json").write_text('{"date": "2030-01-01"}')     # not a bench file
    path, data = bench.newest_results(tmp_path)
    assert path.name == "bench-z-2026-01-01.json" and data["n"] == "newer"


def test_results_that_cannot_be_written_leave_the_old_file_whole(tmp_path):
    out = bench.write_json(tmp_path / "bench.json", {"best": "fp32"})
    with pytest.raises(TypeError):                    # a value JSON cannot hold
        bench.write_json(out, {"best": object()})
    assert json.loads(out.read_text()) == {"best": "fp32"}
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_the_committed_results_file_is_readable():
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    path, data = bench.newest_results(root / "results")
    assert data["schema"] == bench.SCHEMA
    assert [r["name"] for r in data["rungs"]] == [r.name for r in bench.LADDER]
    for row in data["rungs"] + [data["recipe"]]:
        assert row["skipped"] or row["images_per_s"] > 0, row
