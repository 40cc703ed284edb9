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
import sys
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
