"""The ``unet-teach`` command: the subcommands of the app, the course and the benchmark.

Each part registers its own subcommands (``register(subparsers)``); this file only puts
them together (``unet-teach <subcommand> --help`` lists the options)::

    unet-teach train      train a U-Net on your own folders of images and masks
    unet-teach predict    segment images with a trained model file
    unet-teach evaluate   score predicted masks against true ones; --report writes a page
                          (these three: unet_teach.app.cli)
    unet-teach info       versions, device, run profile, data folder, ISBI files verified
    unet-teach release    write the student notebooks (exercises/source -> exercises/release)
    unet-teach grade      grade submitted notebooks; --shard i/n grades one of n parts
    unet-teach grade-merge  merge the out folders of the n shards into one run's files
                          (these four: unet_teach.course.cli)
    unet-teach bench      time a U-Net training step rung by rung, inference and memory
                          (unet_teach.bench)

``python -m unet_teach`` (``unet_teach/__main__.py``) and the installed ``unet-teach``
both run :func:`main`.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The ``unet-teach`` parser, every part's subcommands registered.

    Example:
        >>> sorted(build_parser()._subparsers._group_actions[0].choices)[:4]
        ['bench', 'evaluate', 'grade', 'grade-merge']
    """
    from .app import cli as app_cli
    from .bench import register as register_bench
    from .course import cli as course_cli

    parser = argparse.ArgumentParser(prog="unet-teach", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    app_cli.register(sub)
    course_cli.register(sub)
    register_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``unet-teach`` with ``argv`` (default: the command line); return the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
