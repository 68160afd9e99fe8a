"""Curves, tables and rliable statistics from progress.csv files: writes docs/results.md and docs/results/.

Reads every progress.csv under the `--inputs` folders (default runs/matrix/, written by benchmark/run.py,
and docs/runs/matrix/, its committed copy: see --publish) and every robustness.csv there, and writes:

(a) figures in docs/results/: the paper's Figures 2-3 layout (`curves_navigation.png`: CarGoal1 and
    CarCircle1; `curves_velocity.png`: HopperVelocity and AntVelocity; reward on top, cost below, one line
    per algorithm, mean ± one std across seeds, the cost limit dashed), one figure per ablation group
    (`ablation-*.png`, with the default sTRPO of `main` on the same task as a reference line) and one per
    robustness task (`robustness_{env}.png`, reward and cost against the attack rate);
(b) a results table per task (`results_main.csv` and in results.md): final reward and final cost, each
    the mean ± std over seeds of a run's mean over its last epochs (`--final-epochs`, default the last
    10% of epochs, at least one), the mean episode cost over all of training (the violations the paper
    counts), the steps reached and the seeds;
(c) aggregate scores over the tasks with rliable (`rliable_scores.csv`): the interquartile mean (IQM)
    with stratified-bootstrap 95% confidence intervals of the normalised final reward and of the final
    cost / cost limit, and the probability of improvement of sTRPO over each baseline.

Choices stated in the output too:
- std is the population std over seeds (numpy's default, ddof=0), in curves and tables alike.
- Curves average seeds epoch by epoch and stop at the shortest seed's last epoch.
- Normalised reward, per task: (R - R_init) / (R_best - R_init), where R is a run's final reward,
  R_init the mean first-epoch reward of all `main` runs on the task (an untrained policy, the stand-in
  for a random policy that every progress.csv carries) and R_best the highest final reward of any `main`
  run on the task. So 0 = no better than the initial policy, 1 = the best run measured.
- rliable needs one score per (run, task): the aggregate uses the tasks on which every algorithm has a
  run, and for each algorithm as many runs per task as its task with the fewest seeds has (lowest seeds).
- When two progress.csv describe the same run (same group, task, label, seed: a restart beside its
  interrupted attempt, or a copy under docs/runs/matrix/), the one that reached the most steps is used.

Metadata of a run: run.json beside its folder (benchmark/run.py: group, label, seed, planned budget),
else its config.json (exp_name, env_id, seed, total_timesteps; group `main`), else its folder name
`{env_id}__{exp_name}__{seed}__{time}`. It works with any subset of runs and says what is missing from
the matrices of benchmark/run.py.

    python benchmark/aggregate.py --publish                          # finished runs -> docs/runs/matrix -> docs/
    python benchmark/aggregate.py                                    # runs/matrix + docs/runs/matrix -> docs/
    python benchmark/aggregate.py --inputs runs/matrix my_runs/ --final-epochs 3 --out-md /tmp/r.md --out-dir /tmp/r
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import tyro

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COST_LIMIT = 25.0  # every script's default (SPEC 3)
FINAL_FRACTION = 0.1  # "final" = the last 10% of a run's epochs unless --final-epochs says otherwise
# legend labels of benchmark/run.py's ablation presets (tests/test_aggregate.py checks they are run.py's)
DELTA_LABELS = {"1e-2": "δ = 1e-2", "1e-4": "δ = 1e-4", "decoupled": "δ1 = 1e-2, δ2 = 1e-4"}
LAMBDA2_LABELS = ("λ2 = 0.01 (fixed)", "λ2 = 1.0 (fixed)")
UNSAFE_LABELS = ("π_unsafe: CVaR critic (DTRPO)", "π_unsafe: mean critic (TRPO)")
NO_JOINT_LABEL, NO_EXCLUSION_LABEL = "no joint advantage", "no exclusion (λ2 = 0)"
MULTIPLIER_COLUMNS = ("lagrange_multiplier", "lambda_cost")  # the multiplier's column in the scripts' progress.csv
DRASTIC = 2.0  # ablation claims: "cost increased drastically" read as at least twice the default's mean cost
REASONABLY_WELL = 0.8  # "performance reasonably well" read as at least 80% of the default's final reward
COST_NEAR_ZERO = 2.5  # claims: "cost about zero" read as a final cost below 10% of the cost limit
DISPLAY = {"strpo": "sTRPO", "trpo_lag": "TRPO-Lag", "cpo": "CPO", "ppo_lag": "PPO-Lag", "cppo_pid": "CPPO-PID",
           "rcpo": "RCPO", "pcpo": "PCPO", "cup": "CUP", "focops": "FOCOPS"}
ORDER = list(DISPLAY)
COLORS = {"strpo": "#d62728", "trpo_lag": "#1f77b4", "cpo": "#2ca02c", "ppo_lag": "#ff7f0e", "cppo_pid": "#9467bd",
          "rcpo": "#8c564b", "pcpo": "#e377c2", "cup": "#7f7f7f", "focops": "#17becf"}
NAVIGATION_ORDER = ("SafetyCarGoal1-v0", "SafetyCarCircle1-v0")  # the paper's Figure 2 columns
VELOCITY_ORDER = ("SafetyHopperVelocity-v1", "SafetyAntVelocity-v1")  # Figure 3 columns
RUN_NAME = re.compile(r"^(?P<env>[^_]+)__(?P<exp>.+)__(?P<seed>-?\d+)__(?P<time>\d+)$")  # the scripts' run name


@dataclass
class Args:
    inputs: list[str] = field(default_factory=lambda: ["runs/matrix", "docs/runs/matrix"])
    """folders searched (recursively) for progress.csv and robustness.csv; missing folders are skipped"""
    publish: bool = False
    """first copy every finished run of the first input folder (run.json, config.json, progress.csv, and a
    robustness run's attack/robustness.csv) into --publish-dir, the record that is committed, then build the
    page from that record alone (so a clone regenerates the same page)"""
    publish_dir: str = "docs/runs/matrix"
    """where --publish copies the runs, keeping their two-level layout (NAME/run.json, NAME/<run>/progress.csv)"""
    out_md: str = "docs/results.md"
    """the generated results page"""
    out_dir: str = "docs/results"
    """folder of the figures and CSV tables (linked from out_md)"""
    final_epochs: Optional[int] = None
    """epochs at the end of each run averaged into its final reward and cost; default the last 10% (at least 1)"""
    bootstrap_reps: int = 5000
    """stratified-bootstrap replications of the rliable confidence intervals"""
    seed: int = 0
    """seed of the bootstrap"""


@dataclass
class Record:
    """One run's progress.csv with what it belongs to."""
    path: Path
    env_id: str
    group: str  # main, ablation-delta, ...
    label: str  # algorithm (main) or variant (ablations)
    seed: int
    step: np.ndarray
    reward: np.ndarray
    cost: np.ndarray
    planned_steps: Optional[int] = None
    cost_limit: float = DEFAULT_COST_LIMIT
    seconds: float = float("nan")  # time_elapsed of the last row
    wall: tuple = (None, None)  # run.json's started_at / ended_at (unix time) of the attempt that wrote it
    multiplier_max: float = float("nan")  # largest Lagrange multiplier logged (lagrange_multiplier or lambda_cost)


# ----------------------------------------------------------------------------------------------
# Reading


def read_progress(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}

    def column(name):
        out = []
        for r in rows:
            try:
                out.append(float(r.get(name) if r.get(name) not in (None, "") else "nan"))
            except ValueError:
                out.append(float("nan"))
        return np.array(out)

    return {name: column(name) for name in rows[0]}


def describe(progress: Path) -> Optional[dict]:
    """group/label/env/seed/budget of the run that wrote this progress.csv (None if unrecognisable)."""
    folder = progress.parent
    meta = {"group": "main", "planned_steps": None, "cost_limit": DEFAULT_COST_LIMIT, "wall": (None, None)}
    config_path = folder / "config.json"
    config = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError:
            config = {}
    match = RUN_NAME.match(folder.name)
    if config.get("env_id") is not None:
        meta.update(env_id=config["env_id"], label=config.get("exp_name", "?"), seed=int(config.get("seed", 0)),
                    planned_steps=config.get("total_timesteps"))
    elif match:
        meta.update(env_id=match["env"], label=match["exp"], seed=int(match["seed"]))
    else:
        return None
    meta["cost_limit"] = float(config.get("cost_limit", DEFAULT_COST_LIMIT))
    if config.get("critic") in ("cvar", "mean"):  # unsafe_cvar_trpo.py, the one script with --critic: a π_unsafe, no baseline
        meta.update(group="ablation-unsafe-reference", label=f"{config['critic']} critic")  # run.py's labels for it
    record = folder.parent / "run.json"
    if record.is_file():
        try:
            run = json.loads(record.read_text())
            meta.update(group=run.get("group", meta["group"]), label=run.get("label", meta["label"]),
                        seed=int(run.get("seed", meta["seed"])), env_id=run.get("env_id", meta["env_id"]),
                        planned_steps=run.get("total_timesteps", meta["planned_steps"]),
                        wall=(run.get("started_at"), run.get("ended_at")))
        except json.JSONDecodeError:
            pass
    return meta


def load_records(inputs: list[Path]) -> tuple[list[Record], list[str]]:
    """Every recognisable progress.csv under the inputs, one per run (the most advanced), and notes."""
    notes, best = [], {}
    for folder in inputs:
        if not folder.is_dir():
            notes.append(f"input folder {folder} does not exist (skipped)")
            continue
        for path in sorted(folder.rglob("progress.csv")):
            meta = describe(path)
            data = read_progress(path)
            if meta is None or not data or not {"global_step", "ep_ret", "ep_cost"} <= set(data):
                notes.append(f"{path}: not a run's progress.csv (skipped)")
                continue
            rec = Record(path=path, env_id=meta["env_id"], group=meta["group"], label=meta["label"],
                         seed=meta["seed"], step=data["global_step"], reward=data["ep_ret"], cost=data["ep_cost"],
                         planned_steps=meta["planned_steps"], cost_limit=meta["cost_limit"], wall=meta["wall"],
                         seconds=float(data["time_elapsed"][-1]) if "time_elapsed" in data else float("nan"),
                         multiplier_max=max((float(np.nanmax(data[k])) for k in MULTIPLIER_COLUMNS if k in data),
                                            default=float("nan")))
            key = (rec.group, rec.env_id, rec.label, rec.seed)
            if key not in best or rec.step[-1] > best[key].step[-1]:
                best[key] = rec
    return list(best.values()), notes


def publish_runs(source: Path, dest: Path) -> list[str]:
    """Copy the record of every finished run under `source` (a benchmark/run.py root) to `dest`, same layout:
    NAME/run.json, NAME/<run folder>/{config.json, progress.csv} for a training run whose final checkpoint
    exists, NAME/attack/robustness.csv for a finished robustness run. Unfinished runs are left out (a
    partial copy would stand for a run that is not over); checkpoints too (the record is the numbers).
    Returns the names copied."""
    import shutil

    copied = []
    for record in sorted(source.glob("*/run.json")):
        name_dir = record.parent
        files = []
        for progress in name_dir.glob("*/progress.csv"):
            config = progress.parent / "config.json"
            exp = json.loads(config.read_text()).get("exp_name") if config.is_file() else None
            if exp and (progress.parent / f"{exp}.pt").is_file():
                files += [progress, config]
        files += list(name_dir.glob("attack/robustness.csv"))
        if not files:
            continue
        for f in [record, *files]:
            target = dest / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        copied.append(name_dir.name)
    return copied


def read_robustness(inputs: list[Path]) -> list[dict]:
    rows = []
    for folder in inputs:
        if folder.is_dir():
            for path in sorted(folder.rglob("robustness.csv")):
                with open(path, newline="") as f:
                    rows += [{**r, "source": str(path)} for r in csv.DictReader(f)]
    return rows


# ----------------------------------------------------------------------------------------------
# Numbers


def n_final(n_epochs: int, final_epochs: Optional[int]) -> int:
    """How many of a run's last epochs make its final score: --final-epochs, or 10% (at least 1)."""
    k = final_epochs if final_epochs is not None else math.ceil(FINAL_FRACTION * n_epochs)
    return max(1, min(n_epochs, k))


def run_scores(rec: Record, final_epochs: Optional[int]) -> dict:
    """Final reward/cost (mean over the last epochs), mean cost over all of training, first-epoch reward."""
    k = n_final(len(rec.step), final_epochs)
    return {"final_reward": float(np.nanmean(rec.reward[-k:])), "final_cost": float(np.nanmean(rec.cost[-k:])),
            "mean_cost": float(np.nanmean(rec.cost)), "first_reward": float(rec.reward[0]),
            "steps": int(rec.step[-1]), "final_k": k}


def mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(np.mean(values)), float(np.std(values))  # population std over seeds (ddof=0)


def summary_table(records: list[Record], final_epochs: Optional[int]) -> list[dict]:
    """One row per (task, label): mean and std over seeds of each run's scores."""
    groups = {}
    for rec in records:
        groups.setdefault((rec.env_id, rec.label), []).append(rec)
    rows = []
    for (env_id, label), recs in groups.items():
        recs = sorted(recs, key=lambda r: r.seed)
        scores = [run_scores(r, final_epochs) for r in recs]
        row = {"env_id": env_id, "algo": label, "seeds": len(recs), "seed_list": " ".join(str(r.seed) for r in recs)}
        for key in ("final_reward", "final_cost", "mean_cost"):
            row[key + "_mean"], row[key + "_std"] = mean_std([s[key] for s in scores])
        row["steps_min"] = min(s["steps"] for s in scores)
        row["steps_max"] = max(s["steps"] for s in scores)
        planned = {r.planned_steps for r in recs if r.planned_steps}
        row["planned_steps"] = max(planned) if planned else ""
        row["final_epochs"] = " ".join(sorted({str(s["final_k"]) for s in scores}))
        row["cost_limit"] = recs[0].cost_limit
        rows.append(row)
    return sorted(rows, key=lambda r: (r["env_id"], sort_key(r["algo"])))


def sort_key(label: str):
    return (ORDER.index(label) if label in ORDER else len(ORDER), label)


def curve(recs: list[Record], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch-by-epoch mean and std over seeds, up to the shortest seed (x: mean global step)."""
    n = min(len(r.step) for r in recs)
    values = np.stack([getattr(r, column)[:n] for r in recs])
    steps = np.stack([r.step[:n] for r in recs]).mean(axis=0)
    return steps, np.nanmean(values, axis=0), np.nanstd(values, axis=0)


def normalisation(records: list[Record], final_epochs: Optional[int]) -> dict[str, tuple[float, float]]:
    """Per task (R_init, R_best): mean first-epoch reward and best final reward of the main runs."""
    out = {}
    for env_id in sorted({r.env_id for r in records}):
        scores = [run_scores(r, final_epochs) for r in records if r.env_id == env_id]
        out[env_id] = (float(np.mean([s["first_reward"] for s in scores])),
                       float(max(s["final_reward"] for s in scores)))
    return out


def score_matrices(records: list[Record], final_epochs: Optional[int]) -> tuple[dict, dict, list[str], dict]:
    """(normalised reward, cost / limit) as {algo: (runs x tasks)} over the tasks every algorithm has run."""
    algos = sorted({r.label for r in records}, key=sort_key)
    tasks = sorted(t for t in {r.env_id for r in records} if all(
        any(r.env_id == t and r.label == a for r in records) for a in algos))
    norm = normalisation([r for r in records if r.env_id in tasks], final_epochs)
    reward, cost = {}, {}
    for algo in algos:
        per_task = [sorted((r for r in records if r.label == algo and r.env_id == t), key=lambda r: r.seed)
                    for t in tasks]
        if not tasks:
            continue
        n = min(len(p) for p in per_task)
        rw, cs = np.zeros((n, len(tasks))), np.zeros((n, len(tasks)))
        for j, (recs, task) in enumerate(zip(per_task, tasks)):
            r_init, r_best = norm[task]
            for i, rec in enumerate(recs[:n]):
                s = run_scores(rec, final_epochs)
                rw[i, j] = (s["final_reward"] - r_init) / (r_best - r_init) if r_best != r_init else 0.0
                cs[i, j] = s["final_cost"] / rec.cost_limit
        reward[algo], cost[algo] = rw, cs
    return reward, cost, tasks, norm


@contextlib.contextmanager
def global_numpy_seed(seed: int):
    """rliable 1.2.0's stratified bootstraps draw their resampling indices from numpy's global RNG
    (`np.random.choice` in `update_indices`), not from the `random_state` they are given, so that alone
    leaves the CIs different on every call. Seed the global RNG for the call and restore it after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm_with_ci(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """rliable: IQM and its stratified-bootstrap 95% CI, per algorithm ({algo: (iqm, low, high)})."""
    from rliable import library as rly
    from rliable import metrics

    with warnings.catch_warnings(), global_numpy_seed(seed):  # arch warns that rliable passes a RandomState
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
            random_state=np.random.RandomState(seed))
    return {k: (float(point[k][0]), float(interval[k][0][0]), float(interval[k][1][0])) for k in scores}


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
    """rliable: P(a run of X beats a run of Y on a random task), with its bootstrap 95% CI."""
    from rliable import library as rly
    from rliable import metrics

    with warnings.catch_warnings(), global_numpy_seed(seed):
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            {"pair": (x, y)}, metrics.probability_of_improvement, reps=reps,
            random_state=np.random.RandomState(seed))
    return float(point["pair"]), float(interval["pair"][0]), float(interval["pair"][1])


def aggregate_scores(records: list[Record], final_epochs: Optional[int], reps: int, seed: int) -> dict:
    reward, cost, tasks, norm = score_matrices(records, final_epochs)
    out = {"tasks": tasks, "norm": norm, "rows": [], "poi": []}
    if not tasks or not reward:
        return out
    reward_iqm = iqm_with_ci(reward, reps, seed)
    cost_iqm = iqm_with_ci(cost, reps, seed)
    for algo in reward:
        out["rows"].append({"algo": algo, "runs_per_task": reward[algo].shape[0], "tasks": len(tasks),
                            "reward_iqm": reward_iqm[algo][0], "reward_low": reward_iqm[algo][1],
                            "reward_high": reward_iqm[algo][2], "cost_iqm": cost_iqm[algo][0],
                            "cost_low": cost_iqm[algo][1], "cost_high": cost_iqm[algo][2]})
    if "strpo" in reward:
        for algo in reward:
            if algo == "strpo":
                continue
            rp = probability_of_improvement(reward["strpo"], reward[algo], reps, seed)
            cp = probability_of_improvement(-cost["strpo"], -cost[algo], reps, seed)  # lower cost is better
            out["poi"].append({"baseline": algo, "reward_poi": rp[0], "reward_low": rp[1], "reward_high": rp[2],
                               "cost_poi": cp[0], "cost_low": cp[1], "cost_high": cp[2]})
    return out


# ----------------------------------------------------------------------------------------------
# Figures


def plot_rows(path: Path, panels: list[tuple[str, dict[str, list[Record]]]], title: str, cost_limit: float,
              colors: Optional[dict] = None) -> Path:
    """A 2 x len(panels) grid: reward (top) and cost (bottom) per panel, one line per label with ± std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 7), squeeze=False)
    for j, (panel_title, by_label) in enumerate(panels):
        for i, column in enumerate(("reward", "cost")):
            ax = axes[i, j]
            for k, label in enumerate(sorted(by_label, key=sort_key)):
                recs = by_label[label]
                x, mean, std = curve(recs, column)
                color = (colors or COLORS).get(label, f"C{k % 10}")
                lw = 2.2 if label in ("strpo", "sTRPO (main, default flags)") else 1.4
                ax.plot(x, mean, color=color, lw=lw, label=f"{DISPLAY.get(label, label)} ({len(recs)})")
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
            if column == "cost":
                ax.axhline(cost_limit, color="black", ls="--", lw=1, label=f"cost limit {cost_limit:g}")
            ax.set_title(f"{panel_title}: {'episode reward' if column == 'reward' else 'episode cost'}", fontsize=10)
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
        axes[1, j].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def robustness_summary(rows: list[dict]) -> dict[str, dict[str, dict[float, dict]]]:
    """{env: {algo: {rate: {reward, reward_std, cost, cost_std, checkpoints, episodes}}}}: mean and std over
    checkpoints (seeds) of each checkpoint's mean episode reward and cost."""
    acc = {}
    for r in rows:
        acc.setdefault(r["env_id"], {}).setdefault(r["algo"], {}).setdefault(float(r["rate"]), []).append(r)
    out = {}
    for env, by_algo in acc.items():
        for algo, by_rate in by_algo.items():
            for rate, rs in by_rate.items():
                rw, rs_ = mean_std([float(x["reward_mean"]) for x in rs])
                cm, cs = mean_std([float(x["cost_mean"]) for x in rs])
                out.setdefault(env, {}).setdefault(algo, {})[rate] = {
                    "reward": rw, "reward_std": rs_, "cost": cm, "cost_std": cs, "checkpoints": len(rs),
                    "episodes": sorted({int(x["episodes"]) for x in rs})}
    return out


def plot_robustness(path: Path, env: str, by_algo: dict, cost_limit: float) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    for k, algo in enumerate(sorted(by_algo, key=sort_key)):
        rates = sorted(by_algo[algo])
        for ax, key in zip(axes, ("reward", "cost")):
            mean = np.array([by_algo[algo][a][key] for a in rates])
            std = np.array([by_algo[algo][a][key + "_std"] for a in rates])
            color = COLORS.get(algo, f"C{k % 10}")
            ax.plot(rates, mean, marker="o", ms=3, color=color, lw=2.2 if algo == "strpo" else 1.3,
                    label=DISPLAY.get(algo, algo))
            ax.fill_between(rates, mean - std, mean + std, color=color, alpha=0.12, lw=0)
    axes[1].axhline(cost_limit, color="black", ls="--", lw=1, label=f"cost limit {cost_limit:g}")
    for ax, key in zip(axes, ("episode reward", "episode cost")):
        ax.set_title(f"{env}: {key} under random-action attack", fontsize=10)
        ax.set_xlabel("attack rate α")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# The expected matrix (benchmark/run.py) and the paper's claims


def unsafe_sections():
    """benchmark/unsafe_sections.py: the C.2 critic table and the pi_unsafe strength section."""
    spec = importlib.util.spec_from_file_location("unsafe_sections", Path(__file__).with_name("unsafe_sections.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runner_module():
    """benchmark/run.py as a module (None if it cannot be loaded): its presets say what should exist."""
    if "benchmark_run" in sys.modules:
        return sys.modules["benchmark_run"]
    spec = importlib.util.spec_from_file_location("benchmark_run", Path(__file__).with_name("run.py"))
    try:
        module = sys.modules.setdefault("benchmark_run", importlib.util.module_from_spec(spec))
        spec.loader.exec_module(module)  # registered first: its dataclasses look their module up
    except Exception:  # noqa: BLE001 - the report then just lacks the "missing" lines
        sys.modules.pop("benchmark_run", None)
        return None
    return module


def expected_runs() -> dict[str, set]:
    """{group: {(env, label, seed)}} of benchmark/run.py's presets (empty if it cannot be loaded)."""
    module = runner_module()
    if module is None:
        return {}
    out = {}
    for preset in module.PRESETS:
        for run in module.preset_runs(preset):
            if run.kind == "train":
                out.setdefault(run.group, set()).add((run.env_id, run.label, run.seed))
    return out


def claims(table: list[dict]) -> list[str]:
    """The paper's section 5 claims, each checked on the main table (final = last epochs, mean over seeds)."""
    by = {(r["env_id"], r["algo"]): r for r in table}
    lines = []
    for env in ("SafetyCarCircle1-v0", "SafetyHopperVelocity-v1", "SafetyAntVelocity-v1"):
        s = by.get((env, "strpo"))
        base = [r for (e, a), r in by.items() if e == env and a != "strpo"]
        if s is None or not base:
            lines.append(f"- {env}, sTRPO cost driven to about 0 while baselines stay at 15-30: not measured "
                         f"(sTRPO or baselines missing).")
            continue
        near_zero = s["final_cost_mean"] <= COST_NEAR_ZERO
        in_band = sum(15 <= r["final_cost_mean"] <= 30 for r in base)
        lower = sum(s["final_cost_mean"] < r["final_cost_mean"] for r in base)
        lines.append(f"- {env}, \"sTRPO's cost is driven to about zero while baselines stay at 15-30\": "
                     f"sTRPO's final cost is {s['final_cost_mean']:.1f} ± {s['final_cost_std']:.1f} "
                     f"({'agrees: at most' if near_zero else 'disagrees: above'} {COST_NEAR_ZERO:g}, 10% of the limit); "
                     f"{in_band} of {len(base)} baselines end between 15 and 30; sTRPO ends lower than "
                     f"{lower} of {len(base)}. Rewards, for context: sTRPO {s['final_reward_mean']:.0f}, the "
                     f"baselines {min(r['final_reward_mean'] for r in base):.0f} to "
                     f"{max(r['final_reward_mean'] for r in base):.0f}.")
    env = "SafetyCarGoal1-v0"
    s = by.get((env, "strpo"))
    base = [r for (e, a), r in by.items() if e == env and a != "strpo"]
    if s is None or not base:
        lines.append(f"- {env}, sTRPO about half the next best baseline's cost at comparable reward: not measured.")
    else:
        # "comparable reward": a baseline's final reward differs from sTRPO's by less than the larger of the two
        # stds over seeds (either way: a much higher reward is no more comparable than a much lower one); the
        # next best baseline is the one of those with the lowest final cost
        peers = [r for r in base if same_within_spread(s, r, "final_reward")]
        claim = f"- {env}, \"about half the next best baseline's cost at comparable reward\": sTRPO's final cost is " \
                f"{s['final_cost_mean']:.1f} ± {s['final_cost_std']:.1f} at reward {s['final_reward_mean']:.1f} ± " \
                f"{s['final_reward_std']:.1f}"
        if not peers:
            near = min(base, key=lambda r: abs(r["final_reward_mean"] - s["final_reward_mean"]))
            lines.append(f"{claim}; no baseline ends at a comparable reward (read as within the larger std over seeds), "
                         f"so the claim cannot be checked: the closest, {DISPLAY.get(near['algo'], near['algo'])}, "
                         f"ends at reward {near['final_reward_mean']:.1f} with cost {near['final_cost_mean']:.1f}.")
        else:
            best = min(peers, key=lambda r: r["final_cost_mean"])
            ratio = s["final_cost_mean"] / best["final_cost_mean"] if best["final_cost_mean"] > 0 else float("inf")
            lines.append(f"{claim}; of the {len(peers)} baseline(s) at comparable reward (read as within the larger "
                         f"std over seeds) the lowest cost is {DISPLAY.get(best['algo'], best['algo'])}'s, "
                         f"{best['final_cost_mean']:.1f} ± {best['final_cost_std']:.1f} at reward "
                         f"{best['final_reward_mean']:.1f}: ratio {ratio:.2f} of the seed means "
                         f"({'agrees' if ratio <= 0.5 else 'disagrees'}: the paper says about 0.5, read as at most 0.5).")
    s_all = [r for r in table if r["algo"] == "strpo"]
    c_all = {r["env_id"]: r for r in table if r["algo"] == "cpo"}
    common = [r for r in s_all if r["env_id"] in c_all]
    if common:
        s_v = np.mean([r["mean_cost_mean"] for r in common])
        c_v = np.mean([c_all[r["env_id"]]["mean_cost_mean"] for r in common])
        ratio = c_v / s_v if s_v > 0 else float("inf")
        lines.append(f"- \"2x fewer violations than the best baseline (CPO)\": mean episode cost over all of "
                     f"training, averaged over {len(common)} task(s): sTRPO {s_v:.1f}, CPO {c_v:.1f}, CPO / sTRPO = "
                     f"{ratio:.2f} ({'agrees' if ratio >= 2 else 'disagrees'}: the paper says at least 2).")
    else:
        lines.append("- \"2x fewer violations than the best baseline (CPO)\": not measured (sTRPO or CPO missing).")
    return lines


def same_within_spread(a: dict, b: dict, key: str) -> bool:
    """Two summary rows agree on `key` when their means differ by less than the larger of their two stds
    over seeds (with 3 seeds, a difference the seeds themselves produce)."""
    return abs(a[key + "_mean"] - b[key + "_mean"]) < max(a[key + "_std"], b[key + "_std"])


def identical_runs(records: list[Record]) -> list[str]:
    """Pairs of algorithms whose runs on a task have the same reward and cost in every epoch for every seed:
    e.g. two Lagrangian PPOs whose multiplier never left 0 reduce to the same update."""
    lines = []
    for env in sorted({r.env_id for r in records}):
        runs = group_by_label([r for r in records if r.env_id == env])
        labels = sorted(runs, key=sort_key)
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                ra, rb = runs[a], runs[b]
                if [r.seed for r in ra] != [r.seed for r in rb]:
                    continue
                if all(np.array_equal(x.reward, y.reward, equal_nan=True) and np.array_equal(x.cost, y.cost, equal_nan=True)
                       for x, y in zip(ra, rb)):
                    top = np.nanmax([r.multiplier_max for r in ra + rb]) if any(r.multiplier_max == r.multiplier_max
                                                                                for r in ra + rb) else float("nan")
                    why = (f"; the largest Lagrange multiplier any of these runs logged is {top:g}, so the constraint "
                           "never acted and both ran the same unconstrained update" if top == top else "")
                    lines.append(f"- {env}: {DISPLAY.get(a, a)} and {DISPLAY.get(b, b)} have identical reward and cost "
                                 f"in every epoch of every seed{why}.")
    return lines


def ablation_claims(records: list[Record], final_epochs: Optional[int]) -> list[str]:
    """Appendix C's claims that concern the ablation task of benchmark/run.py (the velocity task Hopper), each
    checked on the runs; claims about other tasks are listed as not measured."""
    lines = []
    for env in sorted({r.env_id for r in records if r.group.startswith("ablation")}):
        def rows(group):
            recs = [r for r in records if r.env_id == env and r.group == group]
            return {row["algo"]: row for row in summary_table(recs, final_epochs)}

        def cost_curve(group, label):
            recs = [r for r in records if r.env_id == env and r.group == group and r.label == label]
            return curve(recs, "cost")[1] if recs else None

        def compare(a, b):
            return (f"final reward {fmt(a['final_reward_mean'], a['final_reward_std'], 0)} vs "
                    f"{fmt(b['final_reward_mean'], b['final_reward_std'], 0)}, final cost "
                    f"{fmt(a['final_cost_mean'], a['final_cost_std'])} vs {fmt(b['final_cost_mean'], b['final_cost_std'])}")

        default = rows("main").get("strpo")
        delta = rows("ablation-delta")
        small, wide, decoupled = (delta.get(DELTA_LABELS[k]) for k in ("1e-4", "1e-2", "decoupled"))
        if small and wide:
            spike, ref = cost_curve("ablation-delta", DELTA_LABELS["1e-4"]), cost_curve("ablation-delta", DELTA_LABELS["1e-2"])
            peak, peak_ref = float(np.nanmax(spike)), float(np.nanmax(ref))
            first = float(np.mean([r.reward[0] for r in records if r.env_id == env and r.label == DELTA_LABELS["1e-4"]]))
            agrees = peak > peak_ref and small["final_reward_mean"] > first
            lines.append(f"- C.1, {env}, \"with δ = 1e-4 a pronounced transient cost spike appears despite eventual "
                         f"reward gains\": peak of the seed-mean cost curve {peak:.1f} with δ = 1e-4 against {peak_ref:.1f} "
                         f"with δ = 1e-2; final reward {small['final_reward_mean']:.0f} against {first:.0f} in the first "
                         f"epoch ({'agrees' if agrees else 'disagrees'}).")
        if decoupled and wide:
            agrees = same_within_spread(decoupled, wide, "final_reward") and same_within_spread(decoupled, wide, "final_cost")
            lines.append(f"- C.1, {env}, \"the decoupled δ1 = 1e-2, δ2 = 1e-4 matches the stable behaviour of δ = 1e-2 "
                         f"in the velocity tasks\": {compare(decoupled, wide)} ({'agrees' if agrees else 'disagrees'}: "
                         "read as means closer than the larger std over seeds, for both).")
        unsafe = rows("ablation-unsafe")
        if all(label in unsafe for label in UNSAFE_LABELS):
            a, b = (unsafe[label] for label in UNSAFE_LABELS)
            agrees = same_within_spread(a, b, "final_reward") and same_within_spread(a, b, "final_cost")
            lines.append(f"- C.2, {env}, \"the two π_unsafe (CVaR vs mean critic) give nearly indistinguishable "
                         f"results on Hopper\": sTRPO with each, {compare(a, b)} "
                         f"({'agrees' if agrees else 'disagrees'}: same reading).")
        lam = rows("ablation-lambda2")
        if all(label in lam for label in LAMBDA2_LABELS):
            a, b = (lam[label] for label in LAMBDA2_LABELS)
            agrees = same_within_spread(a, b, "final_reward") and same_within_spread(a, b, "final_cost")
            lines.append(f"- C.3, {env}, \"on velocity tasks λ2 (0.01 vs 1.0) makes minimal difference\": "
                         f"{compare(a, b)} ({'agrees' if agrees else 'disagrees'}: same reading).")
        comp = rows("ablation-components")
        if default and NO_JOINT_LABEL in comp:
            c = comp[NO_JOINT_LABEL]
            ratio = c["mean_cost_mean"] / default["mean_cost_mean"] if default["mean_cost_mean"] > 0 else float("inf")
            lines.append(f"- C.4, {env}, \"without the joint advantage the cost increased drastically\": mean cost "
                         f"over training {c['mean_cost_mean']:.1f} against the default's {default['mean_cost_mean']:.1f} "
                         f"(x{ratio:.1f}; {'agrees' if ratio >= DRASTIC else 'disagrees'}: read as at least x{DRASTIC:g}); "
                         f"final cost {c['final_cost_mean']:.1f} against {default['final_cost_mean']:.1f}.")
        if default and NO_EXCLUSION_LABEL in comp:
            c = comp[NO_EXCLUSION_LABEL]
            agrees = c["final_reward_mean"] >= REASONABLY_WELL * default["final_reward_mean"]
            lines.append(f"- C.4, {env}, \"without the unsafe objective the performance was reasonably good\": "
                         f"{compare(c, default)} for no exclusion vs the default "
                         f"({'agrees' if agrees else 'disagrees'}: read as at least {REASONABLY_WELL:.0%} of the "
                         "default's final reward).")
    if lines:
        lines.append("- Claims of appendix C about CarCircle1, CarGoal1 and AntVelocity: not measured (the ablations "
                     "run on one task, benchmark/run.py's ablation task).")
    return lines


def full_attack_line(by_algo: dict) -> Optional[str]:
    """At alpha = 1 no action comes from the policy, and robustness_attack.py seeds the attack stream from
    (seed, rate) alone, so every checkpoint must play the same episodes: a check of the sweep itself."""
    at_one = [v[1.0] for v in by_algo.values() if 1.0 in v]
    if len(at_one) < 2:
        return None
    same = all(v["reward"] == at_one[0]["reward"] and v["cost"] == at_one[0]["cost"] for v in at_one)
    return (f"At α = 1 every action is random and the attack stream depends only on the seed, so all "
            f"{len(at_one)} algorithms should play the same episodes there: "
            + ("they do (equal reward and cost)." if same else "they do not (unequal reward or cost): the sweep "
               "is suspect."))


def robustness_claims(robust: dict) -> list[str]:
    """Appendix D's two navigation claims, checked on the robustness sweeps."""
    lines = []
    circle = robust.get("SafetyCarCircle1-v0", {})
    if "strpo" in circle and len(circle) > 1:
        def avg(algo, key):
            return float(np.mean([v[key] for v in circle[algo].values()]))
        lower = [a for a in circle if a != "strpo" and avg("strpo", "cost") < avg(a, "cost")]
        below_reward = [a for a in circle if a != "strpo" and avg("strpo", "reward") < avg(a, "reward")]
        lines.append(f"- D, SafetyCarCircle1-v0, \"sTRPO has dramatically lower costs with a corresponding reward "
                     f"reduction\": averaged over the attack rates, sTRPO's cost {avg('strpo', 'cost'):.1f} is lower "
                     f"than that of {len(lower)} of {len(circle) - 1} baselines, its reward {avg('strpo', 'reward'):.1f} "
                     f"lower than that of {len(below_reward)} of {len(circle) - 1} "
                     f"({'agrees' if len(lower) == len(circle) - 1 else 'disagrees'} on the cost).")
    goal = robust.get("SafetyCarGoal1-v0", {}).get("strpo")
    if goal:
        rates = sorted(goal)
        costs = [goal[a]["cost"] for a in rates]
        k = int(np.argmax(costs))
        spike = 0 < k < len(rates) - 1
        lines.append(f"- D, SafetyCarGoal1-v0, \"a mid-attack cost spike\" of sTRPO: its cost peaks at α = {rates[k]:g} "
                     f"({costs[k]:.1f}; {costs[0]:.1f} at α = {rates[0]:g}, {costs[-1]:.1f} at α = {rates[-1]:g}) "
                     f"({'agrees' if spike else 'disagrees'}: a spike read as the maximum at an intermediate rate).")
    return lines


# ----------------------------------------------------------------------------------------------
# Output


def fmt(mean: float, std: Optional[float] = None, digits: int = 1) -> str:
    if mean != mean:
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def markdown_table(rows: list[dict], label_title: str = "algorithm") -> list[str]:
    out = [f"| {label_title} | final reward | final cost | mean cost over training | steps | seeds |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        steps = f"{r['steps_min']:,}" if r["steps_min"] == r["steps_max"] else f"{r['steps_min']:,}-{r['steps_max']:,}"
        if r["planned_steps"] and r["steps_max"] < int(r["planned_steps"]):
            steps += f" of {int(r['planned_steps']):,} (unfinished)"
        out.append(f"| {DISPLAY.get(r['algo'], r['algo'])} | {fmt(r['final_reward_mean'], r['final_reward_std'])} | "
                   f"{fmt(r['final_cost_mean'], r['final_cost_std'])} | {fmt(r['mean_cost_mean'], r['mean_cost_std'])} | "
                   f"{steps} | {r['seeds']} ({r['seed_list']}) |")
    return out


def sweep_walls(inputs: list[Path]) -> list[tuple[float, float]]:
    """(started_at, ended_at) from the run.json of every finished robustness run (NAME/attack/robustness.csv)."""
    walls = []
    for folder in inputs:
        for csv_path in sorted(folder.rglob("attack/robustness.csv")) if folder.is_dir() else []:
            record = csv_path.parent.parent / "run.json"
            try:
                run = json.loads(record.read_text()) if record.is_file() else {}
            except json.JSONDecodeError:
                run = {}
            if run.get("started_at") and run.get("ended_at"):
                walls.append((float(run["started_at"]), float(run["ended_at"])))
    return walls


def budget_lines(records: list[Record], sweeps: list[tuple[float, float]] = ()) -> list[str]:
    """The span of the matrix, each task's budget and training time, and the time per preset."""
    lines = []
    starts = [r.wall[0] for r in records if r.wall[0]] + [s for s, _ in sweeps]
    ends = [r.wall[1] for r in records if r.wall[1]] + [e for _, e in sweeps]
    if starts and ends:
        lines.append(f"- wall-clock span of the runs (benchmark/run.py's run.json): from "
                     f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(min(starts)))} to "
                     f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(max(ends)))} UTC, "
                     f"{(max(ends) - min(starts)) / 3600:.1f} h (the last attempt of each run; pauses included).")
    for env in sorted({r.env_id for r in records}):
        recs = [r for r in records if r.env_id == env]
        planned = sorted({r.planned_steps for r in recs if r.planned_steps})
        epochs = sorted({int(r.step[0]) for r in recs})
        hours = np.nansum([r.seconds for r in recs]) / 3600
        lines.append(f"- {env}: {len(recs)} runs, planned budget {', '.join(f'{p:,}' for p in planned) or 'unknown'} "
                     f"steps per run, first epoch {', '.join(f'{e:,}' for e in epochs)} steps; "
                     f"{hours:.1f} h of training wall time in total (sum of the runs' time_elapsed).")
    hours = {"main": np.nansum([r.seconds for r in records if r.group == "main"]) / 3600,
             "ablations": np.nansum([r.seconds for r in records if r.group != "main"]) / 3600}
    parts = [f"{name} {h:.1f} h" for name, h in hours.items() if h > 0]
    sweep_hours = sum(end - start for start, end in sweeps) / 3600
    if sweeps:
        parts.append(f"robustness {sweep_hours:.1f} h ({len(sweeps)} sweep{'s' if len(sweeps) > 1 else ''}, "
                     "run.json's start to end)")
    if parts:
        lines.append(f"- time by preset, one core per run: {', '.join(parts)}; "
                     f"{sum(hours.values()) + sweep_hours:.1f} core-hours in all.")
    return lines


def main(args: Args) -> Path:
    if args.final_epochs is not None and args.final_epochs < 1:
        raise SystemExit("error: --final-epochs must be at least 1")
    if args.bootstrap_reps < 100:
        raise SystemExit("error: --bootstrap-reps must be at least 100")
    inputs = [Path(p) if Path(p).is_absolute() else ROOT / p for p in args.inputs]
    out_md = Path(args.out_md) if Path(args.out_md).is_absolute() else ROOT / args.out_md
    out_dir = Path(args.out_dir) if Path(args.out_dir).is_absolute() else ROOT / args.out_dir
    if args.publish:
        publish_dir = Path(args.publish_dir) if Path(args.publish_dir).is_absolute() else ROOT / args.publish_dir
        copied = publish_runs(inputs[0], publish_dir)
        print(f"published {len(copied)} finished run(s) of {shown(inputs[0])} to {shown(publish_dir)}")
        inputs = [publish_dir]
    records, notes = load_records(inputs)
    robust_rows = read_robustness(inputs)
    main_recs = [r for r in records if r.group == "main"]
    figs = lambda p: p.relative_to(out_md.parent) if out_md.parent in p.parents else p  # noqa: E731
    final_text = (f"the mean over its last {args.final_epochs} epoch(s)" if args.final_epochs is not None
                  else "the mean over its last 10% of epochs (at least the last one)")
    md = ["<!-- do not edit; produced by benchmark/aggregate.py -->",
          "# Results: sTRPO and the eight baselines on the paper's tasks", "",
          "_Do not edit: this page is produced by `python benchmark/aggregate.py` from the progress.csv files of "
          "the runs (benchmark/run.py), and every number and figure on it comes from them._", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {len(records)} run(s) in "
          f"{', '.join(shown(p) for p in inputs)}.",
          "", "## Budget", ""]
    runner = runner_module()
    if runner is not None:
        md += [f"Planned by benchmark/run.py's presets: {runner.VELOCITY_STEPS:,} steps per run on the velocity "
               f"tasks, {runner.NAVIGATION_STEPS:,} on the navigation tasks, {runner.STEPS_PER_EPOCH:,}-step epochs, "
               f"seeds {', '.join(map(str, runner.SEEDS))} (the paper's text gives no total budget). Found:", ""]
    md += budget_lines(records, sweep_walls(inputs)) or ["- no run found."]
    md += ["", f"A run's final reward (cost) is {final_text} of `ep_ret` (`ep_cost`), the mean episode reward "
           "(cost) of that epoch; tables give the mean ± std over seeds (population std, ddof=0); curves the "
           "epoch-by-epoch mean ± one std over seeds up to the shortest seed. The mean cost over training is the "
           "mean of `ep_cost` over all epochs: the violations the paper talks about."]

    table = summary_table(main_recs, args.final_epochs)
    write_csv(out_dir / "results_main.csv", table)
    md += ["", "## Main comparison (paper section 5, Figures 2-3)", ""]
    limit = main_recs[0].cost_limit if main_recs else DEFAULT_COST_LIMIT
    for kind, order, name in (("navigation", NAVIGATION_ORDER, "curves_navigation.png"),
                              ("velocity", VELOCITY_ORDER, "curves_velocity.png")):
        envs = [e for e in order if any(r.env_id == e for r in main_recs)]
        envs += sorted({r.env_id for r in main_recs if r.env_id not in NAVIGATION_ORDER + VELOCITY_ORDER
                        and (("Velocity" in r.env_id) == (kind == "velocity"))})
        if not envs:
            continue
        panels = [(e, group_by_label([r for r in main_recs if r.env_id == e])) for e in envs]
        path = plot_rows(out_dir / name, panels, f"{kind} tasks: mean ± one std over seeds", limit)
        md += [f"![{kind} tasks]({figs(path)})", ""]
    for env in sorted({r["env_id"] for r in table}):
        md += [f"### {env}", ""] + markdown_table([r for r in table if r["env_id"] == env]) + [""]
    if table:
        md += [f"Table as CSV: [{figs(out_dir / 'results_main.csv')}]({figs(out_dir / 'results_main.csv')})."]
    else:
        md += ["No run of the main comparison found."]

    md += ["", "## Aggregate scores over tasks (rliable)", ""]
    agg = aggregate_scores(main_recs, args.final_epochs, args.bootstrap_reps, args.seed)
    if agg["rows"]:
        md += [f"Tasks: {', '.join(agg['tasks'])} (those on which every algorithm has a run). Normalised reward "
               "per task = (R − R_init) / (R_best − R_init), with R a run's final reward, R_init the mean first-epoch "
               "reward of all main runs on the task (the untrained policy) and R_best the best final reward of any "
               "main run on it: 0 = no better than the initial policy, 1 = the best run measured. Cost score = final "
               "cost / cost limit (1 = at the limit). IQM = mean of the middle 50% of all (run, task) scores; "
               f"95% CIs from rliable's stratified bootstrap ({args.bootstrap_reps} replications, seed {args.seed}).",
               "", "| task | R_init | R_best |", "|---|---|---|"]
        md += [f"| {t} | {agg['norm'][t][0]:.1f} | {agg['norm'][t][1]:.1f} |" for t in agg["tasks"]]
        md += ["", "| algorithm | runs per task | IQM normalised reward [95% CI] | IQM cost / limit [95% CI] |",
               "|---|---|---|---|"]
        md += [f"| {DISPLAY.get(r['algo'], r['algo'])} | {r['runs_per_task']} | {r['reward_iqm']:.2f} "
               f"[{r['reward_low']:.2f}, {r['reward_high']:.2f}] | {r['cost_iqm']:.2f} [{r['cost_low']:.2f}, "
               f"{r['cost_high']:.2f}] |" for r in agg["rows"]]
        if agg["poi"]:
            md += ["", "Probability of improvement of sTRPO over each baseline: the probability that a run of sTRPO "
                   "beats a run of the baseline on a task drawn at random (rliable; 0.5 = no difference), on "
                   "normalised reward (higher is better) and on cost (lower is better).", "",
                   "| baseline | P(sTRPO reward > baseline) [95% CI] | P(sTRPO cost < baseline) [95% CI] |",
                   "|---|---|---|"]
            md += [f"| {DISPLAY.get(r['baseline'], r['baseline'])} | {r['reward_poi']:.2f} [{r['reward_low']:.2f}, "
                   f"{r['reward_high']:.2f}] | {r['cost_poi']:.2f} [{r['cost_low']:.2f}, {r['cost_high']:.2f}] |"
                   for r in agg["poi"]]
        write_csv(out_dir / "rliable_scores.csv", agg["rows"])
        write_csv(out_dir / "rliable_poi.csv", agg["poi"])
    else:
        md += ["No task has runs of every algorithm yet: no aggregate scores."]

    same = identical_runs(main_recs)
    if same:
        md += ["", "Identical runs (checked epoch by epoch):", ""] + same
    md += ["", "## Paper claims against these runs", "",
           f"Final values as in the tables; \"about zero\" read as at most {COST_NEAR_ZERO:g} (10% of the limit).", ""]
    md += claims(table)

    ablation_groups = sorted({r.group for r in records if r.group != "main"})
    md += ["", "## Ablations (paper appendix C)", ""]
    if not ablation_groups:
        md += ["No ablation run found.", ""]
    else:
        md += ["Appendix C's claims against these runs (final values as in the tables below):", ""]
        md += ablation_claims(records, args.final_epochs) + [""]
        md += unsafe_sections().critic_section(records, read_progress, lambda n: n_final(n, args.final_epochs),
                                               args.bootstrap_reps, args.seed)
    for group in ablation_groups:
        recs = [r for r in records if r.group == group]
        for env in sorted({r.env_id for r in recs}):
            env_recs = [r for r in recs if r.env_id == env]
            by_label = group_by_label(env_recs)
            reference = [r for r in main_recs if r.env_id == env and r.label == "strpo"]
            if reference and group != "ablation-unsafe-reference":
                by_label["sTRPO (main, default flags)"] = reference
            colors = {label: f"C{k % 10}" for k, label in enumerate(sorted(by_label))}
            colors["sTRPO (main, default flags)"] = "black"
            path = plot_rows(out_dir / f"{group}__{env}.png", [(env, by_label)], f"{group}: mean ± one std over seeds",
                             env_recs[0].cost_limit, colors)
            rows = summary_table([r for rs in by_label.values() for r in rs if r.group == group], args.final_epochs)
            if reference and group != "ablation-unsafe-reference":
                ref_rows = summary_table(reference, args.final_epochs)
                for r in ref_rows:
                    r["algo"] = "sTRPO (main, default flags)"
                rows += ref_rows
            write_csv(out_dir / f"{group}__{env}.csv", rows)
            md += [f"### {group} on {env}", "", f"![{group}]({figs(path)})", ""]
            md += markdown_table(rows, "variant") + [""]

    md += unsafe_sections().strength_section(records, lambda n: n_final(n, args.final_epochs),
                                             lambda rec: run_scores(rec, args.final_epochs), out_dir, figs,
                                             args.bootstrap_reps, args.seed)
    md += ["## Robustness under random-action attacks (paper appendix D)", ""]
    robust = robustness_summary(robust_rows)
    if not robust:
        md += ["No robustness.csv found.", ""]
    for env in sorted(robust):
        by_algo = robust[env]
        episodes = sorted({e for a in by_algo.values() for v in a.values() for e in v["episodes"]})
        ckpts = sorted({v["checkpoints"] for a in by_algo.values() for v in a.values()})
        path = plot_robustness(out_dir / f"robustness__{env}.png", env, by_algo, limit)
        rates = sorted({rate for a in by_algo.values() for rate in a})
        md += [f"### {env}", "", f"{', '.join(map(str, episodes))} episodes per rate and checkpoint, deterministic "
               f"(mean) actions otherwise; mean ± std over {', '.join(map(str, ckpts))} checkpoint(s) (seeds) per "
               "algorithm of each checkpoint's mean episode reward and cost.", "", f"![robustness]({figs(path)})", "",
               "| algorithm | " + " | ".join(f"α={a:g} reward / cost" for a in rates) + " |",
               "|---|" + "---|" * len(rates)]
        for algo in sorted(by_algo, key=sort_key):
            cells = [fmt(by_algo[algo][a]["reward"], digits=0) + " / " + fmt(by_algo[algo][a]["cost"], digits=1)
                     if a in by_algo[algo] else "" for a in rates]
            md += [f"| {DISPLAY.get(algo, algo)} | " + " | ".join(cells) + " |"]
        md += [""]
        check = full_attack_line(by_algo)
        md += [check, ""] if check else []
        write_csv(out_dir / f"robustness__{env}.csv", [
            {"env_id": env, "algo": algo, "rate": a, **{k: v for k, v in vals.items() if k != "episodes"}}
            for algo, by_rate in by_algo.items() for a, vals in sorted(by_rate.items())])

    if robust:
        md += ["Appendix D's claims against these sweeps:", ""] + (robustness_claims(robust) or ["- none measurable yet."]) + [""]
    md += ["## What is missing", ""]
    expected = expected_runs()
    found = {(r.group, r.env_id, r.label, r.seed) for r in records}
    missing_any = False
    for group, cells in sorted(expected.items()):
        missing = sorted(c for c in cells if (group, *c) not in found)
        unfinished = sorted((r.env_id, r.label, r.seed) for r in records if r.group == group and r.planned_steps
                            and r.step[-1] < r.planned_steps)
        if missing:
            missing_any = True
            seeds = {}
            for e, lab, s in missing:
                seeds.setdefault((e, lab), []).append(str(s))
            listed = "; ".join(f"{e} {DISPLAY.get(lab, lab)} (seeds {' '.join(v)})" for (e, lab), v in seeds.items())
            md += [f"- {group}: {len(missing)} of {len(cells)} runs not found: {listed}."]
        if unfinished:
            missing_any = True
            md += [f"- {group}: {len(unfinished)} run(s) stopped before their planned budget: "
                   + "; ".join(f"{e} {DISPLAY.get(lab, lab)} seed {s}" for e, lab, s in unfinished[:12]) + "."]
    if not robust:
        missing_any = True
        md += ["- robustness: no sweep found (benchmark/run.py --preset robustness)."]
    if not missing_any:
        md += ["Nothing: every run of benchmark/run.py's presets is here."]
    md += [f"- note: {n}" for n in notes]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(md) + "\n")
    print(f"wrote {out_md} and {out_dir}/ from {len(records)} runs ({len(main_recs)} main)")
    return out_md


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def group_by_label(records: list[Record]) -> dict[str, list[Record]]:
    out = {}
    for r in sorted(records, key=lambda r: r.seed):
        out.setdefault(r.label, []).append(r)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
