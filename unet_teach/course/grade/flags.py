"""Flag, for the instructor to read, student code that reaches for the grader's machinery.

A sandbox keeps a submission away from other students' files, and the points are decided
outside the kernel, but a student's code still controls its own interpreter: it can try to
rewrite the cells the grader sends (IPython's input and AST transformers), replace a check,
switch off the profiler that catches calls to the library's reference, or run the library's
own source as its answer. Not all of that can be prevented, so it is made visible: every
line of a student's cells that does one of these things is listed in the report and in the
instructor's table, with the reason. A flag is not a verdict (``open(`` and ``exec(`` have
honest uses); it says where to look.

Example:
    >>> scan(["import os\\nx = 1", "get_ipython().input_transformers_cleanup.append(f)"])
    [{'cell': 2, 'line': 1, 'code': 'get_ipython().input_transformers_cleanup.append(f)', 'why': "IPython's input/AST transformers (could rewrite the test cells)"}]
"""

from __future__ import annotations

import re

# (pattern, why): matched against each line of a student's code cells, comments stripped
PATTERNS = [
    (r"input_transformers|ast_transformers|input_transformer_manager|register_magic|"
     r"events\.register|run_cell\b|\.transform_cell\b",
     "IPython's input/AST transformers (could rewrite the test cells)"),
    (r"\bget_ipython\s*\(", "IPython's shell object (the machinery that runs the test cells)"),
    (r"\bsys\s*\.\s*(setprofile|settrace)|threading\s*\.\s*(setprofile|settrace)",
     "the profiler hook the checks use to catch calls to the library's reference"),
    (r"\bchecks\s*\.\s*\w+\s*=(?!=)|unet_teach\.(course\.)?checks\b.*=(?!=)|"
     r"setattr\s*\(\s*checks\b|importlib\s*\.\s*reload|sys\s*\.\s*modules",
     "replaces or reloads the check modules"),
    (r"/proc\b", "reads /proc (other processes, their folders)"),
    (r"\bsetsid\b|\bfork\s*\(|\bdaemon\b|subprocess|os\s*\.\s*(system|popen|exec\w*|spawn\w*|kill)"
     r"|\bnohup\b|multiprocessing",
     "starts or signals other processes"),
    (r"inspect\s*\.\s*getsource|\bexec\s*\(|\beval\s*\(|compile\s*\(|__code__|\.co_code\b",
     "runs or copies code as text (e.g. the library's source as an answer)"),
    (r"linecache|inspect\s*\.\s*(stack|currentframe|getouterframes)|_getframe|\.f_back\b|"
     r"\.f_locals\b|\.f_globals\b",
     "reads the code or variables of its caller (the test cell, the check)"),
    (r"""(open|Path|listdir|scandir|walk|glob|remove|unlink|rmtree|chdir)\s*\(\s*[rbf]?["'](/|~|\.\.)"""
     r"|\.__file__\b|site-packages|\bos\s*\.\s*environ",
     "the file system outside its own folder (or the package's own files, the environment)"),
    (r"\b__import__\s*\(|builtins", "replaces built-ins or imports by name"),
    (r"evidence|vnd\.unet-teach|\b_?record\s*\(|publish_display_data|\bdisplay\s*\(\s*\{",
     "sends results to the grader itself (the records the test cells report)"),
    (r"\bsocket\b|urllib|requests\.|http\.client", "the network"),
]
_COMPILED = [(re.compile(p), why) for p, why in PATTERNS]


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside a string is left alone)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def scan(sources: list[str]) -> list[dict]:
    """``[{cell, line, code, why}]`` for every line of ``sources`` (the student's code cells,
    in order, numbered from 1) that matches one of ``PATTERNS`` (first reason only)."""
    found = []
    for c, source in enumerate(sources, start=1):
        for n, line in enumerate(source.splitlines(), start=1):
            code = _strip_comment(line).strip()
            if not code:
                continue
            for pattern, why in _COMPILED:
                if pattern.search(code):
                    found.append({"cell": c, "line": n, "code": code[:200], "why": why})
                    break
    return found


def scan_cells(nb) -> list[dict]:
    """:func:`scan` over the student's code cells of an assembled notebook (those without the
    grader's nbgrader metadata), each flag's ``cell`` its position in that notebook."""
    found = []
    for position, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code" and "nbgrader" not in cell.get("metadata", {}):
            found += [{**f, "cell": position} for f in scan([cell.source])]
    return found
