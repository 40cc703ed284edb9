"""Grading a large course in parts (shards) on several machines, and merging the parts.

``grade(..., shard=(i, n))`` collects and sorts the submissions exactly as a whole run does
and grades every n-th of them, starting with the i-th (1-based): shard 1/4 takes submissions
1, 5, 9, ..., shard 2/4 takes 2, 6, 10, .... Round robin rather than blocks because the
sorted list keeps a student's exercises together and exercises differ in running time, so
every shard gets a similar mix. The split depends only on the sorted list, never on file
times or the machine.

A shard still reads every submission before its first kernel starts (to hash it, and to put
back what its own kernels change), but runs only its part.

Each shard writes its own out folder (``report.json``, ``grades.csv``, ``feedback/``,
``executed/``, as a whole run) plus ``shard.json``: which shard it is, the position of each
of its rows in the whole run, the exercises' questions, what its kernels made the grader put
back, and the run it belongs to. The run is the ordered list of submissions (as shown in the
report, the student, the SHA-256 of the bytes graded), the SHA-256 of every source notebook,
the two time limits and the grader's version; its hash is ``run``. A submission that changed
between two shards (re-uploaded, or rewritten by a kernel of another shard before it was
read) gives another hash, so :func:`merge` refuses to mix them.

:func:`merge` puts the rows back in the whole run's order and writes the files a whole run
writes from them: feedback names (``..._2.md``) and ``"restored"`` marks are worked out
again over the whole batch, so the result is what one run would have written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .feedback import write_feedback
from .read import Assignment
from .report import write_report

SHARD_FILE = "shard.json"
FORMAT = 1
OUTPUTS = ("report.json", "grades.csv", "roster.csv", "roster_problems.csv", SHARD_FILE)


class ShardError(ValueError):
    """Parts that cannot be merged, or a bad ``--shard``; the message says what to do."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``, 1 <= i <= n.

    Example:
        >>> parse_shard("2/4")
        (2, 4)
        >>> parse_shard("5/4")
        Traceback (most recent call last):
        ...
        unet_teach.course.grade.shard.ShardError: --shard 5/4: i must be between 1 and 4
    """
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ShardError(f"--shard {text}: expected i/n, e.g. 2/4 (the 2nd of 4 parts)") from None
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text}: i must be between 1 and {max(n, 1)}")
    return i, n


def select(count: int, shard: tuple[int, int] | None) -> list[int]:
    """The positions (0-based, in the whole run's order) that ``shard`` grades.

    Example:
        >>> select(10, (2, 4)), select(3, None)
        ([1, 5, 9], [0, 1, 2])
    """
    if shard is None:
        return list(range(count))
    i, n = shard
    return list(range(i - 1, count, n))


def _sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def run_identity(submissions: list[tuple[str, str, bytes | None]],
                 sources: dict[str, bytes | None], cell_timeout: float, timeout: float) -> dict:
    """What makes two shards parts of one run: the submissions in order (as shown, student,
    SHA-256 of the bytes graded), the source notebooks' SHA-256, the time limits and the
    grader's version; ``"run"`` is the hash of all of it."""
    from ... import __version__

    detail = {"submissions": [[shown, student, _sha256(data)]
                              for shown, student, data in submissions],
              "sources": {name: _sha256(data) for name, data in sorted(sources.items())},
              "cell_timeout": cell_timeout, "timeout": timeout, "version": __version__}
    text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
    return {"run": hashlib.sha256(text.encode()).hexdigest(), **detail}


def write_shard_info(out_dir: str | os.PathLike, shard: tuple[int, int], identity: dict,
                     indices: list[int], executed: list[str | None], restored: list[int],
                     assignments: dict[str, Assignment]) -> None:
    """Write ``out_dir/shard.json``: what :func:`merge` needs besides the shard's report."""
    info = {"format": FORMAT, "shard": shard[0], "of": shard[1], **identity,
            "indices": indices, "executed": executed, "restored": restored,
            "assignments": {a.name: [list(q) for q in a.questions]
                            for a in assignments.values()}}
    (Path(out_dir) / SHARD_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def _read_part(part: Path) -> dict:
    try:
        info = json.loads((part / SHARD_FILE).read_text(encoding="utf-8"))
        rows = json.loads((part / "report.json").read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ShardError(f"{part} is not the out folder of a shard ({Path(err.filename).name} "
                         "missing): grade with --shard i/n --out FOLDER, then merge the "
                         "folders") from None
    except ValueError as err:
        raise ShardError(f"{part}: a damaged {SHARD_FILE} or report.json ({err}); grade that "
                         "shard again") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ShardError(f"{part / SHARD_FILE} is not a shard file this version can read; "
                         "grade that shard again")
    if not isinstance(rows, list) or len(rows) != len(info["indices"]):
        raise ShardError(f"{part}: report.json has {len(rows)} rows, {SHARD_FILE} lists "
                         f"{len(info['indices'])}; grade that shard again")
    return {"path": part, "info": info, "rows": rows}


def _why_different(a: dict, b: dict) -> str:
    """In a few words, what differs between the runs of two shard files."""
    if a["submissions"] != b["submissions"]:
        shown_a = {s[0]: s for s in a["submissions"]}
        shown_b = {s[0]: s for s in b["submissions"]}
        only = sorted(shown_a.keys() ^ shown_b.keys())
        if only:
            return f"they collected different submissions (e.g. {only[0]})"
        changed = sorted(k for k in shown_a if shown_a[k] != shown_b[k])
        if changed:
            return f"a submission changed between them (e.g. {changed[0]})"
        return "they collected the submissions in another order"
    if a["sources"] != b["sources"]:
        return "the exercises' source notebooks differ"
    if (a["cell_timeout"], a["timeout"]) != (b["cell_timeout"], b["timeout"]):
        return "the time limits differ"
    return "they were graded by different versions of unet-teach"


def merge(parts, out_dir: str | os.PathLike, force: bool = False) -> list[dict]:
    """Merge the out folders of the shards of one run into ``out_dir``: ``report.json`` (rows
    in the whole run's order), ``grades.csv``, ``feedback/`` and ``executed/``, as one whole
    run writes them. Return the report.

    Raises :class:`ShardError`, having written nothing, for a folder that is not a shard's, a
    missing or repeated shard, shards of different runs or splits, and an ``out_dir`` that is
    one of the parts, or exists and is not empty (``force``: its merged files are replaced).
    """
    paths = [Path(p) for p in parts]
    if not paths:
        raise ShardError("no shards to merge: name the out folder of every shard")
    out_dir = Path(out_dir)
    for p in paths:
        if p.resolve() == out_dir.resolve():
            raise ShardError(f"--out {out_dir} is one of the shards; merge into another folder")
    loaded = [_read_part(p) for p in paths]
    first = loaded[0]
    n = first["info"]["of"]
    seen: dict[int, Path] = {}
    for part in loaded:
        info = part["info"]
        if info["of"] != n:
            raise ShardError(f"{first['path']} is shard {first['info']['shard']}/{n} but "
                             f"{part['path']} is shard {info['shard']}/{info['of']}: the "
                             "shards must come from one split")
        if info["run"] != first["info"]["run"]:
            raise ShardError(f"{first['path']} and {part['path']} are parts of different runs: "
                             f"{_why_different(first['info'], info)}; grade every shard of "
                             "the same files with the same options")
        if info["shard"] in seen:
            raise ShardError(f"shard {info['shard']}/{n} given twice: {seen[info['shard']]} "
                             f"and {part['path']}")
        seen[info["shard"]] = part["path"]
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in seen]
    if missing:
        raise ShardError(f"missing shard{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} of this run; grade {'them' if len(missing) > 1 else 'it'} "
                         "and pass every shard's out folder")

    total = len(first["info"]["submissions"])
    rows: list[dict | None] = [None] * total
    executed: dict[str, Path] = {}
    restored: set[int] = set()
    for part in loaded:
        info = part["info"]
        restored.update(info["restored"])
        for index, row, name in zip(info["indices"], part["rows"], info["executed"]):
            if not 0 <= index < total or rows[index] is not None:
                raise ShardError(f"{part['path'] / SHARD_FILE} is inconsistent (row {index}); "
                                 "grade that shard again")
            rows[index] = row
            if name:
                executed[name] = part["path"] / "executed" / name
    if any(r is None for r in rows):
        raise ShardError("the shards do not cover every submission; grade them again")

    if out_dir.exists() and not out_dir.is_dir():
        raise ShardError(f"--out {out_dir} is a file; name a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise ShardError(f"--out {out_dir} exists and is not empty; name a new folder, or "
                             "add --force to replace the merged files in it")
        _clear(out_dir)

    report = []
    for index, row in enumerate(rows):
        row = dict(row)
        row.pop("feedback", None)           # recomputed over the whole batch, as a run does
        if index in restored:
            row["restored"] = True
        report.append(row)
    assignments = {name: Assignment(name, None, None, [(g, float(p), bool(m)) for g, p, m in qs])
                   for name, qs in first["info"]["assignments"].items()}
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    for name, src in sorted(executed.items()):
        if src.is_file():                   # the worker may have failed to save it
            shutil.copyfile(src, out_dir / "executed" / name)
    write_feedback(report, out_dir)
    write_report(report, out_dir, assignments)
    return report


def _clear(out_dir: Path) -> None:
    """Remove what a merge or a run writes in ``out_dir`` (its files only; nothing else)."""
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    for folder, pattern in (("feedback", "*.md"), ("executed", "*.ipynb")):
        for path in (out_dir / folder).glob(pattern):
            path.unlink()
