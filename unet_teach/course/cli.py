"""The ``unet-teach`` command.

Its subcommands (``unet-teach <subcommand> --help`` lists the options)::

    unet-teach info       versions, device, run profile, data folder, ISBI files verified
    unet-teach release    write the student notebooks (exercises/source -> exercises/release);
                          --check only reports whether they are up to date
    unet-teach grade      grade submitted notebooks into report.json, grades.csv and one
                          feedback file each; --roster fills in an LMS gradebook CSV
"""

from __future__ import annotations

import argparse
import platform
import sys
import warnings


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a bug report or a course set-up needs to know about this machine."""
    import numpy
    import torch

    from .. import __version__
    from ..data import default_data_dir, isbi2012_status
    from ..profile import get_profile

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


def cmd_release(args: argparse.Namespace) -> int:
    """Write (or, with --check, verify) the student versions of the exercise notebooks."""
    from .release import ReleaseError, release, stale

    try:
        if args.check:
            problems = stale(args.source, args.release)
            for line in problems:
                print(line)
            if problems:
                print("release notebooks are out of date; run `unet-teach release`")
                return 1
            print(f"{args.release} is up to date with {args.source}")
            return 0
        for path in release(args.source, args.release):
            print(f"wrote {path}")
    except (ReleaseError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _roster_warnings(problems: list[dict], shown: int = 10) -> list[str]:
    """One line per problem, at most ``shown`` of each kind (the file has them all)."""
    lines = []
    for kind in dict.fromkeys(p["problem"] for p in problems):
        same = [p for p in problems if p["problem"] == kind]
        for p in same[:shown]:
            what = ", ".join(x for x in (p["exercise"], p["submission"], p["detail"]) if x)
            lines.append(f"roster: {kind}: {p['student'] or '(no name)'}"
                         + (f" ({what})" if what else ""))
        if len(same) > shown:
            lines.append(f"roster: {kind}: ... and {len(same) - shown} more")
    return lines


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade submissions; print a table; exit 0 once the whole batch is graded."""
    import time
    from pathlib import Path

    from .grade import format_table, grade
    from .roster import RosterError, fill_roster, read_roster, write_problems, write_roster

    out = Path(args.out)
    roster = None
    if args.roster or args.roster_key:
        # checked before grading, which takes minutes, not after
        if not (args.roster and args.roster_key):
            print("error: --roster FILE and --roster-key COLUMN go together: the gradebook CSV "
                  "and the column of it that holds the students' folder names",
                  file=sys.stderr)
            return 2
        if (out / "roster.csv").resolve() == Path(args.roster).resolve():
            print(f"error: the roster is {out / 'roster.csv'}, which this run would overwrite; "
                  "pass the gradebook as exported, or another --out", file=sys.stderr)
            return 2
        try:
            roster = read_roster(args.roster, args.roster_key)
        except RosterError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    start = time.monotonic()

    def progress(row):
        print(f"graded {row['submission']}: {row['total']:g}/{row['max']:g}"
              + (f" ({row['error']})" if row["error"] else ""), file=sys.stderr, flush=True)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = grade(args.submissions, out, source_dir=args.source, jobs=args.jobs,
                           cell_timeout=args.cell_timeout, timeout=args.timeout, progress=progress)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for w in caught:                 # e.g. a file a submission rewrote, now restored
        print(f"warning: {w.message}", file=sys.stderr)
    if not report:
        print("no notebooks found in the given paths", file=sys.stderr)
    print(format_table(report))
    wrote = [out / "report.json", out / "grades.csv", out / "feedback"]
    if roster is not None:
        problems = fill_roster(roster, report)
        write_roster(roster, out / "roster.csv")
        write_problems(problems, out / "roster_problems.csv")
        for line in _roster_warnings(problems):
            print(f"warning: {line}", file=sys.stderr)
        wrote += [out / "roster.csv", out / "roster_problems.csv"]
    print(f"\n{len(report)} submission(s) graded in {time.monotonic() - start:.0f} s; "
          f"wrote {', '.join(str(p) for p in wrote)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-teach", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device, profile and data status")
    info.set_defaults(func=cmd_info)

    rel = sub.add_parser("release", help="write student notebooks from the instructor sources")
    rel.add_argument("--source", default="exercises/source", help="instructor notebooks "
                     "(default: %(default)s)")
    rel.add_argument("--release", default="exercises/release", help="where the student "
                     "notebooks go (default: %(default)s)")
    rel.add_argument("--check", action="store_true", help="write nothing; exit 1 if the release "
                     "notebooks are missing or out of date")
    rel.set_defaults(func=cmd_release)

    gr = sub.add_parser("grade", help="grade submitted notebooks")
    gr.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                    help="notebook files, or folders searched recursively for *.ipynb")
    gr.add_argument("--out", required=True, help="folder for report.json, grades.csv, "
                    "feedback/ and executed/")
    gr.add_argument("--source", default="exercises/source", help="instructor notebooks "
                    "(default: %(default)s)")
    gr.add_argument("--jobs", type=int, default=None, help="notebooks graded at once "
                    "(default: min(4, number of CPUs))")
    gr.add_argument("--cell-timeout", type=float, default=60, metavar="S",
                    help="seconds a cell may run before it is interrupted (default: %(default)s)")
    gr.add_argument("--timeout", type=float, default=600, metavar="S",
                    help="seconds a whole notebook may run (default: %(default)s)")
    gr.add_argument("--roster", metavar="FILE", help="the gradebook CSV exported from Canvas or "
                    "Moodle; written back as OUT/roster.csv with one column per exercise "
                    "(needs --roster-key)")
    gr.add_argument("--roster-key", metavar="COLUMN", help="the roster column that holds the "
                    "names of the submission folders, e.g. 'SIS Login ID' (Canvas) or 'Email "
                    "address' (Moodle)")
    gr.set_defaults(func=cmd_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
