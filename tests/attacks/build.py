"""Write the attack submissions of ``tests/test_sandbox.py``: ``python tests/attacks/build.py``.

Each attack is the release notebook of an exercise with the reference answers typed in (what
a good student hands in, so that any harm shows as lost points) plus the cells below, added
after the named cell. ``@@NAME@@`` placeholders stand for the paths and ports of one test
run (the strongest attacker knows them); the test fills them in before grading. Rerun this
script when a release notebook changes its cell ids.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# name -> (exercise, [(after this cell id, code)], what it tries); FORGERIES below add
# answers replaced or left blank
ATTACKS = {
    "package_append": ("01_pixel_metrics", [("q1-answer", '''
# Sabotage every later student: append a failing check to the package's own module on disk
# (an editable install) and to anything else importable.
import unet_teach.course.checks.pixel_metrics as target
results = []
for path in [target.__file__, target.__file__.replace("pixel_metrics", "_common")]:
    try:
        with open(path, "a") as f:
            f.write("\\nraise AssertionError('sabotaged by another student')\\n")
        results.append(f"WROTE {path}")
    except OSError as err:
        results.append(f"BLOCKED {path}: {err.strerror}")
print("\\n".join(results))
''')], "rewrite the package's check module on disk"),

    "survivor": ("01_pixel_metrics", [("q1-answer", '''
# A process that outlives the kernel, waits for the grader to finish, then rewrites the
# batch's outputs and another student's feedback.
import subprocess, sys
script = """
import os, time
time.sleep(2)
for _ in range(60):
    for path in ["@@OUT@@/grades.csv", "@@OUT@@/report.json", "@@OUT@@/feedback/alice__01_pixel_metrics.md",
                 "@@SOURCE@@/01_pixel_metrics.ipynb", "@@ROSTER@@"]:
        try:
            with open(path, "w") as f:
                f.write("HACKED")
        except OSError:
            pass
    time.sleep(0.25)
"""
proc = subprocess.Popen([sys.executable, "-c", script, "@@MARKER@@"], start_new_session=True,
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("STARTED", proc.pid)
''')], "a setsid process that rewrites grades.csv after the grader exits"),

    "snoop": ("01_pixel_metrics", [("q1-answer", '''
# Look for the solutions and the hidden tests: the kernel's folder, the sources by absolute
# path, other students' notebooks, the grader's folder through /proc, the environment.
import glob, os
found = {"cwd": sorted(os.listdir(".")), "root": sorted(os.listdir("/"))}
for path in ["@@SOURCE@@/01_pixel_metrics.ipynb", "@@ALICE@@"]:
    try:
        found[path] = open(path).read()[:20000]
    except OSError as err:
        found[path] = f"BLOCKED: {err.strerror}"
for link in glob.glob("/proc/[0-9]*/cwd"):
    try:
        found[link] = sorted(os.listdir(link))
        for name in os.listdir(link):
            if name.endswith(".ipynb"):
                found[link + "/" + name] = open(os.path.join(link, name)).read()[:20000]
    except OSError as err:
        found[link] = f"BLOCKED: {err.strerror}"
found["env"] = dict(os.environ)
for key, value in found.items():
    print("FOUND", key, value)
''')], "read the source notebooks, other submissions and the grader's environment"),

    "network": ("01_pixel_metrics", [("q1-answer", '''
# Phone home: the grader's machine (a server the test runs on localhost) and the internet.
import socket
for host, port in [("127.0.0.1", int("@@PORT@@")), ("1.1.1.1", 443)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("CONNECTED", host, port)
    except OSError as err:
        print("NO NETWORK", host, port, type(err).__name__)
''')], "reach the network, the grader's localhost included"),

    "memory_bomb": ("01_pixel_metrics", [("q1-answer", '''
# Take all the machine's memory, a GiB at a time, touching every page (np: the notebook's).
hog = []
try:
    for _ in range(64):
        hog.append(np.ones(2**27))
finally:
    print("ALLOCATED GiB", len(hog))
    del hog
''')], "allocate far more memory than the limit"),

    "tamper": ("01_pixel_metrics", [("q1-answer", '''
# Replace a check and add an AST transformer: the grader puts both back before each test cell.
import ast


class Nop(ast.NodeTransformer):
    pass


checks.check_dice = lambda fn: print("FORGED")
get_ipython().ast_transformers.append(Nop())
print("INSTALLED", len(get_ipython().ast_transformers))
''')], "replace a check and IPython's AST transformers (restored before each test cell)"),

    "kill_all": ("01_pixel_metrics", [("q2-test", '''
# Kill every process it can see (the grader, the other kernels) except itself.
import os, signal
killed = []
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        try:
            os.kill(int(name), signal.SIGKILL)
            killed.append(int(name))
        except OSError:
            pass
print("KILLED", killed)
''')], "kill the grader and the other kernels"),
}


# name -> (exercise, {answer cell id: code, or None for the release's blank}, [(after, code)],
# what it tries). These hand in wrong or missing answers and try to pass anyway.
FORGERIES = {
    "forge_transformer": ("04_losses", {"q1-answer": None, "q2-answer": None, "q3-answer": None}, [
        ("setup", '''
# No answers at all: rewrite every cell that calls a check into `pass` before it runs, and
# the grader's own restoring code too.
def _skip_checks(lines):
    hit = any("checks.check_" in line or "restore" in line for line in lines)
    return ["pass\\n"] if hit else lines

get_ipython().input_transformers_cleanup.append(_skip_checks)
''')], "an IPython input transformer that turns every test cell into `pass`"),
    "forge_check_unet": ("03_fcn_unet", {"q3-answer": '''
class UNet(nn.Module):
    """A U-Net that concatenates in the wrong order: [up-sampled, skip]."""

    def __init__(self, in_channels, out_channels, depth, base_width):
        super().__init__()
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList()
        ch = in_channels
        for w in widths[:-1]:
            self.encoder.append(double_conv(ch, w))
            ch = w
        self.pool = down()
        self.bottleneck = double_conv(ch, widths[-1])
        self.ups = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ModuleList([nn.ConvTranspose2d(2 * w, w, 2, stride=2),
                                           double_conv(2 * w, w)]))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for (up, block), skip in zip(self.ups, reversed(skips)):
            x = up(x)
            x = block(torch.cat([x, crop_and_concat(skip, x)[:, :skip.shape[1]]], dim=1))
        return self.head(x)


import importlib

importlib.reload = lambda module: module          # so that nothing reloads the checks
checks.check_unet = lambda *args, **kwargs: print("unet: all 6 checks passed - 4 points")
'''}, [], "a wrong U-Net, and the check that would catch it replaced"),
    "leaky_assert": ("01_pixel_metrics", {"q2-answer": '''
def dice(pred, target):
    """Raises an AssertionError that carries the test cell's own source (hidden tests too)."""
    import inspect
    import linecache
    frames = inspect.stack()
    text = "\\n".join("".join(linecache.getlines(f.filename)) for f in frames[1:4])
    raise AssertionError("dice(pred, target) is wrong\\n" + text)
'''}, [], "an error message that carries the hidden tests into the feedback"),
    "wrong_but_passing": ("03_fcn_unet", {"q1-answer": '''
def fully_convolutional(net):
    """Not fully convolutional: slides the patch net over every window, stride 4."""
    class Sliding(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            n, w, stride = x.shape[0], self.net.window, 2 ** self.net.pools
            patches = x.unfold(2, w, stride).unfold(3, w, stride)  # N x C x h x w x win x win
            h, v = patches.shape[2], patches.shape[3]
            flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * h * v, x.shape[1], w, w)
            scores = self.net(flat)                                  # (N h w) x K
            return scores.reshape(n, h, v, -1).permute(0, 3, 1, 2)
    return Sliding()
''', "q5-answer": '''
def overlap_tile(net, image, tile):
    """No tiles: one pass over the mirrored image, returned as numpy."""
    context = (tile - models.output_size(tile, net.depth)) // 2

    def fits(s):
        for _ in range(net.depth):
            s -= 4
            if s % 2:
                return False
            s //= 2
        return s > 4

    def valid(size):                       # the first size >= size the net can take
        while not fits(size):
            size += 1
        return size

    h, w = image.shape
    rows, cols = valid(h + 2 * context), valid(w + 2 * context)
    padded = np.pad(image, ((context, rows - h - context), (context, cols - w - context)),
                    mode="reflect")
    with torch.no_grad():
        scores = net(torch.as_tensor(padded, dtype=torch.float64)[None, None])[0]
    return scores[:, :image.shape[0], :image.shape[1]].numpy()
'''}, [], "answers the visible checks accept though they skip what the question asks"),
}


def solved(exercise: str):
    """The release notebook with the source's answers typed into the solution cells."""
    source = {c.id: c for c in nbformat.read(ROOT / "exercises" / "source" / f"{exercise}.ipynb",
                                             as_version=4).cells}
    nb = nbformat.read(ROOT / "exercises" / "release" / f"{exercise}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = source[cell.id].source
    return nb


def build(name: str):
    if name in FORGERIES:
        exercise, answers, cells, _ = FORGERIES[name]
        nb = solved(exercise)
        blank = {c.id: c.source for c in nbformat.read(
            ROOT / "exercises" / "release" / f"{exercise}.ipynb", as_version=4).cells}
        for cell in nb.cells:
            if cell.id in answers:
                cell.source = blank[cell.id] if answers[cell.id] is None else answers[cell.id].strip() + "\n"
    else:
        exercise, cells, _ = ATTACKS[name]
        nb = solved(exercise)
    for k, (after, code) in enumerate(cells, start=1):
        at = [c.id for c in nb.cells].index(after) + 1
        cell = nbformat.v4.new_code_cell(code.strip() + "\n")
        cell.id = f"attack-{k}"                  # stable ids: the files do not churn
        nb.cells.insert(at, cell)
    return nb


if __name__ == "__main__":
    for name in [*ATTACKS, *FORGERIES]:
        nb = build(name)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")
