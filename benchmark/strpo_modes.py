"""Compare sTRPO's step readings on real runs: the default (KKT lambda2, measured line search,
exclusion fallback), the paper read literally (fixed lambda2 = 1, reverse fallback) and the
--no-exclusion ablation, from their progress.csv files. Writes docs/strpo_modes.md (a table per
task) and docs/strpo_modes.png (reward, cost and KL(pi_unsafe || pi) over training, mean +- one std
across seeds). Never edit the outputs by hand; re-run this.

Layout read: ROOT/<setting>/<env_id>/seed<k>/**/progress.csv (+ config.json beside it), as written by

    python strpo.py --env-id ENV --seed K --total-timesteps N --output-dir ROOT/<setting>/ENV/seed<K> [flags]

with settings default (no flags), literal (--lambda2-mode fixed --lambda2 1 --fallback reverse)
and noexcl (--no-exclusion). `--copy-to DIR` also copies each run's progress.csv and config.json
there in the same layout (the committed records in docs/runs/strpo-modes/).

Under each table, the commits of the code behind its runs: config.json's git_commit (written by every
training script since issue 26); for older records, the commit that ROOT/provenance.json names for their
setting (found from git history, with its notes printed as the page's Provenance section); else unrecorded.

    python benchmark/strpo_modes.py runs/issue12 --copy-to docs/runs/strpo-modes --out docs/strpo_modes.md
    python benchmark/strpo_modes.py docs/runs/strpo-modes --out docs/strpo_modes.md   # regenerate from the records

Without `--out` the page and figure go to runs/strpo_modes/, and docs/ is left as it is.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {  # name -> (label, strpo.py flags)
    "default": ("default (KKT lambda2, exclusion fallback)", ""),
    "literal": ("paper literal (fixed lambda2 = 1, reverse fallback)", "--lambda2-mode fixed --lambda2 1 --fallback reverse"),
    "noexcl": ("--no-exclusion (TRPO on the joint advantage)", "--no-exclusion"),
    # the default before the raised-margin search (strpo.py of commit 39ac46f), kept as a measurement
    "nosearch": ("default without the raised-margin search (strpo.py of commit 39ac46f)", ""),
}
FINAL_EPOCHS = 3  # final reward / cost = mean of the last 3 epochs of a run, then mean +- std (ddof 1) over seeds
PROVENANCE = "provenance.json"  # in ROOT: {"commits": {setting: commit}, "notes": [...]} for records without git_commit


def load(root: Path) -> dict[str, dict[str, list[dict]]]:
    """{env_id: {setting: [run, ...]}} for every finished run (one with a checkpoint beside its progress.csv,
    or a committed record) under root."""
    runs: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for setting in SETTINGS:
        for progress in sorted((root / setting).glob("*/seed*/**/progress.csv")):
            config = json.loads((progress.parent / "config.json").read_text())
            rows = list(csv.DictReader(open(progress)))
            expected = config["total_timesteps"] // config["steps_per_epoch"]
            if len(rows) < expected:  # unfinished
                continue
            col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
            runs[config["env_id"]][setting].append({
                "progress": progress, "seed": config["seed"], "config": config, "step": col("global_step"),
                "ret": col("ep_ret"), "cost": col("ep_cost"), "kl_u_before": col("kl_unsafe_before"),
                "kl_u_after": col("kl_unsafe_after"), "accepted": col("accepted"),
                "fallbacks": collections.Counter(r["fallback"] for r in rows if r["fallback"]),
                "cases": collections.Counter(r["qcqp_case"] for r in rows),
            })
    return runs


def pm(values, digits: int = 1) -> str:
    values = np.asarray(values, float)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else f"{values.mean():.{digits}f}"


def table(env_runs: dict[str, list[dict]]) -> list[str]:
    lines = ["| setting | seeds | final reward | final cost | mean cost, all epochs | main step accepted | fallbacks fired "
             "| updates that lowered KL(π_unsafe‖π) | KL(π_unsafe‖π) first → last epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for setting, (label, _) in SETTINGS.items():
        runs = env_runs.get(setting, [])
        if not runs:
            if setting != "nosearch":
                lines.append(f"| {label} | 0 | (not run) | | | | | | |")
            continue
        fallbacks = sum((r["fallbacks"] for r in runs), collections.Counter())
        epochs = sum(len(r["ret"]) for r in runs)
        lines.append(
            f"| {label} | {', '.join(str(r['seed']) for r in sorted(runs, key=lambda r: r['seed']))} "
            f"| {pm([np.nanmean(r['ret'][-FINAL_EPOCHS:]) for r in runs])} "
            f"| {pm([np.nanmean(r['cost'][-FINAL_EPOCHS:]) for r in runs])} "
            f"| {pm([np.nanmean(r['cost']) for r in runs])} "
            f"| {int(sum(r['accepted'].sum() for r in runs))}/{epochs} "
            f"| {', '.join(f'{k} {v}' for k, v in sorted(fallbacks.items())) or 'none'} "
            f"| {int(sum((r['kl_u_after'] < r['kl_u_before']).sum() for r in runs))}/{epochs} "
            f"| {pm([r['kl_u_before'][0] for r in runs], 2)} → {pm([r['kl_u_after'][-1] for r in runs], 2)} |")
    return lines


def commits_text(env_runs: dict[str, list[dict]], history: dict[str, str]) -> str:
    """Per setting, the commits of the code behind its runs with how many runs each: config.json's git_commit
    (7 characters, +dirty when tracked files had changes), else the commit `history` names for the setting
    (from git history), else unrecorded."""
    parts = []
    for setting in SETTINGS:
        counts = collections.Counter(
            r["config"]["git_commit"][:7] + ("+dirty" if r["config"].get("git_dirty") else "") if r["config"].get("git_commit")
            else f"{history[setting]} per git history" if setting in history else "unrecorded" for r in env_runs.get(setting, []))
        if counts:
            parts.append(f"{setting} " + ", ".join(f"{k} ({n} run{'s' if n > 1 else ''})" for k, n in sorted(counts.items())))
    return "; ".join(parts)


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(runs)
    fig, axes = plt.subplots(len(envs), 3, figsize=(15, 3.6 * len(envs)), squeeze=False)
    for row, env in zip(axes, envs):
        for setting, (label, _) in SETTINGS.items():
            group = runs[env].get(setting, [])
            if not group:
                continue
            n = min(len(r["step"]) for r in group)
            x = group[0]["step"][:n]
            for ax, key in zip(row, ("ret", "cost", "kl_u_after")):
                y = np.array([r[key][:n] for r in group])
                mean, std = np.nanmean(y, 0), np.nanstd(y, 0, ddof=1 if len(group) > 1 else 0)
                ax.plot(x, mean, label=label)
                ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        for ax, title in zip(row, ("episode reward", "episode cost", "mean KL(π_unsafe ‖ π) after the update")):
            ax.set_title(f"{env}: {title}", fontsize=9)
            ax.set_xlabel("environment steps")
        limit = next(iter(runs[env].values()))[0]["config"]["cost_limit"]
        row[1].axhline(limit, color="k", ls="--", lw=0.8, label=f"cost limit {limit:g}")
        row[2].set_yscale("log")
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with <setting>/<env_id>/seed<k>/ run folders")
    parser.add_argument("--copy-to", type=Path, default=None, help="also copy progress.csv + config.json of each run here")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "strpo_modes" / "strpo_modes.md",
                        help="Markdown file to write (the PNG goes beside it); docs/strpo_modes.md rewrites the committed page")
    args = parser.parse_args()
    runs = load(args.root)
    if not runs:
        raise SystemExit(f"error: no finished runs under {args.root}/<setting>/<env_id>/seed<k>/")
    provenance = json.loads((args.root / PROVENANCE).read_text()) if (args.root / PROVENANCE).is_file() else {}
    if args.copy_to:
        for env, by_setting in runs.items():
            for setting, group in by_setting.items():
                for r in group:
                    dest = args.copy_to / setting / env / f"seed{r['seed']}"
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copy(r["progress"], dest / "progress.csv")
                    shutil.copy(r["progress"].parent / "config.json", dest / "config.json")
        if provenance:
            shutil.copy(args.root / PROVENANCE, args.copy_to / PROVENANCE)
    png = args.out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, png)
    lines = ["# sTRPO's step: the default vs the paper read literally vs no exclusion",
             "", "<!-- generated by benchmark/strpo_modes.py from the progress.csv files in docs/runs/strpo-modes/; do not edit -->", ""]
    for env in sorted(runs):
        group = [r for g in runs[env].values() for r in g]
        cfg = group[0]["config"]
        lines += [f"## {env}", "",
                  f"Budget: {cfg['total_timesteps']:,} steps per run, {cfg['steps_per_epoch']:,}-step epochs, "
                  f"{cfg['num_envs']} envs, seeds as listed; delta1 {cfg['delta1']}, delta2 {cfg['delta2']}, "
                  f"cost limit {cfg['cost_limit']:g}. Final = mean of the last {FINAL_EPOCHS} epochs per seed, then "
                  "mean ± std over seeds (ddof 1).", ""]
        lines += table(runs[env]) + ["", f"Code of the runs behind this table: "
                                         f"{commits_text(runs[env], provenance.get('commits', {}))}.", ""]
    lines += ["Commands (seed K = 0, 1, 2; N = the budget stated under each task):", "", "```bash"]
    for setting, (_, flags) in SETTINGS.items():
        if setting == "nosearch":
            lines.append(f"git checkout 39ac46f -- strpo.py && python strpo.py --env-id ENV --seed K --total-timesteps N "
                         f"--output-dir runs/issue12/{setting}/ENV/seedK && git checkout HEAD -- strpo.py")
            continue
        lines.append(f"python strpo.py --env-id ENV --seed K --total-timesteps N --output-dir runs/issue12/{setting}/ENV/seedK {flags}".rstrip())
    lines += ["python benchmark/strpo_modes.py runs/issue12 --copy-to docs/runs/strpo-modes --out docs/strpo_modes.md", "```", "",
              f"![reward, cost and KL to pi_unsafe per setting]({png.name})", ""]
    if provenance.get("notes"):
        lines += ["## Provenance", "", *[line for note in provenance["notes"] for line in (note, "")]]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
