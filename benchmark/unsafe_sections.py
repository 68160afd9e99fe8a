"""docs/results.md's two sections on pi_unsafe, from the runs of benchmark/run.py's ablation presets
(called by benchmark/aggregate.py, which passes its records):

- C.2, the critics: pi_unsafe trained by unsafe_cvar_trpo.py with the CVaR quantile critic and with
  the mean critic, on each task of run.py's UNSAFE_TASKS. Per critic: its final episode cost and
  reward, and at the end of training the critic against the cost-to-go the episodes collected
  (progress.csv's ctg_mean, value_mean, tail_frac, ctg_tail, cvar_tail; README, "π_unsafe's quantile
  critic"); the CVaR pi_unsafe's final cost as a fraction of the mean-critic one's.
- How unsafe must pi_unsafe be (ablation-unsafe-strength): sTRPO's mean cost over training and final
  reward against the episode cost of the pi_unsafe it was given, the policies that collected epochs
  1 (untrained) to the last of one CVaR pi_unsafe run; that cost is the run's own ep_cost at the epoch.

Means over seeds with aggregate.py's 95% percentile-bootstrap intervals (`ci`: values -> mean, low, high).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

CALIBRATION = ("ctg_mean", "value_mean", "tail_frac", "ctg_tail", "cvar_tail")
CRITICS = (("cvar critic", "CVaR (DTRPO_Unsafe)"), ("mean critic", "mean (TRPO_Unsafe)"))
AS_UNSAFE = 0.8  # the target: the CVaR-trained pi_unsafe at least 80% as unsafe as the mean-critic one
STRENGTH_LABEL = re.compile(r"π_unsafe of epoch (\d+)$")
NO_EXCLUSION = "no exclusion (λ2 = 0)"  # benchmark/run.py's ablation-components label: sTRPO without pi_unsafe
COST_LIMIT = 25.0


def ci_text(values, ci: Callable, digits: int = 1) -> str:
    mean, low, high = ci(values)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) else f"{mean:.{digits}f}"


def final_mean(rec, column: Optional[np.ndarray], n_final: Callable) -> float:
    """Mean of a progress column over the run's final epochs (aggregate.py's definition of final)."""
    tail = column[-n_final(len(rec.step)):]
    return float(np.nanmean(tail)) if np.isfinite(tail).any() else float("nan")


def critic_section(records: list, read_progress: Callable, n_final: Callable, ci: Callable) -> list[str]:
    refs = [r for r in records if r.group == "ablation-unsafe-reference"]
    if not refs:
        return []
    md = ["### π_unsafe: CVaR critic against mean critic (appendix C.2, the π_unsafe themselves)", "",
          "`unsafe_cvar_trpo.py --critic cvar` (quantile critic, SR(λ) targets, V_CVaR of the upper 25%) and "
          "`--critic mean`, same seeds and budget. Final = the last 10% of epochs, as everywhere on this page; "
          "each cell is the mean over seeds [95% bootstrap CI]. The critic columns compare, on the final epochs' "
          "states whose cost-to-go G the episodes revealed, the critic's mean value with the mean G, and its "
          "CVaR with G on the states where G exceeds the critic's VaR (a calibrated critic: equal, with "
          "`tail_frac` = 0.25 of the states there).", "",
          "| task | critic | seeds | final episode cost | final episode length | mean value / mean G | "
          "tail_frac | V_CVaR / G on the tail |", "|---|---|---|---|---|---|---|---|"]
    finals = {}
    for env in sorted({r.env_id for r in refs}):
        for label, name in CRITICS:
            recs = sorted((r for r in refs if r.env_id == env and r.label == label), key=lambda r: r.seed)
            if not recs:
                continue
            data = [read_progress(r.path) for r in recs]
            fin = {c: [final_mean(r, d[c], n_final) if c in d else float("nan") for r, d in zip(recs, data)]
                   for c in CALIBRATION + ("ep_cost", "ep_len")}
            finals[env, label] = fin["ep_cost"]
            tail = (f"{ci_text(fin['cvar_tail'], ci)} / {ci_text(fin['ctg_tail'], ci)}"
                    if np.all(np.isfinite(fin["cvar_tail"])) else "—")
            frac = ci_text(fin["tail_frac"], ci, 2) if np.all(np.isfinite(fin["tail_frac"])) else "—"
            md.append(f"| {env} | {name} | {' '.join(str(r.seed) for r in recs)} | {ci_text(fin['ep_cost'], ci)} | "
                      f"{ci_text(fin['ep_len'], ci, 0)} | {ci_text(fin['value_mean'], ci)} / "
                      f"{ci_text(fin['ctg_mean'], ci)} | {frac} | {tail} |")
    md.append("")
    for env in sorted({env for env, _ in finals}):
        if (env, "cvar critic") in finals and (env, "mean critic") in finals:
            cvar, mean = np.mean(finals[env, "cvar critic"]), np.mean(finals[env, "mean critic"])
            ratio = cvar / mean if mean > 0 else float("nan")
            md.append(f"- {env}: the CVaR π_unsafe's final episode cost is {ratio:.0%} of the mean-critic one's "
                      f"({cvar:.1f} against {mean:.1f}; target at least {AS_UNSAFE:.0%}: "
                      f"{'met' if ratio >= AS_UNSAFE else 'not met'}).")
    return md + [""]


def strength_section(records: list, n_final: Callable, run_scores: Callable, out_dir: Path, figs: Callable,
                     ci: Callable) -> list[str]:
    runs = [r for r in records if r.group == "ablation-unsafe-strength"]
    if not runs:
        return []
    md = ["## How unsafe must π_unsafe be? (ablation-unsafe-strength)", "",
          "sTRPO given, as π_unsafe, the policies that collected epochs 1 (the untrained policy) to the last of one "
          "CVaR π_unsafe run (the C.2 run of seed 0 on the same task); x = that policy's own mean episode cost in "
          "its epoch (the π_unsafe run's `ep_cost`), y = sTRPO's mean episode cost over training and its final "
          "reward, mean over seeds with 95% bootstrap intervals.", ""]
    points, references = {}, {}
    for env in sorted({r.env_id for r in runs}):
        source = [r for r in records if r.group == "ablation-unsafe-reference" and r.env_id == env
                  and r.label == "cvar critic" and r.seed == 0]
        rows = []
        for label in sorted({r.label for r in runs if r.env_id == env},
                            key=lambda s: int(STRENGTH_LABEL.search(s).group(1)) if STRENGTH_LABEL.search(s) else 0):
            match = STRENGTH_LABEL.search(label)
            recs = sorted((r for r in runs if r.env_id == env and r.label == label), key=lambda r: r.seed)
            epoch = int(match.group(1)) if match else None
            own = float(source[0].cost[epoch - 1]) if source and epoch and epoch <= len(source[0].cost) else float("nan")
            scores = [run_scores(r) for r in recs]
            mc = ci([s["mean_cost"] for s in scores])
            fr = ci([s["final_reward"] for s in scores])
            fc = ci([s["final_cost"] for s in scores])
            rows.append((label, own, len(recs), mc, fr, fc))
        points[env] = rows
        reference = [r for r in records if r.env_id == env and r.group == "ablation-components" and r.label == NO_EXCLUSION]
        if reference:  # sTRPO that ignores pi_unsafe: the floor any pi_unsafe is measured against
            scores = [run_scores(r) for r in reference]
            references[env] = tuple(ci([s[k] for s in scores]) for k in ("mean_cost", "final_reward", "final_cost"))
        md += [f"### {env}", "", "| π_unsafe given to sTRPO | its own episode cost | sTRPO seeds | sTRPO mean cost over "
               "training [95% CI] | sTRPO final reward [95% CI] | sTRPO final cost [95% CI] |", "|---|---|---|---|---|---|"]
        for label, own, n, *cis in rows + ([(f"none: {NO_EXCLUSION} (ablation-components)", float("nan"), len(reference),
                                               *references[env])] if reference else []):
            cells = [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else f"{m:.1f}" for m, lo, hi in cis]
            md.append(f"| {label} | {'—' if np.isnan(own) else f'{own:.1f}'} | {n} | " + " | ".join(cells) + " |")
        md.append("")
        if reference and rows:
            (_, lo, hi) = references[env][0]
            for label, own, _, (m, low, high), *_ in (rows[0], rows[-1]):
                verdict = ("lower than" if high < lo else "higher than" if low > hi else
                           "not distinguishable (the intervals overlap) from")
                md.append(f"- {env}, {label} (own cost {own:.1f}): sTRPO's mean cost over training {m:.1f} "
                          f"[{low:.1f}, {high:.1f}] is {verdict} sTRPO without exclusion's [{lo:.1f}, {hi:.1f}].")
            md.append("")
    path = plot_strength(out_dir / "ablation-unsafe-strength.png", points, references)
    return md + [f"![unsafe strength]({figs(path)})", ""]


def plot_strength(path: Path, points: dict, references: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(points), figsize=(5.2 * len(points), 7.4), squeeze=False)
    for j, (env, rows) in enumerate(sorted(points.items())):
        x = np.array([r[1] for r in rows])
        for i, (k, name) in enumerate(((3, "sTRPO mean cost over training"), (4, "sTRPO final reward"))):
            mean = np.array([r[k][0] for r in rows])
            err = np.array([[r[k][0] - r[k][1], r[k][2] - r[k][0]] for r in rows]).T
            ax = axes[i, j]
            ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o-", capsize=4, color="#d62728", label="sTRPO")
            if env in references:
                m, lo, hi = references[env][i]
                ax.axhline(m, color="gray", ls=":", label=f"{NO_EXCLUSION} (95% CI shaded)")
                ax.axhspan(lo, hi, color="gray", alpha=0.15, lw=0)
            if i == 0:
                ax.axhline(COST_LIMIT, color="black", ls="--", lw=1, label=f"cost limit {COST_LIMIT:g}")
            ax.set_title(f"{env}: {name}", fontsize=10)
            ax.set_xlabel("π_unsafe's own mean episode cost")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("sTRPO against π_unsafe of increasing unsafety\n(mean over seeds, 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
