"""Grade collected exercise notebooks: restore the tests, run each notebook in its own kernel,
score the test cells, write ``report.json`` and ``grades.csv``.

What happens to one submission:

1. **Read, in this process, before any student code runs.** The file must be a ``.ipynb`` of
   JSON with cells. Its exercise is found from ``metadata.unet_teach.assignment`` (written by
   the release, so a renamed copy still matches) or from its file name.
2. **Assemble the notebook to run.** Every test cell (nbgrader ``grade: true``) and every
   locked code cell comes from the *source* notebook, hidden tests included; a student's
   copy of such a cell, edited or not, is dropped, and a deleted one is put back after the
   cell it follows in the source. Students' own cells are kept, outputs cleared.
3. **Run it in a worker process**, in a kernel started in a fresh temporary folder that holds
   only that notebook (``allow_errors``: every question is attempted). A cell gets
   ``cell_timeout`` seconds and is then interrupted; the notebook gets ``timeout`` seconds
   in all. Output beyond a cap is dropped, so a notebook that prints 100 MB costs neither
   memory nor disk. The worker is killed, with its kernel, if it overruns.
4. **Score**: a test cell that runs without an error earns its ``points``; otherwise 0 and
   the error (exception name and the last line of its message) is recorded.

The grader runs no student code in its own process, and everything it grades was read before
the first kernel started, so one submission cannot change another's grade by rewriting files.
It is not a sandbox: a kernel runs as the user who started the grader and could reach a file
by its absolute path (see the instructors' guide). So the grader also keeps the bytes of every
submission and source it read, and after the batch writes back any that changed, with a
warning, and ``"restored": true`` on that submission's row.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import nbformat

from .release import (METADATA_KEY, grade_id, is_locked, is_solution, is_test, source_notebooks,
                      unmark_hidden_tests)

MAX_NOTEBOOK_BYTES = 50_000_000      # a larger file is refused unread
MAX_CELL_OUTPUT = 1_000_000          # characters of output kept per cell (a figure: ~50 k) ...
MAX_NOTEBOOK_OUTPUT = 5_000_000      # ... and per notebook (the rest is dropped as it arrives)
MAX_ERROR_CHARS = 300                # of an error message in the report
STARTUP_TIMEOUT = 60                 # seconds for a kernel to start
PROBE_TIMEOUT = 5                    # seconds an interrupted kernel has to answer again


# --------------------------------------------------------------------------- exercises

@dataclass
class Assignment:
    """One exercise: its source notebook and its test cells ``(grade_id, points)``."""

    name: str
    path: Path
    nb: nbformat.NotebookNode
    tests: list[tuple[str, float]] = field(default_factory=list)

    @property
    def max(self) -> float:
        return float(sum(points for _, points in self.tests))


def load_assignments(source_dir: str | os.PathLike = "exercises/source") -> dict[str, Assignment]:
    """Every source notebook of ``source_dir``, keyed by file stem."""
    assignments = {}
    for path in source_notebooks(source_dir):
        nb = nbformat.read(path, as_version=4)
        tests = [(grade_id(c), float(c.metadata.nbgrader["points"])) for c in nb.cells if is_test(c)]
        assignments[path.stem] = Assignment(path.stem, path, nb, tests)
    return assignments


def collect(paths) -> list[Path]:
    """Expand folders (recursively, ``*.ipynb``, checkpoints skipped); keep files as given."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb")
                            if q.is_file() and ".ipynb_checkpoints" not in q.parts)
        else:
            found.append(p)
    unique, seen = [], set()
    for p in found:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def match(path: Path, nb, assignments: dict[str, Assignment]) -> Assignment | None:
    """The exercise a submission answers: the release's id in its metadata, else its file name
    (exactly, else the one exercise name it contains, as in ``Copy of 01_x (2).ipynb``).

    Example:
        >>> a = {"01_pixel_metrics": "A"}
        >>> match(Path("Copy of 01_pixel_metrics (2).ipynb"), {"metadata": {}}, a)
        'A'
        >>> match(Path("mine.ipynb"), {"metadata": {"unet_teach": {"assignment": "01_pixel_metrics"}}}, a)
        'A'
    """
    meta = nb.get("metadata", {}).get(METADATA_KEY)
    if isinstance(meta, dict) and meta.get("assignment") in assignments:
        return assignments[meta["assignment"]]
    if path.stem in assignments:
        return assignments[path.stem]
    inside = [name for name in assignments if name in path.stem]
    return assignments[inside[0]] if len(inside) == 1 else None


# --------------------------------------------------------------------------- reading

class SubmissionError(ValueError):
    """A submission that cannot be graded; the message is the reason shown in the report."""


def _text(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    raise SubmissionError("not a valid notebook: a cell's source is neither text nor a list "
                          "of lines")


def read_submission(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES):
    """Parse a submitted file into a v4 notebook or raise ``SubmissionError`` with the reason."""
    if not path.exists():
        raise SubmissionError("file not found")
    if not path.is_file():
        raise SubmissionError("not a file")
    if path.suffix.lower() != ".ipynb":
        kind = f"a {path.suffix} file" if path.suffix else "a file without an extension"
        raise SubmissionError(f"not a notebook: expected a .ipynb file, got {kind}")
    size = path.stat().st_size
    if size > max_bytes:
        raise SubmissionError(f"file is {size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} "
                              "MB allowed; clear the outputs (Edit > Clear All Outputs), save, "
                              "resubmit")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError("corrupt notebook: not UTF-8 text (a binary file renamed "
                              ".ipynb?)") from None
    except ValueError as err:
        raise SubmissionError(f"corrupt notebook: invalid JSON ({err}); was the file saved "
                              "completely?") from None
    if not isinstance(data, dict):
        raise SubmissionError("not a notebook: the JSON is not an object")
    cells = data.get("cells")
    if cells is None and data.get("worksheets"):          # nbformat 3
        try:
            data = dict(nbformat.convert(nbformat.from_dict(data), 4))
        except Exception as err:                          # noqa: BLE001 - any reason is a reason
            raise SubmissionError(f"not a valid notebook ({err})") from None
        cells = data.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError("not a notebook: it has no 'cells' list")
    if not cells:
        raise SubmissionError("the notebook has no cells")
    clean = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise SubmissionError("not a valid notebook: a cell has no valid cell_type")
        meta = cell.get("metadata")
        clean.append({"cell_type": cell["cell_type"], "source": _text(cell.get("source", "")),
                      "metadata": meta if isinstance(meta, dict) else {},
                      "id": cell.get("id") if isinstance(cell.get("id"), str) else None})
    meta = data.get("metadata")
    return {"cells": clean, "metadata": meta if isinstance(meta, dict) else {}}


# --------------------------------------------------------------------------- assembling

def _new_cell(cell_type: str, source: str, cell_id: str | None, metadata: dict | None = None):
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell_type]
    cell = make(source=source, metadata=copy.deepcopy(metadata or {}))
    if cell_id and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cell_id):
        cell.id = cell_id
    return cell


def assemble(submission: dict, assignment: Assignment):
    """The notebook the grader runs, and its test cells as ``[(cell index, grade_id, points)]``.

    ``submission`` is what :func:`read_submission` returns. Kept from the student: every cell
    that is not a copy of a test or locked code cell. Taken from the source: test cells (with
    their hidden tests) and locked code cells, each placed after the last cell that precedes it
    in the source and is present in the submission (matched by grade id, else cell id).
    """
    source_cells = assignment.nb.cells
    restored = [c for c in source_cells if c.cell_type == "code" and is_locked(c)]
    restored_gids = {grade_id(c) for c in restored}
    restored_ids = {c.get("id") for c in restored}

    def gid(c):
        return (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") \
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) else None

    kept = [c for c in submission["cells"]
            if gid(c) not in restored_gids and c.get("id") not in restored_ids]
    by_gid, by_id = {}, {}
    for i, c in enumerate(kept):
        if gid(c):
            by_gid.setdefault(gid(c), i)
        if c.get("id"):
            by_id.setdefault(c["id"], i)

    after: dict[int, list] = {}               # position in `kept` (-1: the top) -> source cells
    anchor = -1
    for c in source_cells:
        if c.cell_type == "code" and is_locked(c):
            after.setdefault(anchor, []).append(c)
            continue
        pos = by_gid.get(grade_id(c)) if grade_id(c) else None
        if pos is None:
            pos = by_id.get(c.get("id"))
        if pos is not None:
            anchor = max(anchor, pos)          # never move back: tests stay in source order

    cells, tests, used_ids = [], [], set()

    def add(cell):
        if cell.get("id") in used_ids:          # ids must be unique in a valid notebook
            cell.pop("id", None)
            cell.id = nbformat.v4.new_code_cell().id
        used_ids.add(cell.get("id"))
        cells.append(cell)

    def add_restored(position):
        for c in after.get(position, []):
            text = unmark_hidden_tests(c.source, f"{assignment.name}/{grade_id(c)}")
            if is_test(c):
                tests.append((len(cells), grade_id(c), float(c.metadata.nbgrader["points"])))
            add(_new_cell("code", text, c.get("id"), {"nbgrader": dict(c.metadata.nbgrader)}))

    add_restored(-1)
    for i, c in enumerate(kept):
        # a student's cell keeps its text; its nbgrader metadata is not trusted for anything
        add(_new_cell(c["cell_type"], c["source"], c.get("id")))
        add_restored(i)
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(assignment.nb.metadata))
    nb.metadata.pop(METADATA_KEY, None)
    return nb, tests


# --------------------------------------------------------------------------- running (worker)

def _short_error(ename: str, evalue: str) -> str:
    """``Name: first line ... last line`` of an error message, at most ``MAX_ERROR_CHARS``.

    Example:
        >>> _short_error("AssertionError", "dice is wrong: expected 1, got 0.\\nHint: 2 TP / ...")
        'AssertionError: dice is wrong: expected 1, got 0. ... Hint: 2 TP / ...'
    """
    lines = [line.strip() for line in str(evalue).strip().splitlines() if line.strip()]
    text = ename + (f": {lines[0]}" if lines else "") + (f" ... {lines[-1]}" if len(lines) > 1 else "")
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def _label(index: int, cell) -> str:
    """``cell 9 ("def dice(pred, ...")``: the position in the graded notebook and its start."""
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f'cell {index + 1} ("{first[:25]}{"..." if len(first) > 25 else ""}")'


def _output_size(msg) -> int:
    content = msg.get("content", {})
    if msg.get("msg_type") == "stream":
        return len(content.get("text", ""))
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v))
               for v in (content.get("data") or {}).values())


def _make_client(nb, cell_timeout: float, deadline: float, workdir: str):
    """An nbclient ``NotebookClient`` that caps stored output (defined here so that importing
    this module does not import nbclient)."""
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Stores at most ``MAX_CELL_OUTPUT`` characters of output per cell and
        ``MAX_NOTEBOOK_OUTPUT`` per notebook; drops the rest as it arrives."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cell_chars: dict[int, int] = {}      # characters kept, per cell index
            self.total_chars = 0
            self.truncated: list[int] = []            # cells whose output was cut

        def output(self, outs, msg, display_id, cell_index):
            if msg.get("msg_type") == "error":       # always kept, but short
                content = msg["content"]
                content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])[-20:]]
                content["evalue"] = str(content.get("evalue", ""))[:MAX_CELL_OUTPUT]
                return super().output(outs, msg, display_id, cell_index)
            size = _output_size(msg)
            used = self.cell_chars.get(cell_index, 0)
            if used + size > MAX_CELL_OUTPUT or self.total_chars + size > MAX_NOTEBOOK_OUTPUT:
                if cell_index not in self.truncated:
                    self.truncated.append(cell_index)
                    outs.append(nbformat.v4.new_output(
                        "stream", name="stderr",
                        text=f"\n[grader: output beyond {MAX_CELL_OUTPUT} characters dropped]\n"))
                return None
            self.cell_chars[cell_index] = used + size
            self.total_chars += size
            return super().output(outs, msg, display_id, cell_index)

    def timeout_func(cell) -> int:
        # nbclient treats 0 as "no limit", so never go below one second
        return max(1, int(min(cell_timeout, deadline - time.monotonic())))

    client = CappedClient(
        nb, timeout_func=timeout_func, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError",
                          "evalue": "the cell ran longer than the time limit and was interrupted"},
        startup_timeout=STARTUP_TIMEOUT, shutdown_kernel="immediate", record_timing=False,
        iopub_timeout=4, resources={"metadata": {"path": workdir}})
    return client


async def _answers(client, timeout: float) -> bool:
    """Whether the kernel finishes a trivial request within ``timeout`` (it may be stuck in
    code that ignores interrupts)."""
    msg_id = client.kc.execute("pass", store_history=False)
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            reply = await client.kc.shell_channel.get_msg(timeout=left)
        except Exception:                     # queue.Empty: no reply in time
            return False
        if reply["parent_header"].get("msg_id") == msg_id:
            return True
    return False


async def _run(nb, tests, workdir: str, cell_timeout: float, timeout: float, report_pid):
    from nbclient.exceptions import DeadKernelError

    start = time.monotonic()
    deadline = start + timeout
    client = _make_client(nb, cell_timeout, deadline, workdir)
    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: \
        replies.__setitem__(cell_index, execute_reply)
    notes: list[str] = []
    stop = None                                  # why the remaining cells were not run
    try:
        # the kernel's own stdout/stderr (not the cells' output) would only clutter the terminal
        async with client.async_setup_kernel(cwd=workdir, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL):
            report_pid(getattr(client.km.provisioner, "pid", None))
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if time.monotonic() >= deadline:
                    stop = f"the notebook ran longer than its {timeout:g} s limit"
                    break
                try:
                    await client.async_execute_cell(cell, index)
                except DeadKernelError:
                    stop = (f"the kernel died in {_label(index, cell)} (os._exit, exit(), a "
                            "crash or running out of memory)")
                    break
                reply = replies.get(index, {}).get("content", {})
                if reply.get("ename") == "CellTimeoutError":
                    if not await _answers(client, PROBE_TIMEOUT):
                        stop = (f"{_label(index, cell)} ran past the time limit and ignored the "
                                "interrupt")
                        break
                    notes.append(f"{_label(index, cell)} ran past the time limit and was "
                                 "interrupted")
    except DeadKernelError:
        stop = "the kernel died"
    except Exception as err:                         # noqa: BLE001 - kernel failed to start ...
        stop = f"could not run the notebook: {_short_error(type(err).__name__, str(err))}"
    if client.truncated:
        notes.append("output truncated in " + ", ".join(_label(i, nb.cells[i])
                                                        for i in client.truncated))
    questions = {}
    for index, gid, points in tests:
        content = replies.get(index, {}).get("content")
        if content is None:
            error = f"not run: {stop}" if stop else "not run"
            questions[gid] = {"points": 0.0, "max": points, "error": error}
        elif content.get("status") == "ok":
            questions[gid] = {"points": points, "max": points, "error": None}
        else:
            ename = content.get("ename", content.get("status", "error"))
            evalue = content.get("evalue", "")
            if ename == "CellTimeoutError":
                evalue = f"the test ran longer than {cell_timeout:g} s and was interrupted"
            questions[gid] = {"points": 0.0, "max": points, "error": _short_error(ename, evalue)}
    if stop:
        notes.append(f"{stop}; the rest was not run")
    return {"questions": questions, "error": "; ".join(notes) or None,
            "seconds": round(time.monotonic() - start, 2), "nb": nb}


def _worker(job: dict, conn) -> None:
    """Worker process: run one assembled notebook in a fresh temporary folder, send the result."""
    # Ctrl-C in the terminal goes to the whole process group; the parent handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workdir = tempfile.mkdtemp(prefix="unet-teach-grade-")
    try:
        nb = nbformat.reads(job["notebook"], as_version=4)
        path = os.path.join(workdir, job["filename"])
        nbformat.write(nb, path)              # the only file in the kernel's folder
        result = asyncio.run(_run(nb, job["tests"], workdir, job["cell_timeout"],
                                  job["timeout"], lambda pid: conn.send(("kernel", pid))))
        executed = result.pop("nb")
        if job.get("executed_path"):
            try:
                nbformat.write(executed, job["executed_path"])
            except Exception:                  # noqa: BLE001 - the grade matters more
                pass
        conn.send(("result", result))
    except Exception as err:                   # noqa: BLE001 - report, never hang the batch
        conn.send(("result", {"error": f"grader error: {_short_error(type(err).__name__, str(err))}"}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        conn.close()


# --------------------------------------------------------------------------- the batch

def _row(submission: str, assignment: Assignment | None, error: str | None,
         questions: dict | None = None, seconds: float = 0.0) -> dict:
    if questions is None:
        questions = {gid: {"points": 0.0, "max": pts, "error": f"not run: {error}"}
                     for gid, pts in (assignment.tests if assignment else [])}
    return {"submission": submission,
            "assignment": assignment.name if assignment else None,
            "total": float(sum(q["points"] for q in questions.values())),
            "max": assignment.max if assignment else 0.0,
            "error": error, "questions": questions, "seconds": seconds}


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _kill(proc, kernel_pid) -> None:
    if kernel_pid:
        try:
            os.killpg(kernel_pid, signal.SIGKILL)      # the kernel leads its own session
        except (OSError, ProcessLookupError):
            pass
    if proc.is_alive():
        proc.kill()
    proc.join(5)


def _snapshot(paths) -> dict[Path, bytes | None]:
    """The bytes of each file (``None`` if unreadable or over the size limit)."""
    snap = {}
    for path in paths:
        try:
            snap[Path(path)] = (Path(path).read_bytes()
                                if Path(path).stat().st_size <= MAX_NOTEBOOK_BYTES else None)
        except OSError:
            snap[Path(path)] = None
    return snap


def _restore(snapshot: dict[Path, bytes | None]) -> list[Path]:
    """Write back every snapshotted file whose bytes changed (or that was deleted); return them."""
    restored = []
    for path, data in snapshot.items():
        if data is None:
            continue
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass                                       # deleted or unreadable: write it back
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            restored.append(path)
        except OSError:
            pass
    return restored


def grade(submissions, out_dir: str | os.PathLike, source_dir: str | os.PathLike = "exercises/source",
          jobs: int | None = None, cell_timeout: float = 60, timeout: float = 600,
          progress=None) -> list[dict]:
    """Grade ``submissions`` (notebook files and folders), write ``out_dir/report.json``,
    ``out_dir/grades.csv`` and the executed notebooks under ``out_dir/executed/``; return the
    report (one dict per submission, in the order given).

    ``progress``, if given, is called with each finished row.
    """
    jobs = jobs or min(4, os.cpu_count() or 1)
    if jobs < 1 or cell_timeout <= 0 or timeout <= 0:
        raise ValueError("jobs, cell_timeout and timeout must be positive")
    assignments = load_assignments(source_dir)
    out_dir = Path(out_dir)
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    # a second run must not grade the executed notebooks of the first one
    outside = out_dir.resolve()
    paths = [p for p in collect(submissions) if outside not in p.resolve().parents]

    # Phase 1 - read everything, in this process, before any student code runs. Keep the
    # bytes of every input too: a kernel runs as the grader's user and could rewrite a file
    # by its absolute path, so phase 3 puts back whatever changed.
    inputs = _snapshot([*paths, *(a.path for a in assignments.values())])
    rows: list[dict | None] = [None] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        shown = _display(path)
        try:
            sub = read_submission(path)
        except SubmissionError as err:
            rows[i] = _row(shown, None, str(err))
            if progress:
                progress(rows[i])
            continue
        assignment = match(path, sub, assignments)
        if assignment is None:
            rows[i] = _row(shown, None, "cannot tell which exercise this is: the file name matches "
                           f"none of {sorted(assignments)} and the notebook has no release id")
            if progress:
                progress(rows[i])
            continue
        nb, tests = assemble(sub, assignment)
        safe = re.sub(r"[^\w.-]+", "_", path.name) or "submission.ipynb"
        todo.append((i, assignment, {
            "notebook": nbformat.writes(nb), "tests": tests, "filename": safe,
            "cell_timeout": cell_timeout, "timeout": timeout,
            "executed_path": str(out_dir / "executed" / f"{i + 1:03d}_{safe}")}))

    # Phase 2 - run the notebooks, `jobs` worker processes at a time.
    ctx = multiprocessing.get_context("spawn")
    hard_limit = timeout + STARTUP_TIMEOUT + 30      # the worker's own limits failed
    running: dict[int, dict] = {}

    def finish(i, assignment, result, seconds):
        questions = result.get("questions")
        rows[i] = _row(_display(paths[i]), assignment, result.get("error"), questions,
                       result.get("seconds", seconds))
        if progress:
            progress(rows[i])

    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, assignment, job = todo.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(job, child), daemon=True)
                proc.start()
                child.close()
                running[i] = {"proc": proc, "conn": parent, "assignment": assignment,
                              "start": time.monotonic(), "kernel": None}
            wait([r["conn"] for r in running.values()] + [r["proc"].sentinel for r in running.values()],
                 timeout=1)
            for i, r in list(running.items()):
                result = None
                try:
                    while r["conn"].poll():
                        kind, value = r["conn"].recv()
                        if kind == "kernel":
                            r["kernel"] = value
                        else:
                            result = value
                except (EOFError, OSError):
                    if result is None:
                        result = {"error": "grader worker crashed"}
                elapsed = time.monotonic() - r["start"]
                if result is None and not r["proc"].is_alive():
                    result = {"error": "grader worker crashed"}
                if result is None and elapsed > hard_limit:
                    result = {"error": f"killed after {elapsed:.0f} s: the notebook would not stop"}
                if result is not None:
                    _kill(r["proc"], r["kernel"])
                    r["conn"].close()
                    del running[i]
                    finish(i, r["assignment"], result, round(elapsed, 2))
    finally:
        for r in running.values():                     # Ctrl-C or an error: leave no kernels
            _kill(r["proc"], r["kernel"])
        # Phase 3 - undo what student code did to the inputs (other submissions, sources).
        restored = _restore(inputs)

    for i, path in enumerate(paths):
        if path in restored and rows[i] is not None:
            rows[i]["restored"] = True
    for path in restored:
        warnings.warn(f"{_display(path)} was changed while the batch ran (by a submission's "
                      "code) and has been restored to the bytes that were graded", stacklevel=2)
    report = [r for r in rows if r is not None]
    write_report(report, out_dir, assignments)
    return report


# --------------------------------------------------------------------------- output files

def question_ids(report: list[dict], assignments: dict[str, Assignment] | None = None) -> list[str]:
    """Grade ids in exercise order, then any others in order of appearance."""
    ids: list[str] = []
    for a in (assignments or {}).values():
        ids += [gid for gid, _ in a.tests if gid not in ids]
    for row in report:
        ids += [gid for gid in row["questions"] if gid not in ids]
    return ids


def write_report(report: list[dict], out_dir: str | os.PathLike,
                 assignments: dict[str, Assignment] | None = None) -> None:
    """Write ``report.json`` (the list as is) and ``grades.csv`` (one row per submission)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    ids = question_ids(report, assignments)
    with open(out_dir / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "total", "max", *ids, "error"])
        for row in report:
            q = row["questions"]
            writer.writerow([row["submission"], f"{row['total']:g}", f"{row['max']:g}",
                             *[f"{q[g]['points']:g}" if g in q else "" for g in ids],
                             row["error"] or ""])


def format_table(report: list[dict], width: int = 60) -> str:
    """The report as a plain-text table: one line per submission, points per question.

    Example:
        >>> print(format_table([{"submission": "a.ipynb", "total": 3.0, "max": 5.0, "error": None,
        ...                      "questions": {"q1": {"points": 3.0, "max": 3.0, "error": None},
        ...                                    "q2": {"points": 0.0, "max": 2.0, "error": "X"}}}]))
        submission  score  q1  q2  error
        a.ipynb     3/5    3   0
    """
    ids = question_ids(report)
    header = ["submission", "score", *ids, "error"]
    lines = [header]
    for row in report:
        q = row["questions"]
        error = row["error"] or ""
        if len(error) > width:
            error = error[:width - 3] + "..."
        lines.append([row["submission"], f"{row['total']:g}/{row['max']:g}",
                      *[f"{q[g]['points']:g}" if g in q else "-" for g in ids], error])
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)
