"""``python -m unet_teach ...`` runs the ``unet-teach`` command (:mod:`unet_teach.course.cli`).

This file is the command's entry point, not teaching code: it names the course tooling by
string, so that importing the package's modules (as the layout test does) loads none of it.
"""

import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("unet_teach.course.cli").main())
