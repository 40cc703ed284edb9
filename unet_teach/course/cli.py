"""The course's subcommands of the ``unet-teach`` command (:mod:`unet_teach.cli`).

``register`` adds them (``unet-teach <subcommand> --help`` lists the options)::

    unet-teach info       versions, device, run profile, data folder, ISBI files verified
    unet-teach release    write the student notebooks (exercises/source -> exercises/release);
                          --check only reports whether they are up to date
    unet-teach grade      grade submitted notebooks into report.json, grades.csv and one
                          feedback file each; --roster fills in an LMS gradebook CSV;
                          --shard i/n grades one of n parts of the batch
    unet-teach grade-merge  merge the out folders of the n shards into one run's files

The app's ``train``, ``predict`` and ``evaluate`` are not here (:mod:`unet_teach.app.cli`),
nor ``bench`` (:mod:`unet_teach.bench`): the course is not needed to learn U-Net.
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

    from .grade import SandboxError, format_table, grade

    out = Path(args.out)
    shard = getattr(args, "shard", None)
    if shard and (args.roster or args.roster_key):
        print("error: a shard holds part of the batch; give --roster and --roster-key to "
              "`unet-teach grade-merge` instead", file=sys.stderr)
        return 2
    roster = None
    if args.roster or args.roster_key:
        # checked before grading, which takes minutes, not after
        roster = _read_roster_option(args, out)
        if roster is None:
            return 2

    manual = None
    if args.manual and Path(args.manual).exists():
        from .grade import ManualError, read_manual
        try:
            manual = read_manual(args.manual)
        except ManualError as err:
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
                           cell_timeout=args.cell_timeout, timeout=args.timeout, progress=progress,
                           shard=shard, sandbox=not args.no_sandbox,
                           memory=args.memory, manual=manual)
    except (FileNotFoundError, ValueError, SandboxError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for w in caught:                 # e.g. a file a submission rewrote, now restored
        print(f"warning: {w.message}", file=sys.stderr)
    if not report:
        print("no notebooks found in the given paths", file=sys.stderr)
    print(format_table(report))
    wrote = [out / "report.json", out / "grades.csv", out / "feedback"]
    if args.manual:
        from .grade import write_template
        waiting = sum(q["manual"] and q["points"] is None
                      for row in report for q in row["questions"].values())
        if manual is None:                 # no file yet: write the template to fill in
            write_template(report, args.manual)
            wrote.append(Path(args.manual))
            print(f"{args.manual}: a template with the {waiting} manually graded answer(s) to "
                  "give points to; fill in `points` (and `comment`) and run again with the "
                  "same --manual", file=sys.stderr)
        elif waiting:
            print(f"{waiting} manually graded answer(s) still await points in {args.manual}",
                  file=sys.stderr)
    if shard:
        wrote.append(out / "shard.json")
    if roster is not None:
        wrote += _write_roster(roster, report, out)
    part = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    if args.no_sandbox:
        part += " WITHOUT a sandbox (--no-sandbox)"
    print(f"\n{len(report)} submission(s) graded{part} in {time.monotonic() - start:.0f} s; "
          f"wrote {', '.join(str(p) for p in wrote)}")
    return 0


def _read_roster_option(args: argparse.Namespace, out):
    """The roster of --roster/--roster-key, checked; ``None`` (the error printed) if unusable."""
    from pathlib import Path

    from .roster import RosterError, read_roster

    if not (args.roster and args.roster_key):
        print("error: --roster FILE and --roster-key COLUMN go together: the gradebook CSV "
              "and the column of it that holds the students' folder names",
              file=sys.stderr)
        return None
    if (Path(out) / "roster.csv").resolve() == Path(args.roster).resolve():
        print(f"error: the roster is {Path(out) / 'roster.csv'}, which this run would overwrite; "
              "pass the gradebook as exported, or another --out", file=sys.stderr)
        return None
    try:
        return read_roster(args.roster, args.roster_key)
    except RosterError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def _write_roster(roster, report: list[dict], out) -> list:
    """Fill in and write OUT/roster.csv and OUT/roster_problems.csv; warn about problems."""
    from .roster import fill_roster, write_problems, write_roster

    problems = fill_roster(roster, report)
    write_roster(roster, out / "roster.csv")
    write_problems(problems, out / "roster_problems.csv")
    for line in _roster_warnings(problems):
        print(f"warning: {line}", file=sys.stderr)
    return [out / "roster.csv", out / "roster_problems.csv"]


def cmd_grade_merge(args: argparse.Namespace) -> int:
    """Merge the out folders of a run's shards into the files of one whole run."""
    from pathlib import Path

    from .grade import ShardError, format_table, merge

    out = Path(args.out)
    roster = None
    if args.roster or args.roster_key:
        roster = _read_roster_option(args, out)
        if roster is None:
            return 2
    try:
        report = merge(args.parts, out, force=args.force)
    except ShardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(report))
    wrote = [out / "report.json", out / "grades.csv", out / "feedback", out / "executed"]
    if roster is not None:
        wrote += _write_roster(roster, report, out)
    print(f"\n{len(report)} submission(s) from {len(args.parts)} shard(s); "
          f"wrote {', '.join(str(p) for p in wrote)}")
    return 0


def _shard_option(text: str) -> tuple[int, int]:
    from .grade.shard import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--shard ")) from None


def register(sub) -> None:
    """Add ``info``, ``release``, ``grade`` and ``grade-merge`` to the subcommands ``sub``
    (argparse's subparsers).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["release", "--check"]).check
        True
    """
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
    gr.add_argument("--shard", type=_shard_option, metavar="I/N", help="grade only the I-th "
                    "of N parts (every N-th submission of the sorted list, from the I-th on) and "
                    "write OUT/shard.json too; merge the N out folders with `unet-teach "
                    "grade-merge` (I = 1..N)")
    gr.add_argument("--manual", metavar="FILE", help="points for the manually graded "
                    "questions: a CSV with student, exercise, question, max, points, comment; "
                    "written as a template (points empty) when FILE does not exist; a rerun "
                    "with the same FILE keeps the points")
    gr.add_argument("--memory", type=float, default=None, metavar="GIB", help="memory (address "
                    "space) a sandboxed kernel may use, in GiB (default: 6); beyond it the "
                    "notebook gets a MemoryError")
    gr.add_argument("--no-sandbox", action="store_true", help="run each kernel with your own "
                    "rights, where bubblewrap cannot run (macOS, a locked-down host): students' "
                    "code could then read the sources and change other grades; grade inside a "
                    "container instead (see the instructors' guide, 'Security')")
    gr.set_defaults(func=cmd_grade)

    gm = sub.add_parser("grade-merge", help="merge the out folders of graded shards",
                        description="Merge the out folders of every shard of one `unet-teach "
                        "grade --shard I/N` run into the files one whole run writes: "
                        "report.json (rows in the whole run's order), grades.csv, feedback/, "
                        "executed/ and, with --roster, roster.csv. Refuses (exit 2, writing "
                        "nothing) a missing or repeated shard and shards of different runs.")
    gm.add_argument("parts", nargs="+", metavar="PART", help="the out folder of each shard")
    gm.add_argument("--out", required=True, help="a new or empty folder for the merged files")
    gm.add_argument("--force", action="store_true", help="use --out even if it is not empty, "
                    "replacing the merged files there (report.json, grades.csv, roster files, "
                    "feedback/*.md, executed/*.ipynb)")
    gm.add_argument("--roster", metavar="FILE", help="as for grade: the gradebook CSV, written "
                    "back as OUT/roster.csv (needs --roster-key)")
    gm.add_argument("--roster-key", metavar="COLUMN", help="as for grade: the roster column "
                    "that holds the names of the submission folders")
    gm.set_defaults(func=cmd_grade_merge)


def main(argv: list[str] | None = None) -> int:
    """The whole ``unet-teach`` command (:func:`unet_teach.cli.main`), under its old name."""
    from ..cli import main as command

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
