"""The ``unet-teach`` command.

    unet-teach info       versions, device, run profile, data folder, ISBI files verified

(The exercise tooling adds ``release`` and ``grade``.)
"""

from __future__ import annotations

import argparse
import platform
import sys


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a bug report or a course set-up needs to know about this machine."""
    import numpy
    import torch

    from . import __version__
    from .data import default_data_dir, isbi2012_status
    from .profile import get_profile

    profile = get_profile()
    rows = [
        ("unet_teach", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("numpy", numpy.__version__),
        ("cuda available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("gpu", torch.cuda.get_device_name(0)))
    rows += [("device", str(profile.device)), ("profile", profile.name)]
    data_dir = default_data_dir()
    status = isbi2012_status(data_dir)
    counts = {s: sum(v == s for v in status.values()) for s in ("ok", "missing", "corrupt")}
    rows += [("data directory", str(data_dir)),
             ("isbi2012 files", f"{counts['ok']}/{len(status)} verified, {counts['missing']} "
                                f"missing, {counts['corrupt']} corrupt")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if counts["corrupt"]:
        bad = [k for k, v in status.items() if v == "corrupt"]
        print(f"corrupt: {', '.join(bad)} - delete them; load_isbi2012() downloads fresh copies")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-teach", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device, profile and data status")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
