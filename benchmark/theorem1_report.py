"""Check Theorem 1 of the sTRPO paper on every update of a real run, from its progress.csv.

Theorem 1 says an accepted sTRPO step satisfies the trust region (measured mean KL(pi_k || pi_new)
<= delta1) and the exclusion constraint (phi^T (theta - theta_k) >= delta2). strpo.py logs both per
epoch, with which fallback (if any) replaced the main step. This prints, for one or more runs:
epochs, how often the main step was accepted / infeasible / replaced by each fallback, the range
of the measured KL and of the exclusion margin, the KL to pi_unsafe at the start and end, and the
number of accepted epochs that violate either condition (must be 0).

    python benchmark/theorem1_report.py runs/SafetyCarCircle1-v0__strpo__1__*/progress.csv
"""
from __future__ import annotations

import collections
import csv
import json
import sys
from pathlib import Path


def report(progress: Path) -> dict:
    rows = list(csv.DictReader(open(progress)))
    if not rows:
        raise SystemExit(f"error: {progress} has no rows")
    config = json.loads((progress.parent / "config.json").read_text())
    delta1, delta2 = float(config["delta1"]), float(config["delta2"])
    accepted = [r for r in rows if r["accepted"] == "1"]
    kls = [float(r["kl"]) for r in rows]
    margins = [float(r["excl_margin"]) for r in accepted]
    fallbacks = collections.Counter(r["fallback"] for r in rows if r["fallback"])
    return {
        "run": progress.parent.name, "env_id": config["env_id"], "steps": int(rows[-1]["global_step"]), "epochs": len(rows),
        "delta1": delta1, "delta2": delta2, "accepted": len(accepted),
        "infeasible": sum(r["feasible"] == "0" for r in rows), "fallbacks": dict(fallbacks),
        "kl_min": min(kls), "kl_max": max(kls),
        "accepted_kl_max": max((float(r["kl"]) for r in accepted), default=float("nan")),
        "margin_min": min(margins, default=float("nan")), "margin_max": max(margins, default=float("nan")),
        "kl_unsafe_first": float(rows[0]["kl_unsafe_before"]), "kl_unsafe_last": float(rows[-1]["kl_unsafe_after"]),
        "violations": sum(float(r["kl"]) > delta1 or float(r["excl_margin"]) < delta2 for r in accepted),
        "ep_cost_first": rows[0]["ep_cost"], "ep_cost_last": rows[-1]["ep_cost"],
    }


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: python benchmark/theorem1_report.py runs/<run>/progress.csv [...]")
    for p in paths:
        r = report(Path(p))
        print(f"{r['run']}: {r['steps']:,} steps, {r['epochs']} epochs (delta1 {r['delta1']}, delta2 {r['delta2']})")
        print(f"  main step accepted {r['accepted']}/{r['epochs']}, infeasible {r['infeasible']}, fallbacks {r['fallbacks'] or 'none'}")
        print(f"  measured KL(pi_k||pi_new): {r['kl_min']:.5f} .. {r['kl_max']:.5f} (accepted max {r['accepted_kl_max']:.5f})")
        print(f"  exclusion margin phi^T s on accepted steps: {r['margin_min']:.3g} .. {r['margin_max']:.3g}")
        print(f"  mean KL(pi_unsafe||pi): {r['kl_unsafe_first']:.3f} at the start -> {r['kl_unsafe_last']:.3f} at the end")
        print(f"  episode cost: {r['ep_cost_first']} (epoch 1) -> {r['ep_cost_last']} (last epoch)")
        print(f"  accepted steps violating Theorem 1: {r['violations']}")


if __name__ == "__main__":
    main(sys.argv[1:])
