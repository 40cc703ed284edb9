"""The grader's sandbox against submissions that attack it (``tests/attacks/*.ipynb``).

One batch, graded once in the sandbox (about half a minute on two cores): an honest student
(alice), the same answers handed in by bob, and one notebook per attack. Every attack's
answers are right, so it deserves full marks and nothing more; no attack may change another
student's row, file or feedback, the sources, the package or the batch's outputs, during the
run or after it.

Outside CI the module skips where bubblewrap cannot run here, saying why; in CI (``$CI``
set) a sandbox that cannot start fails the run instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from unet_teach.course import cli
from unet_teach.course.grade import sandbox
from unet_teach.course.grade.flags import scan

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = Path(__file__).resolve().parent / "attacks"
NAME = "01_pixel_metrics"
FULL = 10.0
MARKER = "unet-teach-survivor-7f3a"      # in the survivor's command line, to look for it after
SECRET = "do-not-leak-8c1d"              # an environment variable of the grader's

WHY = sandbox.probe()
if WHY and os.environ.get("CI"):
    raise RuntimeError(f"CI must grade in a sandbox, and it cannot start one here: {WHY}")
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(WHY is not None, reason=f"no sandbox here: {WHY}")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_files() -> dict[Path, str]:
    folder = ROOT / "unet_teach" / "course" / "checks"
    return {p: _sha(p) for p in sorted(folder.glob("*.py"))}


def _solved():
    import sys
    sys.path.insert(0, str(ATTACKS))
    try:
        from build import solved
    finally:
        sys.path.pop(0)
    return solved(NAME)


@pytest.fixture(scope="module")
def server():
    """A TCP server on the grader's localhost, counting the connections it accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield {"port": sock.getsockname()[1], "accepted": accepted}
    sock.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("attacked")
    source = root / "source"
    source.mkdir()
    for path in (ROOT / "exercises" / "source").glob("0[134]_*.ipynb"):   # the attacks' exercises
        (source / path.name).write_bytes(path.read_bytes())
    subs, out, roster = root / "submissions", root / "out", root / "canvas.csv"
    roster.write_text("Student,SIS Login ID,Homework\nAlice,alice,\nBob,bob,\n")
    for who in ("alice", "bob"):
        (subs / who).mkdir(parents=True)
        nbformat.write(_solved(), subs / who / f"{NAME}.ipynb")
    fill = {"@@OUT@@": str(out), "@@SOURCE@@": str(source), "@@ROSTER@@": str(out / "roster.csv"),
            "@@ALICE@@": str(subs / "alice" / f"{NAME}.ipynb"), "@@MARKER@@": MARKER,
            "@@PORT@@": str(server["port"])}
    for path in sorted(ATTACKS.glob("*.ipynb")):
        text = path.read_text()
        for key, value in fill.items():
            text = text.replace(key, value)
        (subs / path.stem).mkdir()
        (subs / path.stem / path.name).write_text(text)
    before = {"source": _sha(source / f"{NAME}.ipynb"), "package": _package_files(),
              "alice": _sha(subs / "alice" / f"{NAME}.ipynb")}
    os.environ["UNET_TEACH_TEST_SECRET"] = SECRET
    stderr, stdout = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            code = cli.main(["grade", str(subs), "--out", str(out), "--source", str(source),
                             "--jobs", "2", "--cell-timeout", "20", "--timeout", "120",
                             "--memory", "2", "--roster", str(roster),
                             "--roster-key", "SIS Login ID"])
    finally:
        del os.environ["UNET_TEACH_TEST_SECRET"]
    seconds = time.monotonic() - start
    outputs = {p: _sha(p) for p in sorted(out.rglob("*")) if p.is_file()}
    time.sleep(2)             # the survivor (writing every 0.25 s) would strike by now
    report = json.loads((out / "report.json").read_text())
    return {"code": code, "out": out, "subs": subs, "source": source, "before": before,
            "outputs": outputs, "seconds": seconds, "stdout": stdout.getvalue(),
            "rows": {Path(r["submission"]).parent.name: r for r in report}}


def output_of(attacked, who: str) -> str:
    """Everything an attack's executed notebook printed or raised."""
    nb = nbformat.read(next((attacked["out"] / "executed").glob(f"*_{who}.ipynb")), as_version=4)
    return "\n".join(o.get("text", "") + o.get("ename", "") + str(o.get("evalue", "")) for c in nb.cells
                     if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_batch_is_graded_in_the_sandbox_within_its_budget(attacked):
    assert attacked["code"] == 0
    assert set(attacked["rows"]) == {"alice", "bob", *(p.stem for p in ATTACKS.glob("*.ipynb"))}
    assert all(row["sandboxed"] for row in attacked["rows"].values())
    assert attacked["seconds"] < 90, f"the attack batch took {attacked['seconds']:.0f} s"


def test_honest_students_keep_full_marks(attacked):
    for who in ("alice", "bob"):
        row = attacked["rows"][who]
        assert (row["total"], row["error"], row["flags"]) == (FULL, None, []), row


@pytest.mark.parametrize("who", ["package_append", "survivor", "snoop", "network", "kill_all",
                                 "tamper"])
def test_an_attack_with_right_answers_scores_what_the_answers_deserve(attacked, who):
    assert attacked["rows"][who]["total"] == FULL, attacked["rows"][who]


def test_the_package_on_disk_is_out_of_reach(attacked):
    assert _package_files() == attacked["before"]["package"]
    text = output_of(attacked, "package_append")
    assert "WROTE" not in text and text.count("BLOCKED") == 2, text


def test_no_process_outlives_its_kernel_and_nothing_is_rewritten_later(attacked):
    assert "STARTED" in output_of(attacked, "survivor")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=30).stdout
    assert MARKER not in ps
    now = {p: _sha(p) for p in sorted(attacked["out"].rglob("*")) if p.is_file()}
    assert now == attacked["outputs"]
    assert _sha(attacked["source"] / f"{NAME}.ipynb") == attacked["before"]["source"]
    assert "HACKED" not in (attacked["out"] / "grades.csv").read_text()


def test_the_kernel_sees_no_sources_no_submissions_no_grader(attacked):
    text = output_of(attacked, "snoop")
    assert "FOUND cwd []" in text                       # not even its own notebook
    solution = next(c.source for c in nbformat.read(attacked["source"] / f"{NAME}.ipynb",
                                                    as_version=4).cells
                    if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "q2_dice_answer")
    answer_line = next(line for line in solution.splitlines() if "return" in line)
    assert answer_line.strip() not in text
    assert "BEGIN HIDDEN TESTS" not in text
    assert text.count("BLOCKED: No such file or directory") >= 2, text
    # /proc holds only the sandbox's own processes, whose folders are empty
    cwds = [line.split(" ", 2)[2] for line in text.splitlines()
            if line.startswith("FOUND /proc/")]
    assert cwds and all(c == "[]" for c in cwds), cwds
    assert SECRET not in text and "UNET_TEACH_TEST_SECRET" not in text
    assert attacked["rows"]["alice"]["total"] == FULL


def test_the_network_is_cut_localhost_included(attacked, server):
    text = output_of(attacked, "network")
    assert "CONNECTED" not in text and text.count("NO NETWORK") == 2, text
    assert server["accepted"] == []


def test_memory_beyond_the_limit_is_refused(attacked):
    row = attacked["rows"]["memory_bomb"]
    text = output_of(attacked, "memory_bomb")
    assert "MemoryError" in text and "ALLOCATED GiB" in text
    allocated = int(text.split("ALLOCATED GiB")[1].split()[0])
    assert allocated <= 2, allocated                     # --memory 2: at most 2 of the 64
    assert row["total"] == FULL                          # the rest of the notebook went on


def test_killing_every_visible_process_harms_nobody(attacked):
    # it sees only its sandbox's init (pid 1), which ignores signals from inside: nothing dies
    text = output_of(attacked, "kill_all")
    assert "KILLED [1]" in text or "KILLED []" in text, text[-300:]
    assert attacked["rows"]["kill_all"]["total"] == FULL
    for who in ("alice", "bob"):
        assert attacked["rows"][who]["total"] == FULL


def test_forged_passes_score_nothing(attacked):
    """Points are awarded outside the kernel, from the results the test cells report."""
    rows = attacked["rows"]
    # an input transformer turned every test cell into `pass`: no results, no points
    row = rows["forge_transformer"]
    assert row["total"] == 0.0, row
    assert all("did not report" in q["error"] for q in row["questions"].values() if not q["manual"])
    # a wrong U-Net with check_unet replaced: its outputs differ from the instructor's
    row = rows["forge_check_unet"]
    assert row["questions"]["q3_unet"]["points"] == 0.0
    assert "76 x 76" in row["questions"]["q3_unet"]["error"]
    assert row["total"] == row["max"] - row["questions"]["q3_unet"]["max"]
    # answers the in-kernel checks accept, though they skip what the question asks
    row = rows["wrong_but_passing"]
    assert row["questions"]["q1_fully_convolutional"]["points"] == 0.0
    assert "Linear" in row["questions"]["q1_fully_convolutional"]["error"]
    assert row["questions"]["q5_overlap_tile"]["points"] == 0.0
    assert "torch tensor" in row["questions"]["q5_overlap_tile"]["error"]
    assert row["total"] == row["max"] - 7
    for who in ("forge_transformer", "forge_check_unet", "wrong_but_passing"):
        assert all(q["judged"] == "outside" for q in rows[who]["questions"].values()
                   if not q["manual"] and "judged" in q)


def test_replaced_checks_and_transformers_are_put_back_before_each_test_cell(attacked):
    text = output_of(attacked, "tamper")
    assert "INSTALLED 1" in text and "FORGED" not in text
    assert "dice: all 4 checks passed" in text
    assert attacked["rows"]["tamper"]["total"] == FULL and attacked["rows"]["tamper"]["flags"]


def test_text_raised_by_student_code_never_reaches_the_feedback(attacked):
    row = attacked["rows"]["leaky_assert"]
    assert row["questions"]["q2_dice"]["points"] == 0.0
    assert row["total"] == FULL - 3 - 1                  # Q5's answer calls dice too
    out = attacked["out"]
    report = {Path(r["submission"]).parent.name: r
              for r in json.loads((out / "report.json").read_text())}
    # (the instructor's flags.md quotes the lines it flags: that is its job)
    texts = [(out / row["feedback"]).read_text(), (out / "grades.csv").read_text(),
             json.dumps(report["leaky_assert"]["questions"])]
    for text in texts:
        assert "_record(" not in text and "HIDDEN" not in text and "linecache" not in text
    assert "The test cell stopped with AssertionError" in texts[0]


def test_every_attack_is_flagged_for_the_instructor(attacked):
    for who in ("package_append", "survivor", "snoop", "network", "kill_all",
                "forge_transformer", "forge_check_unet", "leaky_assert"):
        assert attacked["rows"][who]["flags"], who
    flags = (attacked["out"] / "flags.md").read_text()
    assert "## " in flags and "alice" not in flags
    assert "subprocess" in flags and "/proc" in flags


def test_the_flags_name_the_machinery_and_leave_honest_code_alone():
    honest = ["import numpy as np\nfrom unet_teach import checks", "def dice(p, t):\n    "
              "return 2 * (p & t).sum() / (p.sum() + t.sum())  # open('x') in a comment",
              "with open('results.txt', 'w') as f:\n    f.write('ok')"]
    assert scan(honest) == []
    attacks = {"get_ipython().input_transformers_cleanup.append(f)": "transformers",
               "checks.check_unet = lambda *a, **k: None": "check modules",
               "sys.setprofile(None)": "profiler",
               "exec(inspect.getsource(losses.cross_entropy), ns)": "as text",
               "open('/etc/passwd').read()": "file system",
               "os.setsid()": "processes"}
    for code, why in attacks.items():
        found = scan([code])
        assert len(found) == 1 and why in found[0]["why"], (code, found)


def test_grading_without_a_sandbox_is_refused_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    monkeypatch.setattr("unet_teach.course.grade.probe", sandbox.probe)
    sub = tmp_path / "a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), sub)
    code = cli.main(["grade", str(sub), "--out", str(tmp_path / "out"), "--source",
                     str(ROOT / "exercises" / "source")])
    err = capsys.readouterr().err
    assert code == 2 and "bubblewrap" in err and "--no-sandbox" in err
    assert not (tmp_path / "out" / "grades.csv").exists()
