"""``python -m unet_teach ...`` runs the ``unet-teach`` command (:mod:`unet_teach.cli`).

This file is the command's entry point, not teaching code: it names the command's module by
string, so that importing the package's modules (as the layout test does) loads none of it.
"""

import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("unet_teach.cli").main())
