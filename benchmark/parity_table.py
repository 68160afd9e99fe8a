"""Parity table: our baselines against OmniSafe 0.5.0 on SafetyHopperVelocity-v1 at 450k steps.

Reads our run records (docs/runs/parity-hopper-450k/<script>__<env>__seed<k>/progress.csv) and
OmniSafe's progress.csv files (docs/runs/peer-omnisafe/omnisafe-hopper-450k/<ALGO>_seed-00<k>.csv by
default) and prints a Markdown table. Final = mean of the last 3 epochs of the episode return /
cost per seed, then mean ± std (sample std, ddof=1, as in the OmniSafe folder's README) over seeds; mean cost = mean
episode cost over all epochs per seed, then mean ± std over seeds. Epochs with no finished
episode (NaN) are skipped in the means. The last column names the code behind our runs: the git commit
of benchmark/run.py's run.json beside a run folder, else of the run's config.json (7 characters, +dirty
when tracked files had changes; unrecorded for records older than that field), with how many runs each.

    python benchmark/parity_table.py
    python benchmark/parity_table.py --ours docs/runs/parity-hopper-450k --omnisafe docs/runs/peer-omnisafe/omnisafe-hopper-450k
    python benchmark/parity_table.py --variants docs/runs/parity-hopper-450k/cpo-variants   # single-seed CPO variants
    # the same comparison on benchmark/run.py's records (the main matrix's Hopper runs, current code):
    python benchmark/parity_table.py --matrix docs/runs/matrix --out benchmark/results/parity_matrix.md
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("cpo", "CPO"), ("trpo_lag", "TRPOLag"), ("ppo_lag", "PPOLag")]  # (our script, OmniSafe algo)
LAST = 3  # final = mean of the last 3 epochs


def read_columns(path: Path, ret_key: str, cost_key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.DictReader(open(path)))
    ret = np.array([float(r[ret_key]) if r[ret_key] not in ("", "nan") else math.nan for r in rows])
    cost = np.array([float(r[cost_key]) if r[cost_key] not in ("", "nan") else math.nan for r in rows])
    return ret, cost


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(runs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    final_ret = [np.nanmean(ret[-LAST:]) for ret, _ in runs]
    final_cost = [np.nanmean(cost[-LAST:]) for _, cost in runs]
    mean_cost = [np.nanmean(cost) for _, cost in runs]
    return {"n": len(runs), "epochs": min(len(r) for r, _ in runs),
            "final_ret": mean_std(final_ret), "final_cost": mean_std(final_cost), "mean_cost": mean_std(mean_cost), "per_seed": list(zip(final_ret, final_cost))}


def commits_text(progress_files: list[Path]) -> str:
    """The commits of the code behind these runs (run.json one folder up, as benchmark/run.py writes it, else
    config.json beside progress.csv), with how many runs each."""
    counts: dict[str, int] = {}
    for progress in progress_files:
        records = [json.loads(f.read_text()) for f in (progress.parent.parent / "run.json", progress.parent / "config.json")
                   if f.is_file()]
        record = next((r for r in records if r.get("git_commit")), {})
        key = record["git_commit"][:7] + ("+dirty" if record.get("git_dirty") else "") if record.get("git_commit") else "unrecorded"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ({n} run{'s' if n > 1 else ''})" for k, n in sorted(counts.items(), key=lambda kv: kv[0] == "unrecorded"))


def variants_table(folder: Path) -> None:
    """One row per single-seed variant run under `folder` (docs/runs/parity-hopper-450k/cpo-variants/)."""
    print("| run | epochs | final reward | final cost | mean cost | final ep. length | cases over all epochs |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted(folder.glob("*/progress.csv")):
        rows = list(csv.DictReader(open(path)))
        ret, cost = read_columns(path, "ep_ret", "ep_cost")
        length, _ = read_columns(path, "ep_len", "ep_len")
        cases = {}
        for r in rows:
            cases[r.get("cpo_case", "")] = cases.get(r.get("cpo_case", ""), 0) + 1
        print(f"| {path.parent.name} | {len(rows)} | {np.nanmean(ret[-LAST:]):.0f} | {np.nanmean(cost[-LAST:]):.1f} | "
              f"{np.nanmean(cost):.1f} | {np.nanmean(length[-LAST:]):.0f} | "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(cases.items()))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, default=ROOT / "docs" / "runs" / "parity-hopper-450k")
    parser.add_argument("--omnisafe", type=Path, default=ROOT / "docs" / "runs" / "peer-omnisafe" / "omnisafe-hopper-450k")
    parser.add_argument("--env-id", default="SafetyHopperVelocity-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--matrix", type=Path, default=None,
                        help="read ours from benchmark/run.py's layout instead: <env>__<script>__<k>/<run>/progress.csv")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--variants", type=Path, default=None,
                        help="instead: one row per run folder under this folder (e.g. the cpo-variants records)")
    args = parser.parse_args()
    if args.variants is not None:
        variants_table(args.variants)
        return

    def ours(script: str) -> list[Path]:
        if args.matrix is None:
            return [args.ours / f"{script}__{args.env_id}__seed{k}" / "progress.csv" for k in args.seeds]
        return [p for k in args.seeds for p in sorted((args.matrix / f"{args.env_id}__{script}__{k}").glob("*/progress.csv"))[-1:]]

    lines = ["| algorithm | implementation | seeds | final reward | final cost | mean cost (all epochs) | per seed (reward / cost) "
             "| code (git commit) |", "|---|---|---|---|---|---|---|---|"]
    for script, algo in PAIRS:
        for label, paths, keys in (
            (f"ours (`baselines/{script}.py`)", ours(script), ("ep_ret", "ep_cost")),
            ("OmniSafe 0.5.0", [args.omnisafe / f"{algo}_seed-{k:03d}.csv" for k in args.seeds],
             ("Metrics/EpRet", "Metrics/EpCost")),
        ):
            found = [p for p in paths if p.is_file()]
            if not found:
                lines.append(f"| {algo} | {label} | 0 | (no runs) | | | | |")
                continue
            s = summarise([read_columns(p, *keys) for p in found])
            per_seed = ", ".join(f"{r:.0f} / {c:.1f}" for r, c in s["per_seed"])
            code = "the OmniSafe 0.5.0 release" if label.startswith("OmniSafe") else commits_text(found)
            lines.append(f"| {algo} | {label} | {s['n']} | {s['final_ret'][0]:.0f} ± {s['final_ret'][1]:.0f} | "
                         f"{s['final_cost'][0]:.1f} ± {s['final_cost'][1]:.1f} | {s['mean_cost'][0]:.1f} ± {s['mean_cost'][1]:.1f} | {per_seed} "
                         f"| {code} |")
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
