"""How the grading tests grade: in the bubblewrap sandbox where one can start here; outside
CI, where none can (no bwrap, or user namespaces restricted), with ``--no-sandbox``, saying
so once. In CI a sandbox that cannot start is an error: ``.ci/run`` installs bubblewrap.
"""

from __future__ import annotations

import os
import warnings

from unet_teach.course.grade import sandbox

WHY = sandbox.probe()                 # None: a sandbox starts here
if WHY and os.environ.get("CI"):
    raise RuntimeError(f"CI must grade in a sandbox, and it cannot start one here: {WHY}")
SANDBOX = WHY is None
ARGS = [] if SANDBOX else ["--no-sandbox"]   # for `unet-teach grade`
if not SANDBOX:
    warnings.warn(f"the grading tests run WITHOUT a sandbox: {WHY}", stacklevel=1)
