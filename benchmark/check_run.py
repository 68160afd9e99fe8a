"""Does a recorded run repeat from its command? Rerun its first epochs with this checkout and compare.

A record of benchmark/run.py (docs/runs/matrix/NAME: run.json, NAME__<seed>__<time>/progress.csv) states
the command that made it. This reruns that command with the budget cut to the first `--epochs` epochs
(the scripts' only use of --total-timesteps is the number of epochs, so the first epochs are the same
computation) into a temporary folder, and compares those rows of progress.csv with the record's, the
wall-clock columns (sps, time_elapsed) aside. A record that was resumed is rerun from the start: its
epochs before the interruption must repeat, later ones may differ where an episode was cut (README,
"What a resumed run repeats"). It is a cheap check of a record whose run.json says
`git_dirty: true` (the tree held uncommitted changes when it ran) or whose commit is older than the code
you have: a full rerun through benchmark/run.py is the complete check. Exact repetition also needs a CPU
with the SIMD extensions of the record's (run.json's `cpu`): torch and MKL choose their kernels by them,
and a kernel of another width rounds differently from the first epoch on; a differing record says so.

    python benchmark/check_run.py docs/runs/matrix/SafetyHopperVelocity-v1__cpo__6
    python benchmark/check_run.py docs/runs/matrix/SafetyCarCircle1-v0__strpo__* --epochs 1

Prints one line per record (`repeats` or the first differing row and column); exits with 1 when any
record differs, 2 when one cannot be checked (no run.json, a robustness sweep, no progress.csv).
"""
from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"sps", "time_elapsed"}  # progress.csv's wall-clock columns: the only ones a rerun may change


def read_rows(progress: Path) -> list[dict[str, str]]:
    with open(progress, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def first_difference(recorded: list[dict[str, str]], rerun: list[dict[str, str]], epochs: int) -> str:
    """'' when the first `epochs` rows agree exactly, else where they first differ."""
    if len(rerun) < epochs or len(recorded) < epochs:
        return f"the record has {len(recorded)} epochs and the rerun {len(rerun)}; {epochs} wanted"
    for i in range(epochs):
        keys = [*recorded[i], *(k for k in rerun[i] if k not in recorded[i])]  # progress.csv's column order
        differ = [k for k in keys if recorded[i].get(k) != rerun[i].get(k)]
        if differ:
            key = differ[0]
            return (f"epoch {i + 1}, {key}: recorded {recorded[i].get(key)}, rerun {rerun[i].get(key)}"
                    f" ({len(differ)} of {len(keys)} columns differ: {', '.join(differ)})")
    return ""


def rerun_command(record: dict, epochs: int, output_dir: Path) -> list[str]:
    """The record's command with the budget cut to `epochs` epochs and the output in `output_dir`."""
    argv = shlex.split(record["command"])
    if argv[0] != "python" or not argv[1].endswith(".py") or "robustness_attack.py" in argv[1]:
        raise ValueError(f"not a training command: {record['command']}")
    if "--resume" in argv:  # start afresh: its epochs before the interruption are a fresh run's (README)
        del argv[argv.index("--resume"):argv.index("--resume") + 2]
    if "--save-policies-at" in argv:  # keep the snapshots that fall inside the cut budget (saving draws no number)
        at = argv.index("--save-policies-at") + 1
        end = next((i for i in range(at, len(argv)) if argv[i].startswith("--")), len(argv))
        kept = [k for k in argv[at:end] if int(k) <= epochs]
        argv[at - 1:end] = ["--save-policies-at", *kept] if kept else []
    budget = str(epochs * int(record["steps_per_epoch"]))
    for flag, value in (("--total-timesteps", budget), ("--output-dir", str(output_dir))):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return [sys.executable, *argv[1:]]


@functools.lru_cache(maxsize=None)
def this_cpu() -> str | None:
    """This machine's CPU as benchmark/run.py records it in run.json (model name and SIMD extensions)."""
    spec = importlib.util.spec_from_file_location("benchmark_run", Path(__file__).with_name("run.py"))
    module = sys.modules.setdefault("benchmark_run", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)  # registered first: its dataclasses look their module up
    return module.cpu_provenance()


def cpu_note(record: dict) -> str:
    """Why a rerun may differ besides the code: torch's and MKL's kernels round by the CPU's SIMD extensions."""
    if not record.get("cpu"):
        return "; its CPU is unrecorded, and a run repeats exactly only on a CPU with the same SIMD extensions"
    if record["cpu"] != this_cpu():
        return f"; it ran on another CPU ({record['cpu']}), and a run repeats exactly only on one with the same SIMD extensions"
    return ""


def check(record_dir: Path, epochs: int) -> tuple[int, str]:
    """(0 repeats, 1 differs, 2 cannot be checked) and the line to print."""
    run_json, recorded = record_dir / "run.json", sorted(record_dir.glob("*/progress.csv"))
    if not run_json.is_file() or not recorded:
        return 2, "no run.json or no progress.csv: not a training record of benchmark/run.py"
    record = json.loads(run_json.read_text())
    with tempfile.TemporaryDirectory(prefix="check_run_") as tmp:
        try:
            argv = rerun_command(record, epochs, Path(tmp))
        except ValueError as err:
            return 2, str(err)
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rerun = sorted(Path(tmp).glob("*/progress.csv"))
        if done.returncode != 0 or not rerun:
            tail = done.stderr.strip().splitlines()[-1:] or ["no progress.csv"]
            return 2, f"the rerun failed ({done.returncode}): {tail[0]}"
        difference = first_difference(read_rows(recorded[-1]), read_rows(rerun[0]), epochs)
    commit = record["git_commit"][:7] if record.get("git_commit") else "an unrecorded commit"
    commit += "+dirty" if record.get("git_dirty") else ""
    if difference:
        return 1, f"differs from its record (run at {commit}{cpu_note(record)}): {difference}"
    return 0, f"repeats its first {epochs} epoch(s) exactly (recorded at {commit})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="record folders (each with run.json)")
    parser.add_argument("--epochs", type=int, default=2, help="how many first epochs to rerun and compare")
    args = parser.parse_args()
    if args.epochs <= 0:
        raise SystemExit(f"error: --epochs must be positive, got {args.epochs}")
    worst = 0
    for record_dir in args.records:
        status, line = check(record_dir, args.epochs)
        print(f"{record_dir.name}: {line}", flush=True)
        worst = max(worst, status)
    sys.exit(worst)


if __name__ == "__main__":
    main()
