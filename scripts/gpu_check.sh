#!/usr/bin/env bash
# The whole GPU proof in one run of about 8 minutes on an H100 or H200 (the first run, on
# an H200, is in results/: the ladder alone needs ~4 minutes with cuDNN's algorithm search):
#
#   scripts/gpu_check.sh [--dry-run] OUT          (or: make gpu-check OUT=folder)
#
# Made for an offline GPU machine that has python3 with torch but no venv and no network:
#   1. wheels  - the wheels in .whl/ (see ../shared/gpu-wheels/README.md) are installed into
#                /tmp/site and put on PYTHONPATH with this checkout; without .whl/ the
#                packages are assumed installed. ISBI slices in .whl/data/isbi2012 are used
#                when UNET_TEACH_DATA is not set (else ../shared/data, when it holds them).
#   2. facts   - nvidia-smi, `python -m unet_teach info`, versions       -> facts.log, facts.json
#   3. bench   - `unet-teach bench` (the speed ladder, inference, memory) -> bench.log, bench.json
#   4. nbval   - the exercise solutions under nbval                      -> nbval.log, nbval.xml
#   5. ddp     - `torchrun -m unet_teach train` on small synthetic images: NCCL on the GPUs
#                (a world of one on a one-GPU machine), 2 gloo processes in a dry run; the
#                ranks must end equal, the loss fall, the file load  -> ddp.log, ddp/ddp.json
#   6. chapters- every notebooks/*.ipynb executed with nbclient, in this machine's profile
#                (full on CUDA), one after another until the deadline     -> notebooks.log,
#                notebooks.json, executed/*.ipynb
#   7. results.json: every step's status and time, the bench's ladder, the notebooks; "ok".
# Without CUDA, or with --dry-run, it is a CPU dry run: a tiny bench and the notebooks in the
# fast profile. Exit status 0 when every step passed, 1 otherwise (results.json says which).
#
# Environment (all optional):
#   PYTHON                 interpreter (default: .venv/bin/python if present, else python3)
#   UNET_TEACH_PROFILE     the notebooks' profile (default: the machine's; fast in a dry run)
#   UNET_TEACH_DATA        the folder holding isbi2012/ (see 1.)
#   GPU_CHECK_WHEELS       folder of wheels to install (default .whl, or none when PYTHON is
#                          the project's .venv, which has them all; empty: install none)
#   GPU_CHECK_NOTEBOOKS    chapter notebooks to run, space-separated (default notebooks/*.ipynb)
#   GPU_CHECK_EXERCISES    what nbval runs, space-separated (default exercises/source)
#   GPU_CHECK_CELLS        run only the first N code cells of each notebook (default: all)
#   GPU_CHECK_PARALLEL     chapters executed at once, each in its own kernel (default 1;
#                          their times then include sharing the device: notebooks.json
#                          says so in run_alongside)
#   GPU_CHECK_SKIP_BENCH=1, GPU_CHECK_SKIP_NBVAL=1, GPU_CHECK_SKIP_DDP=1   leave it out
#   GPU_CHECK_DEADLINE_S   seconds from the start after which no notebook cell runs (420)
#   GPU_CHECK_BENCH_S, GPU_CHECK_NBVAL_S   limits of those steps in seconds (240, 90; on
#                          an H200 each rung spent ~30 s in cuDNN's algorithm search)
#   GPU_CHECK_PACK=1       leave at most 8 files in OUT (what a device run sends back): the
#                          logs go into logs.tgz, the executed notebooks into executed.tgz,
#                          ddp/model.pt is removed
# Nothing here uses the network.
set -uo pipefail

usage() { grep -m1 '^#   scripts/gpu_check.sh ' "$0" | sed 's/^# *//' >&2; exit 2; }
dry_run=0
case "${1:-}" in
    --dry-run) dry_run=1; shift ;;
    -h|--help|"") usage ;;
esac
[ $# -eq 1 ] || usage
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
started=$(date +%s)
export GPU_CHECK_DEADLINE_AT=$((started + ${GPU_CHECK_DEADLINE_S:-420}))
: > "$OUT/steps.tsv"

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$here/.venv/bin/python
else PY=python3; fi

# step NAME LIMIT_S COMMAND...: run it (a command: at most LIMIT_S seconds) with its output in
# OUT/NAME.log; note its exit status and milliseconds in OUT/steps.tsv
step() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s%3N)
    echo "== $name" >&2
    if [ "$(type -t "$1")" != function ] && command -v timeout > /dev/null; then
        timeout --kill-after=10 "$((limit > 30 ? limit : 30))" "$@" > "$OUT/$name.log" 2>&1
    else
        "$@" > "$OUT/$name.log" 2>&1
    fi
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s%3N) - t0))" >> "$OUT/steps.tsv"
    tail -n 3 "$OUT/$name.log" >&2
    return $rc
}
skip() { printf '%s\tskipped\t0\n' "$1" >> "$OUT/steps.tsv"; echo "== $1: skipped" >&2; }

# --- 1. wheels and paths
# the project's .venv has every package already; the wheels are for a machine without one
if [ "$PY" = "$here/.venv/bin/python" ]; then wheels=${GPU_CHECK_WHEELS-}
else wheels=${GPU_CHECK_WHEELS-.whl}; fi
case $wheels in /*) ;; ?*) wheels=$here/$wheels ;; esac
site=${GPU_CHECK_SITE:-/tmp/site}
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" > /dev/null; then
    if step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl; then
        export PYTHONPATH="$site:$here${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    skip wheels
    export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${UNET_TEACH_DATA:-}" ]; then
    for d in "${wheels:-$here/.whl}/data" "$here/../shared/data"; do
        if [ -d "$d/isbi2012" ]; then export UNET_TEACH_DATA=$(cd "$d" && pwd); break; fi
    done
fi
cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2> /dev/null || echo 0)
if [ "$dry_run" = 1 ] || [ "$cuda" != 1 ]; then
    mode=dry-run
    export UNET_TEACH_PROFILE=${UNET_TEACH_PROFILE:-fast}
else
    mode=cuda
fi
export GPU_CHECK_MODE=$mode

# --- 2. facts
facts() {
    echo "# date (UTC)"; date -u
    echo "# nvidia-smi"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    echo "# unet-teach info"; "$PY" -m unet_teach info
    "$PY" - "$OUT/facts.json" <<'PY'
import json, os, platform, sys
import torch
from unet_teach import __version__
from unet_teach.profile import get_profile
facts = {"mode": os.environ["GPU_CHECK_MODE"], "python": platform.python_version(),
         "torch": torch.__version__, "cuda": torch.version.cuda,
         "cuda_available": torch.cuda.is_available(), "gpus": torch.cuda.device_count(),
         "unet_teach": __version__, "profile": get_profile().name,
         "data": os.environ.get("UNET_TEACH_DATA")}
if torch.cuda.is_available():
    facts.update(gpu=torch.cuda.get_device_name(0),
                 capability=list(torch.cuda.get_device_capability(0)),
                 cudnn=torch.backends.cudnn.version())
for module in ("nbclient", "nbformat", "nbval", "ipykernel", "myst_nb"):
    try:
        facts[module] = __import__(module).__version__
    except Exception as err:                        # a fact, not a failure
        facts[module] = f"missing ({type(err).__name__})"
json.dump(facts, open(sys.argv[1], "w"), indent=1)
print(json.dumps(facts, indent=1))
PY
}
step facts 60 facts

# --- 3. the speed ladder
if [ "${GPU_CHECK_SKIP_BENCH:-0}" = 1 ]; then
    skip bench
elif [ "$mode" = cuda ]; then
    # the paper's set-up; the compile rung runs last, so a slow compiler costs only itself
    step bench "${GPU_CHECK_BENCH_S:-240}" "$PY" -m unet_teach bench --steps 6 --warmup 2 \
        --out "$OUT/bench.json"
else
    step bench "${GPU_CHECK_BENCH_S:-120}" "$PY" -m unet_teach bench --size 64 --batch 2 \
        --width 4 --steps 2 --warmup 1 --no-compile --out "$OUT/bench.json"
fi

# --- 4. the exercises under nbval
if [ "${GPU_CHECK_SKIP_NBVAL:-0}" = 1 ]; then
    skip nbval
else
    step nbval "${GPU_CHECK_NBVAL_S:-90}" "$PY" -m pytest -q -p no:cacheprovider \
        --nbval-lax --nbval-current-env --junitxml "$OUT/nbval.xml" \
        ${GPU_CHECK_EXERCISES:-exercises/source}
fi

# --- 5. data-parallel training under torchrun
ddp_check() {
    local dir=$OUT/ddp data procs device options
    data=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-ddp.XXXXXX") || return 1
    if [ "$mode" = cuda ]; then
        procs=$("$PY" -c "import torch; print(min(2, torch.cuda.device_count()))")
        device=cuda options="--steps 30 --base-width 16 --crop 128 --batch-size 4"
        set -- 8 128
    else
        procs=2 device=cpu options="--steps 6 --base-width 4 --crop 32 --batch-size 2"
        set -- 4 32
    fi
    mkdir -p "$dir"
    "$PY" - "$data" "$1" "$2" <<'PY' || return 1
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from unet_teach.data import synthetic_membranes
root, n, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
images, masks = synthetic_membranes(n, size, seed=1)
for kind in ("images", "masks"):
    (root / kind).mkdir()
for i, (image, mask) in enumerate(zip(images, masks)):
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / f"images/{i:02d}.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(root / f"masks/{i:02d}.png")
PY
    echo "torchrun --standalone --nproc-per-node=$procs -m unet_teach train ... --device $device $options"
    # shellcheck disable=SC2086
    UNET_TEACH_DDP_DEBUG_DIR=$dir timeout --kill-after=10 150 "$PY" -m torch.distributed.run \
        --standalone --nproc-per-node="$procs" -m unet_teach train "$data/images" \
        "$data/masks" --out "$dir/model.pt" --device "$device" --lr 0.01 --quiet $options
    local rc=$?
    rm -rf "$data"
    [ $rc = 0 ] || return $rc
    "$PY" - "$dir" "$procs" <<'PY'
"""The ranks end with the same weights, which the file holds; the loss falls; it loads."""
import json, sys
from pathlib import Path
import numpy as np
from unet_teach.app.modelfile import load_model
from unet_teach.app.parallel import state_sha256
folder, procs = Path(sys.argv[1]), int(sys.argv[2])
ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(procs)]
model, state = load_model(folder / "model.pt")
loss = state["train"]["loss"]
k = max(1, len(loss) // 3)
checks = {"ranks_equal": len({r["state_sha256"] for r in ranks}) == 1,
          "file_holds_the_weights": state_sha256(model) == ranks[0]["state_sha256"],
          "shards_differ": len({r["first_batch_sha256"] for r in ranks}) == procs,
          "loss_falls": bool(np.mean(loss[-k:]) < np.mean(loss[:k])),
          "no_module_prefix": not any(key.startswith("module.") for key in state["model"])}
summary = {"processes": procs, "world": ranks[0]["world"], "steps": state["train"]["step"],
           "loss_first": loss[:k], "loss_last": loss[-k:], "checks": checks,
           "ok": all(checks.values())}
(folder / "ddp.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
sys.exit(0 if summary["ok"] else 1)
PY
}
if [ "${GPU_CHECK_SKIP_DDP:-0}" = 1 ]; then skip ddp; else step ddp 180 ddp_check; fi

# --- 6. every chapter, until the deadline
step notebooks $((GPU_CHECK_DEADLINE_AT - $(date +%s) + 30)) "$PY" - "$OUT" <<'PY'
"""Execute chapter notebooks with nbclient, GPU_CHECK_PARALLEL at a time (each in its own
kernel); a row each in notebooks.json, in the order of the names."""
import json, multiprocessing, os, re, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

out = Path(sys.argv[1])
deadline = float(os.environ["GPU_CHECK_DEADLINE_AT"])
first_cells = int(os.environ.get("GPU_CHECK_CELLS") or 0)
parallel = max(1, int(os.environ.get("GPU_CHECK_PARALLEL") or 1))
names = (os.environ.get("GPU_CHECK_NOTEBOOKS") or "").split() or sorted(
    str(p) for p in Path("notebooks").glob("*.ipynb"))
(out / "executed").mkdir(exist_ok=True)


def run(name):
    path, left = Path(name), deadline - time.time()
    row = {"notebook": name, "status": "not run", "seconds": 0.0, "error": None,
           "profile": os.environ.get("UNET_TEACH_PROFILE") or "machine default",
           "run_alongside": parallel - 1}
    if not path.is_file():
        row.update(status="missing", error="no such file")
        return row
    if left < 15:
        row["error"] = "the check's deadline (GPU_CHECK_DEADLINE_S) came first"
        return row
    nb = nbformat.read(path, as_version=4)
    if first_cells:                    # a dry run: the imports and the first cells
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        if len(code) > first_cells:
            nb.cells = nb.cells[:code[first_cells]]
    # each cell may run until the deadline (at most 10 minutes), so the whole notebook
    # ends by it
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600,
        timeout_func=lambda cell: max(1, min(600, int(deadline - time.time()))),
        resources={"metadata": {"path": str(path.parent.resolve())}})
    t0 = time.time()
    try:
        client.execute()
        row["status"] = "passed"
    except CellTimeoutError as err:
        row.update(status="timeout", error=str(err).strip().splitlines()[-1][:300])
    except CellExecutionError as err:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))       # no terminal colours
        lines = [line for line in text.strip().splitlines() if line.strip()]
        row.update(status="failed", error=(lines[-1] if lines else repr(err))[:300])
    except DeadKernelError as err:
        row.update(status="failed", error=f"the kernel died: {err}"[:300])
    except Exception as err:           # recorded, and the next one runs
        row.update(status="error", error=f"{type(err).__name__}: {err}"[:300])
    row["seconds"] = round(time.time() - t0, 1)
    row["code_cells_run"] = sum(c.cell_type == "code" for c in nb.cells)
    nbformat.write(nb, out / "executed" / path.name)
    return row


rows = {}
with multiprocessing.get_context("fork").Pool(parallel) as pool:
    for row in pool.imap_unordered(run, names):
        rows[row["notebook"]] = row
        print(f"{row['status']:8} {row['seconds']:7.1f} s  {row['notebook']}  "
              f"{row['error'] or ''}", flush=True)
        tmp = out / ".notebooks.json.tmp"
        tmp.write_text(json.dumps([rows[n] for n in names if n in rows], indent=1))
        tmp.replace(out / "notebooks.json")
rows = [rows[n] for n in names]
sys.exit(0 if all(r["status"] == "passed" for r in rows) else 1)
PY

# --- 7. results.json
"$PY" - "$OUT" "$mode" "$started" <<'PY'
import json, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

out, mode, started = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])


def load(name, default=None):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return default


steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    steps[name] = {"status": "skipped" if rc == "skipped" else
                   "passed" if rc == "0" else "timeout" if rc in ("124", "137") else "failed",
                   "rc": None if rc == "skipped" else int(rc),
                   "seconds": round(int(seconds) / 1000, 1), "log": f"{name}.log"}
nbval = None
if (out / "nbval.xml").is_file():
    suite = ET.parse(out / "nbval.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    nbval = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
bench = load("bench.json")
if bench is not None:
    bench = {"device": bench["device"]["name"], "config": bench["config"],
             "best": bench["best"], "file": "bench.json",
             "rungs": [{k: r.get(k) for k in ("name", "images_per_s", "tflops",
                                              "fraction_of_peak", "peak_memory_bytes",
                                              "skipped")}
                       for r in bench["rungs"] + [bench["recipe"]]]}
notebooks = load("notebooks.json", [])
ddp = load("ddp/ddp.json")
ok = (all(s["status"] in ("passed", "skipped") for s in steps.values())
      and all(n["status"] == "passed" for n in notebooks) and bool(notebooks))
result = {"schema": "unet-teach gpu-check 1", "mode": mode, "ok": ok,
          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
          "wall_s": round(time.time() - started, 1), "facts": load("facts.json"),
          "steps": steps, "bench": bench, "nbval": nbval, "ddp": ddp,
          "notebooks": notebooks}
tmp = out / ".results.json.tmp"
tmp.write_text(json.dumps(result, indent=1) + "\n")
tmp.replace(out / "results.json")
print(f"gpu check ({mode}): {'ok' if ok else 'FAILED'} in {result['wall_s']:.0f} s; "
      + ", ".join(f"{k} {v['status']}" for k, v in steps.items())
      + f"; notebooks {sum(n['status'] == 'passed' for n in notebooks)}/{len(notebooks)} passed"
      + f"; wrote {out / 'results.json'}")
sys.exit(0 if ok else 1)
PY
status=$?

# --- 8. packed for a return channel that takes few files
if [ "${GPU_CHECK_PACK:-0}" = 1 ]; then
    (cd "$OUT" && rm -f ddp/model.pt \
        && tar czf logs.tgz ./*.log steps.tsv $(ls -d ddp 2> /dev/null) \
        && rm -rf ./*.log steps.tsv ddp \
        && if [ -d executed ]; then tar czf executed.tgz executed && rm -rf executed; fi)
fi
exit $status
