"""Regenerate docs/runs/peer-omnisafe/: OmniSafe 0.5.0's own runs of CPO, TRPO-Lag and PPO-Lag on
SafetyHopperVelocity-v1 at this repository's budget, the reference our baselines are compared with
(benchmark/parity_table.py, docs/algorithms/{cpo,trpo_lag,ppo_lag}.md).

OmniSafe needs its own Python 3.10 venv (it pins other versions than requirements.txt), from the
repository root:

    python3.10 -m venv .venv-omnisafe
    .venv-omnisafe/bin/pip install omnisafe==0.5.0 numpy==1.23.5 safety-gymnasium==1.0.0 moviepy==1.0.3
    .venv-omnisafe/bin/python benchmark/peer_omnisafe.py --out docs/runs/peer-omnisafe/omnisafe-hopper-450k
    .venv-omnisafe/bin/python benchmark/peer_omnisafe.py --algos CPO --seeds 0     # into runs/peer-omnisafe/

Each run: 450,000 steps, 15,000-step epochs (30 epochs; the paper's epoch), one env, one torch
thread, CPU, no wandb/tensorboard, OmniSafe's default configs otherwise (cost limit 25). OmniSafe
writes its run to LOG_DIR/{ALGO}-{{ENV}}/seed-{SEED:03d}-{time}/ (progress.csv, config.json); this
script copies them to OUT/{ALGO}_seed-{SEED:03d}.csv and OUT/{ALGO}_seed-{SEED:03d}.config.json, the
names parity_table.py reads (columns Metrics/EpRet, Metrics/EpCost, TotalEnvSteps, Time/*), then
writes OUT/summary.txt (final = mean of the last 3 epochs per seed; mean ± std, ddof=1, over seeds).
The committed CSVs were made this way, two runs at a time on a 2-core machine (about 7 min for CPO
and TRPO-Lag, 21 min for PPO-Lag per run); they carry no config.json (the defaults of 0.5.0 plus
the overrides below).
"""
from __future__ import annotations

import argparse
import csv
import math
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("CPO", "TRPOLag", "PPOLag")  # OmniSafe's names of our cpo, trpo_lag, ppo_lag
LAST = 3  # final = mean of the last 3 epochs (as parity_table.py)


def omnisafe_cfg(seed: int, total_steps: int, log_dir: str) -> dict:
    """The overrides of OmniSafe's default config: budget, epoch, one env and thread on the CPU, no loggers."""
    return {"seed": seed,
            "train_cfgs": {"total_steps": total_steps, "vector_env_nums": 1, "parallel": 1, "torch_threads": 1,
                           "device": "cpu"},
            "algo_cfgs": {"steps_per_epoch": 15_000},
            "logger_cfgs": {"use_wandb": False, "use_tensorboard": False, "log_dir": log_dir}}


DEFAULT_OUT = ROOT / "runs" / "peer-omnisafe" / "omnisafe-hopper-450k"  # --out docs/runs/... rewrites the committed copy


def run_one(algo: str, env_id: str, seed: int, total_steps: int, out: Path) -> Path:
    """Train one OmniSafe run and copy its progress.csv (and config.json) to OUT/{algo}_seed-{seed:03d}.*."""
    import omnisafe

    with tempfile.TemporaryDirectory() as log_dir:
        start = time.time()
        omnisafe.Agent(algo, env_id, custom_cfgs=omnisafe_cfg(seed, total_steps, log_dir)).learn()
        (progress,) = Path(log_dir).glob(f"{algo}-*/seed-{seed:03d}-*/progress.csv")
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{algo}_seed-{seed:03d}.csv"
        shutil.copy2(progress, target)
        if (progress.parent / "config.json").is_file():
            shutil.copy2(progress.parent / "config.json", out / f"{algo}_seed-{seed:03d}.config.json")
    print(f"{algo} {env_id} seed {seed}: {total_steps} steps in {time.time() - start:.0f} s -> {target}", flush=True)
    return target


def column(path: Path, name: str) -> list[float]:
    with open(path, newline="") as f:
        return [float(r[name]) if r[name] not in ("", "nan") else math.nan for r in csv.DictReader(f)]


def summary(out: Path, algos: list[str], seeds: list[int]) -> str:
    """The table of summary.txt: per algorithm, final reward / cost and mean cost, mean +- std over seeds."""
    import numpy as np

    def ms(values, width, std_width):
        return f"{np.mean(values):{width}.1f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:{std_width}.1f}"

    lines = [f"{'label':<28} seeds  steps      final reward      final cost    mean cost (all epochs)"]
    for algo in algos:
        files = [out / f"{algo}_seed-{s:03d}.csv" for s in seeds if (out / f"{algo}_seed-{s:03d}.csv").is_file()]
        if not files:
            continue
        ret = [column(p, "Metrics/EpRet") for p in files]
        cost = [column(p, "Metrics/EpCost") for p in files]
        steps = int(column(files[0], "TotalEnvSteps")[-1])
        lines.append(f"{'OmniSafe-' + algo:<28} {len(files):5d} {steps:10d} {ms([np.nanmean(r[-LAST:]) for r in ret], 9, 6)} "
                     f"{ms([np.nanmean(c[-LAST:]) for c in cost], 7, 5)} {ms([np.nanmean(c) for c in cost], 7, 5)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--env-id", default="SafetyHopperVelocity-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=450_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default runs/peer-omnisafe/...; the committed "
                        "copy is docs/runs/peer-omnisafe/omnisafe-hopper-450k")
    args = parser.parse_args()
    for algo in args.algos:
        for seed in args.seeds:
            run_one(algo, args.env_id, seed, args.total_steps, args.out)
    (args.out / "summary.txt").write_text(summary(args.out, args.algos, args.seeds))
    print((args.out / "summary.txt").read_text())


if __name__ == "__main__":
    main()
