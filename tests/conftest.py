"""Shared pytest set-up for the unet_teach tests.

* Matplotlib draws with the non-interactive Agg backend in the test process (no windows).
* ``shared_data_dir``: the folder that holds ``isbi2012/train/`` - ``$UNET_TEACH_DATA`` when
  set (CI sets it to the absolute path of ``shared/data``), else ``<repo>/../shared/data``.
  Tests that need the real ISBI files use ``isbi_data_dir``: it fails when
  ``$UNET_TEACH_DATA`` is set but holds no ISBI files, and skips when it is unset and the
  fallback folder is absent. (Corrupt files fail the tests that load them.)
* ``torch.set_num_threads`` is left alone.
* Three markers sort the slow part out (``make test-fast`` deselects them; ``make test`` runs
  everything): ``book`` - builds the book (every chapter executed); ``kernel`` - starts
  Jupyter kernels (nbval on the exercise notebooks, grading batches, a chapter run outside
  the book); ``slow`` - anything else over a few seconds. Notebook items and tests that use a
  grading fixture are marked here; the rest carry their marker in their module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest

# Agg for this process only. MPLBACKEND is deliberately *not* set: it would be inherited by
# Jupyter kernels that other tests start, and there it would replace the inline backend
# (executed notebooks would lose their figures).
matplotlib.use("Agg", force=True)

REPO_ROOT = Path(__file__).resolve().parents[1]

# The attack submissions are graded, in the sandbox, by test_sandbox.py; never run them here
# (nbval would execute them in an ordinary kernel, with this user's rights).
collect_ignore = ["attacks"]


#: Fixtures that grade a batch of notebooks (each starts a kernel a notebook).
KERNEL_FIXTURES = {"graded", "manual", "course"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":                    # nbval: the exercise notebooks
            item.add_marker(pytest.mark.kernel)
        elif KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)


def find_shared_data_dir() -> Path:
    """``$UNET_TEACH_DATA`` if set, else ``shared/data`` next to the repository."""
    env = os.environ.get("UNET_TEACH_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data folder (may not exist on a machine without it)."""
    return find_shared_data_dir()


@pytest.fixture(scope="session")
def isbi_data_dir(shared_data_dir: Path) -> Path:
    """The shared data folder, checked to hold the ISBI 2012 slices.

    Missing data fails the test when ``UNET_TEACH_DATA`` names the folder (as in CI, where
    a wrong path must not pass silently), and skips it otherwise.
    """
    train = shared_data_dir / "isbi2012" / "train"
    if not (train / "images").is_dir() or not (train / "labels").is_dir():
        message = f"ISBI 2012 data not found in {shared_data_dir}"
        if os.environ.get("UNET_TEACH_DATA"):
            pytest.fail(message + " (the folder UNET_TEACH_DATA points at)")
        pytest.skip(message + " (set UNET_TEACH_DATA to the shared/data folder)")
    return shared_data_dir


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened, so figures do not pile up."""
    yield
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


# --------------------------------------------------------------------------- the book

BOOK_FIGURES = REPO_ROOT / "_build" / "figures.jsonl"
BOOK_KERNELS = REPO_ROOT / "_build" / "kernels.jsonl"


@pytest.fixture(scope="session")
def book_build():
    """Build the book once a session, as `make book` does, executing every chapter, with two
    records for the tests: every figure saved (``_build/figures.jsonl``) and every kernel's
    CPU time (``_build/kernels.jsonl``). Returns the build's log; a failed build fails."""
    from unet_teach.page import FIGURE_LOG

    exe = Path(sys.executable).with_name("jupyter-book")
    assert exe.exists(), f"jupyter-book not installed next to {sys.executable}"
    # The kernels must use matplotlib's inline backend, or figures never reach the page:
    # drop a non-interactive backend the test process may have chosen.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["UNET_TEACH_BOOK_BUILD"] = "1"      # glue pastes into the text instead of printing
    BOOK_FIGURES.parent.mkdir(exist_ok=True)
    BOOK_FIGURES.unlink(missing_ok=True)
    env[FIGURE_LOG] = str(BOOK_FIGURES)     # every figure the chapters save is recorded
    # every kernel records its CPU time when it exits (tests/kernel_clock.py, an IPython
    # start-up file in a throw-away IPython folder)
    startup = BOOK_KERNELS.parent / "ipython" / "profile_default" / "startup"
    shutil.rmtree(BOOK_KERNELS.parent / "ipython", ignore_errors=True)
    startup.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "kernel_clock.py", startup / "00-kernel-clock.py")
    BOOK_KERNELS.unlink(missing_ok=True)
    env["IPYTHONDIR"] = str(BOOK_KERNELS.parent / "ipython")
    env["UNET_TEACH_KERNEL_LOG"] = str(BOOK_KERNELS)
    start = time.perf_counter()
    # 12 chapters of at most 3 minutes each and the Sphinx build: a hung kernel (each cell
    # has its own 10-minute limit in _config.yml) must not hold CI for hours
    proc = subprocess.run([str(exe), "build", str(REPO_ROOT), "--all", "-W", "-n",
                           "--keep-going"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=3600)
    seconds = time.perf_counter() - start
    print(f"\nbook build: {seconds:.0f} s")
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line and "IPKernelApp" not in line]
    assert proc.returncode == 0, ("book build failed:\n" + "\n".join(warnings[:40])
                                  + "\n--- last lines ---\n" + log[-4000:])
    return log
