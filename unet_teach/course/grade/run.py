"""Phase 3 of grading: run one assembled notebook, in a worker process, with nbclient.

The worker starts a kernel in a fresh, empty temporary folder (in a bubblewrap sandbox, see
:mod:`~unet_teach.course.grade.sandbox`, unless grading was asked to run without one) and
runs the notebook's cells in it from the top, with ``allow_errors`` (every question is
attempted). A cell gets ``cell_timeout`` seconds and is then interrupted; the notebook gets
``timeout`` seconds in all. Output beyond a cap is dropped as it arrives, so a notebook that
prints 100 MB costs neither memory nor disk. The worker reports what each test cell did;
:mod:`~unet_teach.course.grade.score` turns that into points.

Messages to the parent, over a pipe: ``("kernel", pid)`` as soon as the kernel runs (so the
parent can kill it), then ``("result", dict)``: the test cells' replies (status, error) and
the records their outputs carried (:mod:`unet_teach.course.evidence`), which the grader judges
outside the kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import nbformat

from .. import evidence
from .sandbox import CPU_SECONDS_PER_WALL_SECOND, MEMORY_LIMIT, Sandbox
from .score import short_error

MAX_CELL_OUTPUT = 1_000_000          # characters of output kept per cell (a figure: ~50 k) ...
MAX_NOTEBOOK_OUTPUT = 5_000_000      # ... and per notebook (the rest is dropped as it arrives)
STARTUP_TIMEOUT = 60                 # seconds for a kernel to start
PROBE_TIMEOUT = 5                    # seconds an interrupted kernel has to answer again


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


def _sandboxed_manager(box: Sandbox):
    """A jupyter_client kernel manager whose kernel runs in ``box``: zmq over ``ipc`` sockets
    in the box's socket folder (its network namespace has no localhost to share), interrupts
    sent as messages (the kernel leads its own session inside the box, out of reach of the
    signal jupyter_client would send to the box's process group)."""
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=os.path.join(box.sockets, "kernel"),
                             connection_file=os.path.join(box.sockets, "kernel.json"), **kwargs)

        def format_kernel_cmd(self, extra_arguments=None):
            self.kernel_spec.interrupt_mode = "message"
            return box.wrap(super().format_kernel_cmd(extra_arguments))

    return SandboxedKernelManager


def _make_client(nb, cell_timeout: float, deadline: float, workdir: str, box: Sandbox | None):
    """An nbclient ``NotebookClient`` that caps stored output (defined here so that importing
    this module does not import nbclient); its kernel runs in ``box`` unless that is None."""
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
    if box is not None:
        client.kernel_manager_class = _sandboxed_manager(box)
    return client


# Sent (silently) before every test cell: undo what a notebook may have replaced inside its
# kernel. Defence in depth only: the points are judged outside the kernel, and code that
# rewrites cells could rewrite this one too (the flags name such code for the instructor).
RESTORE = """\
def _unet_teach_restore():
    import importlib, sys
    from IPython import get_ipython
    from IPython.core.inputtransformer2 import TransformerManager
    shell = get_ipython()
    if shell is not None:
        shell.input_transformer_manager.cleanup_transforms[:] = TransformerManager().cleanup_transforms
        shell.input_transformers_post.clear()
        shell.ast_transformers.clear()
    sys.setprofile(None)
    for name in sorted(sys.modules):
        if name.startswith("unet_teach.course.checks") and name != "unet_teach.course.checks":
            importlib.reload(sys.modules[name])
    for name in ("unet_teach.course.checks", "unet_teach.checks"):
        if name in sys.modules:
            importlib.reload(sys.modules[name])
_unet_teach_restore()
del _unet_teach_restore
"""


async def _answers(client, timeout: float, code: str = "pass") -> bool:
    """Whether the kernel finishes ``code`` (by default a trivial request) within ``timeout``
    (it may be stuck in code that ignores interrupts)."""
    msg_id = client.kc.execute(code, silent=True, store_history=False)
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            reply = await client.kc.shell_channel.get_msg(timeout=left)
        except Exception:                     # queue.Empty: no reply in time
            return False
        if reply["parent_header"].get("msg_id") == msg_id:
            return True
    return False


async def _run(nb, tests, workdir: str, cell_timeout: float, timeout: float, report_pid,
               box: Sandbox | None = None) -> dict:
    """Run ``nb``; return the replies of the test cells, why it stopped early (if it did) and
    notes on the run as a whole."""
    from nbclient.exceptions import DeadKernelError

    start = time.monotonic()
    deadline = start + timeout
    client = _make_client(nb, cell_timeout, deadline, workdir, box)
    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: \
        replies.__setitem__(cell_index, execute_reply)
    notes: list[str] = []
    stop = None                                  # why the remaining cells were not run
    try:
        # the kernel's own stdout/stderr (not the cells' output) would only clutter the terminal
        # (in a sandbox the environment is the box's own; see Sandbox.environment)
        env = {} if box else {"env": {**os.environ, evidence.ENV: "1"}}
        async with client.async_setup_kernel(cwd=workdir, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, **env):
            report_pid(getattr(client.km.provisioner, "pid", None))
            test_cells = {index for index, _, _ in tests}
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if time.monotonic() >= deadline:
                    stop = f"the notebook ran longer than its {timeout:g} s limit"
                    break
                if index in test_cells:            # put back what the notebook replaced
                    await _answers(client, PROBE_TIMEOUT, RESTORE)
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
        stop = f"could not run the notebook: {short_error(type(err).__name__, str(err))}"
    if client.truncated:
        notes.append("output truncated in " + ", ".join(_label(i, nb.cells[i])
                                                        for i in client.truncated))
    if stop:
        notes.append(f"{stop}; the rest was not run")
    test_replies, records = {}, {}
    for index, _, _ in tests:
        content = replies.get(index, {}).get("content")
        if content is not None:                  # only what scoring reads crosses the pipe
            test_replies[index] = {k: str(content[k]) for k in ("status", "ename", "evalue")
                                   if k in content}
        records[index] = _take_records(nb.cells[index])
    for cell in nb.cells:                        # a student's own cell may print records too
        if cell.cell_type == "code":
            _take_records(cell)
    # every cell that raised, for the instructor's own run (nbval's check: a source notebook
    # must run clean, not only its test cells)
    raised = [[index, str(out.get("ename", "")), str(out.get("evalue", ""))[:200]]
              for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    return {"replies": test_replies, "records": records, "stop": stop, "raised": raised,
            "error": "; ".join(notes) or None,
            "seconds": round(time.monotonic() - start, 2), "nb": nb}


def _take_records(cell) -> list[dict]:
    """The records (:mod:`unet_teach.course.evidence`) a cell's outputs carry, removed from
    the cell (the executed notebook keeps what a person reads)."""
    found, kept = [], []
    for out in cell.get("outputs", []):
        data = out.get("data") or {}
        if out.get("output_type") in ("display_data", "execute_result") and evidence.MIME in data:
            found.append(data[evidence.MIME])
        else:
            kept.append(out)
    cell.outputs = kept
    return found


def worker(job: dict, conn) -> None:
    """Worker process: run one assembled notebook in a kernel in a fresh, empty temporary
    folder (in a sandbox when ``job["sandbox"]``), send the result.

    ``job`` holds the notebook as JSON text (``notebook``), its test cells (``tests``), the
    two time limits, whether to sandbox and where to save the executed notebook. The notebook
    itself is never written where the kernel can read it: its cells reach the kernel only as
    the code that runs.
    """
    # Ctrl-C in the terminal goes to the whole process group; the parent handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workdir = tempfile.mkdtemp(prefix="unet-teach-grade-")
    sockets = tempfile.mkdtemp(prefix="unet-teach-sock-")
    try:
        nb = nbformat.reads(job["notebook"], as_version=4)
        box = None
        if job.get("sandbox"):
            box = Sandbox(workdir=workdir, sockets=sockets,
                          cpu_seconds=int(job["timeout"] * CPU_SECONDS_PER_WALL_SECOND) + 30,
                          memory=job.get("memory") or MEMORY_LIMIT)
        result = asyncio.run(_run(nb, job["tests"], workdir, job["cell_timeout"],
                                  job["timeout"], lambda pid: conn.send(("kernel", pid)), box))
        executed = result.pop("nb")
        if job.get("executed_path"):
            try:
                nbformat.write(executed, job["executed_path"])
            except Exception:                  # noqa: BLE001 - the grade matters more
                pass
        conn.send(("result", result))
    except Exception as err:                   # noqa: BLE001 - report, never hang the batch
        conn.send(("result", {"error": f"grader error: {short_error(type(err).__name__, str(err))}"}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)
        conn.close()
