"""Bit-identity check of the training scripts: run each for a few short epochs in a checkout, then
compare two checkouts' results exactly (a refactoring must change no number).

    git worktree add /tmp/base BASE_COMMIT
    python benchmark/bit_identity.py --root /tmp/base --out runs/bit_identity/before      # the reference checkout
    python benchmark/bit_identity.py --out runs/bit_identity/after --compare runs/bit_identity/before

Per script and env it keeps progress.csv without the wall-clock columns, every tensor of the final
checkpoint and of resume.pt (actor, critics, optimiser states, normaliser, multiplier) and the
script's --help text. --compare reports, per run, identical or the first difference; --help
differences are printed as a diff (flags removed or renamed show there).
"""
from __future__ import annotations

import csv
import difflib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro

SCRIPTS = ["strpo.py", "unsafe_cvar_trpo.py", "baselines/trpo_lag.py", "baselines/cpo.py", "baselines/pcpo.py",
           "baselines/rcpo.py", "baselines/ppo_lag.py", "baselines/cppo_pid.py", "baselines/cup.py", "baselines/focops.py"]
TIMING = {"sps", "time_elapsed"}  # wall-clock columns of progress.csv
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    root: str = str(ROOT)
    """the checkout whose scripts are run"""
    out: str = str(ROOT / "runs" / "bit_identity" / "run")
    """folder for the runs and their extracted results"""
    compare: Optional[str] = None
    """another --out folder to compare with (exact equality)"""
    scripts: list[str] = field(default_factory=lambda: list(SCRIPTS))
    """scripts to run, relative to --root"""
    env_ids: list[str] = field(default_factory=lambda: ["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"])
    """tasks"""
    epochs: int = 2
    """epochs per run"""
    steps_per_epoch: int = 2000
    """steps per epoch"""
    num_envs: int = 2
    """envs per run"""
    seed: int = 0
    """seed of every run"""


def tensors(obj, prefix: str = "") -> dict:
    """Every tensor or array inside a (nested) checkpoint dict, by path; numbers as 0-d arrays."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in tensors(val, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, (torch.Tensor, np.ndarray, dict)) for x in obj):
        return {k: v for i, val in enumerate(obj) for k, v in tensors(val, f"{prefix}/{i}").items()}
    if isinstance(obj, torch.Tensor):
        return {prefix: obj.detach().cpu().numpy()}
    if isinstance(obj, (np.ndarray, float, int)) and not isinstance(obj, bool):
        return {prefix: np.asarray(obj)}
    return {}


def run_one(args: Args, script: str, env_id: str) -> Path:
    name = f"{Path(script).stem}__{env_id}"
    out = Path(args.out) / name
    if (out / "result.pt").is_file():
        return out
    run_root = out / "runs"
    command = [sys.executable, str(Path(args.root) / script), "--env-id", env_id, "--seed", str(args.seed),
               "--num-envs", str(args.num_envs), "--steps-per-epoch", str(args.steps_per_epoch),
               "--total-timesteps", str(args.epochs * args.steps_per_epoch), "--output-dir", str(run_root)]
    start = time.time()
    result = subprocess.run(command, cwd=args.root, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    (run_dir,) = [p for p in run_root.iterdir() if p.is_dir()]
    with open(run_dir / "progress.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    (ckpt,) = [p for p in run_dir.glob("*.pt") if p.name != "resume.pt"]
    final = torch.load(ckpt, map_location="cpu", weights_only=False)
    resume = torch.load(run_dir / "resume.pt", map_location="cpu", weights_only=False)
    weights = {**{f"final{k}": v for k, v in tensors({"actor": final["actor_state_dict"], "obs_rms": final["obs_rms"],
                                                       "global_step": final["global_step"]}).items()},
               **{f"resume{k}": v for k, v in tensors(resume["modules"]).items()}}
    help_text = subprocess.run([sys.executable, str(Path(args.root) / script), "--help"], cwd=args.root,
                               capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"}).stdout
    torch.save({"rows": rows, "weights": weights, "help": help_text}, out / "result.pt")
    print(f"{name}: {len(rows)} epochs in {time.time() - start:.0f} s", flush=True)
    return out


def compare(name: str, a: dict, b: dict) -> list[str]:
    problems = []
    if a["rows"] != b["rows"]:
        for i, (x, y) in enumerate(zip(a["rows"], b["rows"])):
            diff = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            if diff:
                problems.append(f"progress row {i + 1} differs in {diff[:6]}")
                break
        else:
            problems.append(f"progress has {len(a['rows'])} rows against {len(b['rows'])}")
    keys_a, keys_b = set(a["weights"]), set(b["weights"])
    if keys_a != keys_b:
        problems.append(f"tensors only before: {sorted(keys_a - keys_b)[:5]}, only after: {sorted(keys_b - keys_a)[:5]}")
    for k in sorted(keys_a & keys_b):
        x, y = a["weights"][k], b["weights"][k]
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            problems.append(f"tensor {k} differs")
    return problems


def main(args: Args) -> int:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    failed = 0
    for script in args.scripts:
        for env_id in args.env_ids:
            out = run_one(args, script, env_id)
            if args.compare is None:
                continue
            name = out.name
            ref = torch.load(Path(args.compare) / name / "result.pt", weights_only=False)
            new = torch.load(out / "result.pt", weights_only=False)
            problems = compare(name, ref, new)
            failed += bool(problems)
            print(f"{name}: {'identical' if not problems else 'DIFFERENT: ' + '; '.join(problems[:4])} "
                  f"({len(new['rows'])} progress rows, {len(new['weights'])} tensors)", flush=True)
            before, after = (re.sub(r"usage: \S+/", "usage: ", r["help"]).splitlines() for r in (ref, new))
            if env_id == args.env_ids[0] and before != after:
                diff = difflib.unified_diff(before, after, "before", "after", lineterm="", n=0)
                print(f"--help of {script} changed:\n" + "\n".join(diff))
    if args.compare is not None:
        print("all identical" if not failed else f"{failed} runs differ")
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
