"""The text a feedback file gives for a test cell that raised: never the error's own words.

The error's message came from the student's kernel, where the student's code can raise any
text (the hidden tests' source, read from the cell, or anything else). So a feedback file
shows a *fixed* text: the check's entry in the package's ``MESSAGES``, found by the id the
check raised with (``CheckFailed``, in ``unet_teach.course.checks._common``), or a fixed text for
a common Python error, or only the error's name.

Example:
    >>> feedback_message("NameError", "name 'dice' is not defined")[:40]
    'A name the test cell uses is not defined'
    >>> feedback_message("EvilError", "### BEGIN HIDDEN TESTS ...")
    'The test cell stopped with EvilError. Run the test cell in your notebook to see why.'
"""

from __future__ import annotations

import re
from functools import lru_cache

GENERIC = {
    "NameError": "A name the test cell uses is not defined: run your answer cell (and the "
                 "cells above it) first, and keep the names the question gives.",
    "NotImplementedError": "The answer is not implemented yet: replace `raise "
                           "NotImplementedError()` with your code.",
    "SyntaxError": "A cell has a syntax error: run it in your notebook to see where.",
    "IndentationError": "A cell is not indented correctly: run it in your notebook to see where.",
    "ModuleNotFoundError": "An import failed: use only the packages the exercise imports.",
    "SystemExit": "The code called exit() or sys.exit(), which stops the test cell: return "
                  "from your function instead.",
    "MemoryError": "The code ran out of memory: look for a very large array or a loop that "
                   "keeps everything it makes.",
}


@lru_cache(maxsize=1)
def _messages() -> dict[str, str]:
    from ..checks import all_messages
    return all_messages()


def feedback_message(ename: str, evalue: str) -> str:
    """The fixed text for an error ``ename: evalue`` raised in a test cell (see the module)."""
    from ..checks._common import check_id

    key = check_id(evalue)
    if key is not None and key in _messages():
        return _messages()[key]
    name = ename if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,60}", ename or "") else "an error"
    return GENERIC.get(name, f"The test cell stopped with {name}. Run the test cell in your "
                             "notebook to see why.")
