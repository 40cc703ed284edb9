"""``scripts/gpu_check.sh`` in its CPU dry run, on a tiny selection, as a test of the script.

The real run happens on an offline GPU machine (see the script's header); here it runs with
this interpreter, a tiny bench, a 2-process torchrun training, one chapter notebook cut to
its first cells, and then once more with a notebook that fails and a tiny nbval run, to see
that failures are recorded and turn the exit status to 1. Both take under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def gpu_check(out: Path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("UNET_TEACH_PROFILE", "UNET_TEACH_DEVICE")}
    environment.update(PYTHON=sys.executable, OMP_NUM_THREADS="1", GPU_CHECK_WHEELS="", **env)
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_dry_run_writes_the_logs_and_a_valid_results_file(tmp_path):
    out = tmp_path / "out"
    result = gpu_check(out, GPU_CHECK_NOTEBOOKS="notebooks/03_sliding_window_cost.ipynb",
                       GPU_CHECK_CELLS="3", GPU_CHECK_SKIP_NBVAL="1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for name in ("facts.log", "facts.json", "bench.log", "bench.json", "notebooks.log",
                 "notebooks.json", "results.json", "executed/03_sliding_window_cost.ipynb"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "unet-teach gpu-check 1" and results["ok"] is True
    assert results["mode"] == "dry-run" and results["facts"]["profile"] == "fast"
    assert results["facts"]["torch"] == torch.__version__
    assert results["facts"]["cuda_available"] is torch.cuda.is_available()
    assert {k: v["status"] for k, v in results["steps"].items()} == {
        "wheels": "skipped", "facts": "passed", "bench": "passed", "nbval": "skipped",
        "ddp": "passed", "notebooks": "passed"}
    # two gloo processes under torchrun: equal weights, in the file, different crops
    assert results["ddp"]["ok"] and results["ddp"]["world"] == 2
    assert all(results["ddp"]["checks"].values())
    assert [r["name"] for r in results["bench"]["rungs"]][:2] == ["fp32", "tf32"]
    assert results["bench"]["rungs"][0]["images_per_s"] > 0
    [notebook] = results["notebooks"]
    assert notebook["notebook"] == "notebooks/03_sliding_window_cost.ipynb"
    assert notebook["status"] == "passed" and notebook["code_cells_run"] == 3
    executed = nbformat.read(out / "executed" / "03_sliding_window_cost.ipynb", as_version=4)
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")


@pytest.mark.slow
def test_failures_are_recorded_and_fail_the_check(tmp_path):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1")]),
                   good)
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprint(os.environ['UNET_TEACH_PROFILE'])"),
        nbformat.v4.new_code_cell("assert False, 'the finding no longer holds'")]), bad)
    out = tmp_path / "out"
    result = gpu_check(out, GPU_CHECK_NOTEBOOKS=f"{bad} {tmp_path / 'missing.ipynb'}",
                       GPU_CHECK_EXERCISES=str(good), GPU_CHECK_SKIP_BENCH="1",
                       GPU_CHECK_SKIP_DDP="1")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["ok"] is False
    assert results["steps"]["nbval"]["status"] == "passed"
    assert results["nbval"]["tests"] >= 1 and results["nbval"]["failures"] == 0
    assert results["steps"]["notebooks"]["status"] == "failed"
    failed, missing = results["notebooks"]
    assert failed["status"] == "failed"
    assert failed["error"] == "AssertionError: the finding no longer holds"
    assert missing["status"] == "missing"
    executed = nbformat.read(out / "executed" / "bad.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "fast"   # the dry run's profile


@pytest.mark.parametrize("args", [[], ["--help"], ["--dry-run"], ["a", "b"]])
def test_wrong_arguments_print_the_usage_and_exit_2(args, tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "gpu_check.sh [--dry-run] OUT" in result.stderr
    assert not any(tmp_path.iterdir())                  # nothing written


def test_the_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
