"""The sandbox a submission's kernel runs in: bubblewrap (``bwrap``), one per notebook.

A student's notebook is arbitrary code, run as the user who grades. Without a sandbox it
could read the source notebooks (solutions, hidden tests), rewrite the package's checks on
disk, start a process that outlives its kernel and edit ``grades.csv`` afterwards. With one,
the kernel sees::

    /usr, /lib*, /bin, /sbin, /etc/ld.so.cache ...   read-only: the system it needs to run
    <python's prefix>, <the venv>, <the package>     read-only: Python, torch, unet_teach
    <its working folder>                             read-write, empty at the start
    <the socket folder>                              the kernel's sockets (zmq over ``ipc``)
    /tmp                                             its own, empty, in memory
    /proc, /dev                                      its own: it sees only its processes

and nothing else: no submissions, no source notebooks, no report, no home folder. Its
network is its own and empty (``--unshare-net``: the grader reaches it through Unix sockets
in the socket folder, not localhost TCP), its process ids are its own (every process it
starts dies when the kernel's sandbox ends, ``setsid`` or not), its environment is a short
list written here (no tokens from the grader's), and the kernel runs under limits on memory
(address space) and CPU time that ``resource.setrlimit`` sets just before it starts.

bubblewrap is a Debian/Ubuntu/Fedora package that Flatpak uses; it works as root and, where
the system allows unprivileged user namespaces, as any user (Ubuntu 24.04 restricts them with
AppArmor; see the instructors' guide). :func:`probe` says whether it works here, and why not.

Example (the command line, not run here)::

    argv = Sandbox(workdir="/tmp/w", sockets="/tmp/s").wrap(["python", "-m", "ipykernel_launcher"])
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import unet_teach

MEMORY_LIMIT = 6 * 2**30            # bytes of address space for the kernel (torch maps ~1.5 GiB)
CPU_SECONDS_PER_WALL_SECOND = 4     # CPU-time limit = this x the notebook's wall-clock limit

# What a kernel needs of /etc (never the whole folder: it holds the host's secrets)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives",
             "nsswitch.conf", "passwd", "group", "fonts", "mime.types")
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt/conda")


class SandboxError(RuntimeError):
    """The sandbox cannot run here; the message says why and what to do."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _readonly_paths() -> list[str]:
    """Folders the kernel reads: the system's, Python's, the venv's and the package's."""
    package = Path(unet_teach.__file__).resolve().parent
    python = Path(sys.executable).resolve().parent.parent
    paths = [*SYSTEM_DIRS, sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
             str(python), str(package)]
    # site-packages outside the prefixes (a user site, PYTHONPATH): everything on sys.path
    # except the folder the grader runs in, which may hold the sources and the submissions
    here = Path.cwd().resolve()
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if entry and p.is_dir() and p != here and here not in p.parents and p not in here.parents:
            paths.append(str(p))
    seen, out = set(), []
    for p in paths:
        real = os.path.realpath(p)
        if os.path.exists(p) and real not in seen:
            seen.add(real)
            out.append(p)
    return out


@dataclass
class Sandbox:
    """One kernel's sandbox: ``workdir`` (its folder, read-write) and ``sockets`` (the folder
    that holds its connection file and ipc sockets), both made by the grader beforehand."""

    workdir: str
    sockets: str
    memory: int = MEMORY_LIMIT          # bytes of address space
    cpu_seconds: int = 3600             # seconds of CPU time, all threads together
    threads: int = 1                    # OMP/MKL threads for torch and numpy

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment (the grader's own is not passed on)."""
        return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                "HOME": "/tmp/home", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                "MPLCONFIGDIR": "/tmp/matplotlib", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "IPYTHONDIR": "/tmp/ipython", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
                "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                "PYTHONDONTWRITEBYTECODE": "1", "UNET_TEACH_SANDBOX": "1",
                "UNET_TEACH_GRADING": "1",
                "VIRTUAL_ENV": sys.prefix}

    def wrap(self, argv: list[str]) -> list[str]:
        """``bwrap ... python -c <set limits; exec argv>``: ``argv`` run inside the sandbox."""
        bwrap = bwrap_path()
        if bwrap is None:
            raise SandboxError("bubblewrap (bwrap) is not installed")
        cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
               "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in _readonly_paths():
            cmd += ["--ro-bind", path, path]
        for name in ETC_FILES:
            if os.path.exists(f"/etc/{name}"):
                cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        cmd += ["--bind", self.workdir, self.workdir, "--bind", self.sockets, self.sockets,
                "--chdir", self.workdir]
        for key, value in self.environment().items():
            cmd += ["--setenv", key, value]
        # limits are set by the sandboxed Python itself, then it becomes the kernel
        limits = ("import os, resource, sys\n"
                  f"resource.setrlimit(resource.RLIMIT_AS, ({self.memory}, {self.memory}))\n"
                  f"resource.setrlimit(resource.RLIMIT_CPU, ({self.cpu_seconds}, {self.cpu_seconds + 5}))\n"
                  "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
                  "for d in ('/tmp/home', '/tmp/matplotlib', '/tmp/ipython', '/tmp/jupyter'):\n"
                  "    os.makedirs(d, exist_ok=True)\n"
                  "os.execv(sys.argv[1], sys.argv[1:])\n")
        return cmd + ["--", sys.executable, "-c", limits, *argv]


def probe() -> str | None:
    """``None`` if a sandboxed process can run here, else why not (one line to show)."""
    if sys.platform != "linux":
        return f"bubblewrap sandboxes need Linux; this is {sys.platform}"
    if bwrap_path() is None:
        return ("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` "
                "(or `dnf install bubblewrap`)")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="unet-teach-probe-") as tmp:
        box = Sandbox(workdir=tmp, sockets=tmp, cpu_seconds=30)
        try:
            done = subprocess.run(box.wrap([sys.executable, "-c", "import unet_teach"]),
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"bubblewrap failed to start: {err}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        hint = ""
        if any(k in why for k in ("namespace", "uid map", "Permission denied", "loopback",
                                  "not permitted")):
            hint = (" (user namespaces are not allowed here; on Ubuntu 24.04 see the "
                    "instructors' guide, 'Sandbox', for the AppArmor profile)")
        return f"bubblewrap cannot start a sandbox: {why}{hint}"
    return None
