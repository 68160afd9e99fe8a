"""Compare groups of runs: final reward and cost, and mean cost over training, mean ± std over seeds.

A group is one configuration's seeds: every run folder (holding a progress.csv) whose name is the
same once its seed is removed, a record's trailing `__seed<K>` (strpo__SafetyHopperVelocity-v1__k4__seed0
.. seed2 form strpo__SafetyHopperVelocity-v1__k4) or a script's own `__<seed>__<unix time>`
(runs/SafetyCarCircle1-v0__strpo__0__1764000000, runs/SafetyCarCircle1-v0__strpo__1__1764000950, ... form
SafetyCarCircle1-v0__strpo). Runs of one script with other flags need another name: `--exp-name`. Final = mean of the last 3 epochs of ep_ret / ep_cost per run
(epochs without a finished episode skipped), then mean ± std (ddof 1) over the group's seeds; mean
cost = mean episode cost over all epochs of a run, then over seeds. Prints a Markdown table and, for
exactly two groups, each measure's difference (second - first) with its standard error
sqrt(s1^2/n1 + s2^2/n2) and their ratio; `--out FILE` also writes that text to FILE.

    python benchmark/compare_runs.py docs/runs/fisher-subsample --out benchmark/results/fisher_subsample.md
    python benchmark/compare_runs.py runs          # your own runs, in the scripts' default run folders
"""
from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np

LAST = 3
SEED_SUFFIX = re.compile(r"__seed\d+$|__-?\d+__\d+$")  # a record's __seed<K>; a run folder's __<seed>__<unix time>


def column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "", "nan") else np.nan for r in rows])


def mean_std(values: list[float]) -> str:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} ± {std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder whose subfolders are run records (progress.csv each)")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = parser.parse_args()
    groups: dict[str, list[Path]] = {}
    for path in sorted(args.folder.glob("*/progress.csv")):
        groups.setdefault(SEED_SUFFIX.sub("", path.parent.name), []).append(path)
    if not groups:
        raise SystemExit(f"error: no */progress.csv under {args.folder}")
    lines = ["| runs | seeds | epochs | final reward | final cost | mean cost (all epochs) | per seed (reward / cost) |",
             "|---|---|---|---|---|---|---|"]
    measures = {}
    for name, paths in groups.items():
        finals, costs, means, epochs = [], [], [], []
        for path in paths:
            rows = list(csv.DictReader(open(path)))
            ret, cost = column(rows, "ep_ret"), column(rows, "ep_cost")
            finals.append(float(np.nanmean(ret[-LAST:])))
            costs.append(float(np.nanmean(cost[-LAST:])))
            means.append(float(np.nanmean(cost)))
            epochs.append(len(rows))
        per_seed = ", ".join(f"{r:.0f} / {c:.1f}" for r, c in zip(finals, costs))
        lines.append(f"| {name} | {len(paths)} | {min(epochs)} | {mean_std(finals)} | {mean_std(costs)} | {mean_std(means)} | {per_seed} |")
        measures[name] = {"final reward": finals, "final cost": costs, "mean cost": means}
    if len(measures) == 2 and all(len(v["final cost"]) > 1 for v in measures.values()):
        (first, a), (second, b) = measures.items()
        parts = []
        for key in a:
            diff = float(np.mean(b[key]) - np.mean(a[key]))
            se = float(np.sqrt(np.var(a[key], ddof=1) / len(a[key]) + np.var(b[key], ddof=1) / len(b[key])))
            parts.append(f"{key} {diff:+.1f} ± {se:.1f} ({abs(diff) / se:.1f} standard errors)" if se > 0
                         else f"{key} {diff:+.1f}")
        lines += ["", f"Difference {second} − {first}, ± its standard error: " + "; ".join(parts) + "."]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
