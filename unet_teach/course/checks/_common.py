"""What every exercise's checks share: calling the student's code, making sure it does not
hand the task to the library's reference (:func:`call_own`), and reporting success."""

from __future__ import annotations

import __future__
import dis
import functools
import inspect
import re
import sys
import textwrap
import threading
import types
from typing import Callable, NoReturn

TAG = re.compile(r"\[check: ([a-z0-9_.-]+)\]\s*$")


class CheckFailed(AssertionError):
    """A check's verdict on a wrong answer.

    ``str()`` is the whole message a student reads in the notebook, with their own numbers;
    its last line, ``[check: <id>]``, names the entry of the package's ``MESSAGES`` (a fixed
    text: what is wrong and where to look) that the grader copies into a feedback file. Text
    raised by a student's own code never gets there (see ``feedback_message``).
    """

    def __init__(self, check_id: str, text: str):
        super().__init__(f"{text}\n[check: {check_id}]")
        self.check_id = check_id


def fail(check_id: str, text: str) -> NoReturn:
    """Raise :class:`CheckFailed`: ``check_id`` must be a key of the module's ``MESSAGES``.

    Called while handling another exception, it hides that one (``from None``): the message
    says what went wrong, the check's own traceback would only distract.

    Example:
        >>> fail("dice.value", "dice is wrong on 'a 2 x 3 example': expected 0.5, got 1")
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice is wrong on 'a 2 x 3 example': expected 0.5, got 1
        [check: dice.value]
    """
    raise CheckFailed(check_id, text) from None


def check_id(evalue: str) -> str | None:
    """The id in the last line of a check's message, or None.

    Example:
        >>> check_id("dice is wrong\\n[check: dice.value]"), check_id("anything else")
        ('dice.value', None)
    """
    match = TAG.search(str(evalue))
    return match.group(1) if match else None


def report_passed(points_table: dict[str, float], name: str, n: int, points: float | None) -> None:
    """Print the one success line of a check; ``points`` (if given) overrides the table.

    Example:
        >>> report_passed({"dice": 3}, "dice", 4, None)
        dice: all 4 checks passed - 3 points
    """
    points = points_table[name] if points is None else points
    print(f"{name}: all {n} checks passed - {points:g} point{'s' if points != 1 else ''}")


# What a grader may copy into a feedback file when one of the helpers below fails an answer,
# by check id: a fixed text, what is wrong and where to look (no value of the student's run).
MESSAGES: dict[str, str] = {
    "common.not_callable":
        "The check was given a value where it needs your function (or class) itself, often "
        "the result of calling it.\nHint: look at the check cell: it passes the name of your "
        "function without parentheses; make sure that name still means your function and was "
        "not given another value in a later cell.",
    "common.not_implemented":
        "The answer is not implemented yet: the function still raises NotImplementedError.\n"
        "Hint: replace the `raise NotImplementedError()` line of the answer cell with your "
        "code, run that cell, then the check cell.",
    "common.raised":
        "Your code stopped with an error while the check ran it on one of its inputs.\n"
        "Hint: run the check cell in your notebook to see the error and the input it happened "
        "on; read the traceback from the bottom up to find the line of your code that failed.",
    "common.library_reference":
        "Your answer called the library's reference implementation of what the question asks "
        "for (directly, under another name, through another library function that calls it, "
        "or as a copy of its source code): that is the answer key, not an answer, and earns no "
        "points for this question.\nHint: write the computation yourself with the tools the "
        "question names; the library's function is only what the check compares with.",
    "common.profiler_changed":
        "Your code changed the profiler hook (sys.setprofile or threading.setprofile) that the "
        "check uses to see which functions your answer calls.\nHint: look for a setprofile "
        "call in your answer (or in code it runs) and remove it.",
}


def call_student(fn: Callable, name: str, *args, where: str | None = None):
    """``fn(*args)``, turning whatever it raises into a :class:`CheckFailed` that a student
    can act on (a stub still raising ``NotImplementedError`` is named as such). An
    ``AssertionError`` (a check's own, or the student's) passes through unchanged.

    Example:
        >>> call_student(lambda x: 1 / x, "inverse", 0, where="x = 0")
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: inverse raised ZeroDivisionError: division by zero on x = 0
        [check: common.raised]
    """
    if not callable(fn):
        # the usual slip: passing the result, check_dice(dice(p, t)), instead of the function
        fail("common.not_callable", f"pass your function (or class) itself, e.g. "
                                    f"check_{name}({name}), not {type(fn).__name__} {fn!r:.40}")
    try:
        return fn(*args)
    except NotImplementedError:
        fail("common.not_implemented", f"{name} is not implemented yet: replace `raise "
                                       "NotImplementedError()` with your code")
    except AssertionError:
        raise
    except Exception as err:
        on = f" on {where}" if where else ""
        raise CheckFailed("common.raised", f"{name} raised {type(err).__name__}: {err}{on}") \
            from err


# --------------------------------------------------------------------------- the answer key

def _functions(ref) -> list:
    """The Python functions a reference runs: a function (decorators unwrapped), or every
    function a class defines (``__init__``, ``forward``...)."""
    if isinstance(ref, type):
        found = []
        for attr in vars(ref).values():
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                attr = attr.fget
            if callable(attr):
                found += _functions(attr)
        return found
    fn = inspect.unwrap(ref)
    if getattr(fn, "__code__", None) is None:
        raise TypeError(f"cannot watch {ref!r}: not a Python function or class")
    return [fn]


def _codes(ref) -> list[tuple[tuple[str, str], str]]:
    """``((file, qualified name), printable name)`` of the code a reference runs."""
    return [((fn.__code__.co_filename, fn.__code__.co_qualname),
             f"{fn.__module__}.{fn.__code__.co_qualname}") for fn in _functions(ref)]


# Instructions the compiler picks by context, not by the source text: `nn.Conv2d(...)` is a
# LOAD_ATTR where `nn` is imported in the same text and a LOAD_METHOD otherwise (CPython 3.11).
_SAME_OP = {"LOAD_METHOD": "LOAD_ATTR"}
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def _shape(code: types.CodeType) -> tuple:
    """The cheap part of a fingerprint: what a code object is tested on first."""
    return (code.co_argcount, code.co_kwonlyargcount, code.co_varnames)


def _fingerprint(code: types.CodeType) -> tuple:
    """What a function's code computes, whatever file, line or name it was compiled under and
    whatever text surrounded it: its instructions (jumps by instruction, not byte offset; the
    method-call forms the compiler picks by context made one), its local and free names and
    its constants (the docstring among them), nested functions by their own fingerprint. Of
    the flags only the code's own kind counts (not ``__future__`` imports, not nesting)."""
    found = [i for i in dis.get_instructions(code)]
    index = {i.offset: k for k, i in enumerate(found)}
    steps = []
    for i in found:
        if i.opcode in _JUMPS:
            arg = index.get(i.argval, i.argval)
        elif isinstance(i.argval, types.CodeType):
            arg = _fingerprint(i.argval)
        else:
            arg = (type(i.argval).__name__, repr(i.argval))
        steps.append((_SAME_OP.get(i.opname, i.opname), arg))
    consts = tuple(_fingerprint(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                   for c in code.co_consts)
    return (_shape(code), code.co_freevars, code.co_flags & 0xFFFF & ~inspect.CO_NESTED,
            tuple(steps), consts)


def _distinctive(code: types.CodeType) -> bool:
    """Whether ``code`` is too particular to be written independently: it has a docstring
    or is long (a one-line method could be retyped by anyone, bytecode for bytecode)."""
    doc = bool(code.co_consts) and isinstance(code.co_consts[0], str)
    return doc or len(code.co_code) >= 200


def _compiled(source: str, flags: int) -> list[types.CodeType]:
    """Every code object ``source`` compiles to (nested ones included), or none."""
    try:
        stack = [compile(source, "<source>", "exec", flags=flags, dont_inherit=True)]
    except (SyntaxError, ValueError):
        return []
    found = []
    while stack:
        code = stack.pop()
        found.append(code)
        stack += [k for k in code.co_consts if isinstance(k, types.CodeType)]
    return found


@functools.lru_cache(maxsize=None)
def _module_codes(module_name: str) -> dict[str, list[types.CodeType]]:
    """The code objects of a module's source compiled anew, with and without ``from
    __future__ import annotations`` (which changes how annotated nested functions compile),
    by qualified name."""
    found: dict[str, list[types.CodeType]] = {}
    try:
        source = inspect.getsource(sys.modules[module_name])
    except (KeyError, OSError, TypeError):
        return found
    for flags in (0, __future__.annotations.compiler_flag):
        for code in _compiled(source, flags):
            found.setdefault(code.co_qualname, []).append(code)
    return found


@functools.lru_cache(maxsize=None)
def _source_fingerprints(fn) -> frozenset:
    """Fingerprints of ``fn``'s code as it is and as its source text compiles anew: inside its
    module (a method inside its class, which gives ``super()`` its cell) and on its own
    (dedented), with and without the ``annotations`` future: what
    ``exec(inspect.getsource(...))`` of the function, its class or its module, or a pasted
    copy, runs."""
    code = fn.__code__
    found = {_fingerprint(code)}
    found |= {_fingerprint(c) for c in _module_codes(fn.__module__).get(code.co_qualname, [])}
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return frozenset(found)
    for flags in (0, __future__.annotations.compiler_flag):
        found |= {_fingerprint(c) for c in _compiled(source, flags)
                  if c.co_name == code.co_name and c.co_qualname != "<module>"}
    return frozenset(found)


class _Matcher:
    """Recognises the code of a set of library functions: by file and qualified name (the
    function itself, however it is reached), or by fingerprint (its source text compiled
    again elsewhere: ``exec(inspect.getsource(...))``, or the text pasted into a cell)."""

    def __init__(self, refs):
        self.by_key: dict[tuple[str, str], str] = {}
        self.by_print: dict[tuple, str] = {}
        for ref in refs:
            for fn in _functions(ref):
                code = fn.__code__
                shown = f"{fn.__module__}.{code.co_qualname}"
                self.by_key[(code.co_filename, code.co_qualname)] = shown
                if _distinctive(code):
                    for fp in _source_fingerprints(fn):
                        self.by_print[fp] = shown
        self.shapes = {fp[0] for fp in self.by_print}
        self.seen: dict[int, tuple[types.CodeType, str | None]] = {}

    def __call__(self, code: types.CodeType) -> str | None:
        shown = self.by_key.get((code.co_filename, code.co_qualname))
        if shown is not None or _shape(code) not in self.shapes:
            return shown
        cached = self.seen.get(id(code))
        if cached is None or cached[0] is not code:          # keep code alive: ids stay unique
            cached = (code, self.by_print.get(_fingerprint(code)))
            self.seen[id(code)] = cached
        return cached[1]


def _inside(frame, match: _Matcher) -> bool:
    """Whether ``frame`` or one of its callers runs code that ``match`` recognises."""
    while frame is not None:
        if match(frame.f_code) is not None:
            return True
        frame = frame.f_back
    return False


def call_own(fn: Callable, name: str, *args, references: tuple = (), allowed: tuple = (),
             where: str | None = None, advice: str = ""):
    """``call_student(fn, name, *args)``, failing if ``fn`` ran the code of one of the
    ``references`` (library functions, or classes: all their methods) on the way.

    **The library is not the answer key.** The package holds the reference of every function
    an exercise asks for, so a one-line answer that calls it would pass any comparison. While
    ``fn`` runs, a profiler hook (``sys.setprofile``, and ``threading.setprofile`` for threads
    it starts) records every entry into the code of the ``references``: by any route (an
    import alias, a wrapper, ``functools.partial``, a subclass, another library function that
    calls it, a call whose result is thrown away). Any entry fails the check (id
    ``common.library_reference``) with the reason "called the library's reference
    implementation ... earns no points for this question". The message names the references
    the answer entered itself (not those they called in turn). Entries made from inside an
    ``allowed`` function do not count: that is a helper the question hands out (an earlier
    answer, such as ``iou`` for the mean IoU) which happens to use a reference internally.

    Code is recognised by its file and qualified name, so reloading the module does not slip
    through; and by its fingerprint (its instructions, local names and constants, the docstring
    among them), so neither does the library's source text compiled again: ``exec`` of
    ``inspect.getsource(...)``, or the text pasted into the answer cell, under its own name
    or another. (A short function without a docstring is matched by name only: anyone may
    write the same three lines.) What the hook cannot see is the source retyped with changes
    (other variable names, another docstring) or code run in another process. The hook is
    active only during this call, so a check calls the references itself, for the expected
    values, outside it.

    Example:
        >>> import numpy as np
        >>> from unet_teach import metrics
        >>> one, two = np.array([0, 1, 1]), np.array([0, 1, 0])
        >>> call_own(lambda p, t: metrics.dice(p, t), "dice", one, two,
        ...          references=(metrics.dice,), where="a 3-pixel example")
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice called the library's reference implementation unet_teach.metrics.dice on a 3-pixel example: that is the answer key, not an answer, and earns no points for this question.
        Hint: write it yourself; the library's function is only the reference the check compares with
        [check: common.library_reference]
        >>> call_own(lambda p, t: (metrics.iou(p, t, 0) + metrics.iou(p, t, 1)) / 2, "mean_iou",
        ...          one, two, references=(metrics.iou_per_class,), allowed=(metrics.iou,))
        0.5
        >>> call_own(lambda x: x + 1, "plus_one", 1, references=(metrics.dice,))
        2

        The reference's source compiled anew is the reference too:

        >>> import inspect
        >>> copied = {"np": np}
        >>> exec(inspect.getsource(metrics.dice).replace("def dice", "def mine"), copied)
        >>> call_own(copied["mine"], "dice", one, two, references=(metrics.dice,))
        Traceback (most recent call last):
        ...
        unet_teach.course.checks._common.CheckFailed: dice called the library's reference implementation unet_teach.metrics.dice: that is the answer key, not an answer, and earns no points for this question.
        Hint: write it yourself; the library's function is only the reference the check compares with
        [check: common.library_reference]
    """
    targets = _Matcher(references)
    outer = _Matcher(tuple(references) + tuple(allowed))   # entered from these: not named
    hits: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            hit = targets(frame.f_code)
            if hit is not None and hit not in hits and not _inside(frame.f_back, outer):
                hits.append(hit)

    previous, previous_threads = sys.getprofile(), threading.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        value = call_student(fn, name, *args, where=where)
    except AssertionError:
        if not hits:
            raise
        value = None                 # the reference was reached: that is the verdict
    finally:
        tampered = sys.getprofile() is not profile
        sys.setprofile(previous)
        threading.setprofile(previous_threads)
    on = f" on {where}" if where else ""
    if hits:
        fail("common.library_reference",
             f"{name} called the library's reference implementation {', '.join(hits)}{on}: "
             "that is the answer key, not an answer, and earns no points for this question."
             "\nHint: " + (advice or "write it yourself") + "; the library's function is only "
             "the reference the check compares with")
    if tampered:
        fail("common.profiler_changed",
             f"{name} changed the profiler hook (sys.setprofile){on}; the check uses it to see "
             "which functions your code calls: leave it alone")
    return value
