"""Chapter 9's learning curve in full, written to results/: every (seed, n, setting) net of
unet_teach.curve, and U-Net against Ciresan's N4 patch classifier at equal wall-clock time.

    python scripts/learning_curve.py [--seeds 0 1 2 3 4] [--n 1 2 4 8] [--steps 600]
                                     [--duel-n 8] [--times 1 8]
                                     [--out results/learning-curve-cpu-DATE]

Needs the ISBI 2012 slices ($UNET_TEACH_DATA, see README). Run it with nothing else on the
machine: the duel gives the patch classifier the U-Net's measured training seconds. The
results file records the command, the date, the device and every run; it is rewritten after
each run, so an interrupted run keeps what it finished (run again to start over).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from unet_teach import curve, data
from unet_teach.bench import device_facts, write_json
from unet_teach.profile import cpu_bf16_support


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=curve.Config.steps)
    parser.add_argument("--history", type=int, default=6,
                        help="score every net this many times along training")
    parser.add_argument("--duel-n", type=int, nargs="*", default=[8],
                        help="sizes at which U-Net meets the patch classifier (none: skip)")
    parser.add_argument("--preset", default="n4", help="the patch classifier (default N4)")
    parser.add_argument("--times", type=float, nargs="+", default=[1, 8],
                        help="the patch classifier's budgets, in U-Net training times")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    date = datetime.now(timezone.utc)
    out = args.out or Path("results") / f"learning-curve-cpu-{date:%Y-%m-%d}"
    path = out / "learning_curve.json"

    device = torch.device("cpu")
    config = curve.Config(steps=args.steps, history=args.history)
    images, masks = data.load_isbi2012()
    record = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "date": date.isoformat(timespec="seconds"),
              "device": {**device_facts(device), "cpu": cpu_name(),
                         "cpu_bf16": cpu_bf16_support()},
              "config": curve.config_dict(config), "seeds": args.seeds, "n": args.n,
              "settings": list(curve.SETTINGS), "runs": [], "duel": []}
    start = time.perf_counter()
    for seed in args.seeds:
        for n in args.n:
            for setting in curve.SETTINGS:
                result = curve.run(images, masks, seed, n, setting, config, device,
                                   keep_net=n in args.duel_n and setting == "none")
                net = result.pop("net", None)
                record["runs"].append(result)
                print(f"seed {seed} n {n} {setting:16s} test {result['test error']:.4f} "
                      f"train {result['train error']:.4f} ({result['seconds']:.0f} s)",
                      flush=True)
                if net is not None:
                    match = curve.duel(images, masks, seed, n, result["seconds"], net, config,
                                       preset=args.preset, times=args.times, device=device)
                    record["duel"].append(match)
                    print(f"seed {seed} n {n} duel: U-Net {match['unet_error']:.4f}, "
                          f"{args.preset} " + ", ".join(
                              f"{p['error']:.4f} at {p['times']}x ({p['step']} steps)"
                              for p in match["patch"]), flush=True)
                record["minutes"] = round((time.perf_counter() - start) / 60, 1)
                write_json(path, record)
    print(f"wrote {path} ({record['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
