"""Check Theorem 1 of the sTRPO paper on every update of a real run, from its progress.csv.

Theorem 1 says an accepted sTRPO step satisfies the trust region (mean KL(pi_k || pi_new) <= delta1)
and the exclusion constraint (the step moves away from pi_unsafe by the margin b). strpo.py logs
both per epoch, measured on the batch states: `kl`, and `measured_excl_margin` = the change of mean
KL(pi_unsafe || pi), which its line search requires to be at least half of `required_excl_margin`
(b); `excl_margin` is the linear phi^T (theta - theta_k) of the paper's statement. This prints, for
one or more runs: epochs, how often each case of the step's QCQP occurred and which fallback (if
any) replaced the main step, the ranges of the measured KL and margins, KL to pi_unsafe at the start
and end, the number of updates that moved toward pi_unsafe, and the number of accepted steps that
violate either measured condition (must be 0).

    python benchmark/theorem1_report.py runs/SafetyCarCircle1-v0__strpo__1__*/progress.csv
"""
from __future__ import annotations

import collections
import csv
import json
import sys
from pathlib import Path

MARGIN_FRACTION = 0.5  # strpo.py's line search: measured margin >= MARGIN_FRACTION * b (b > 0)


def report(progress: Path) -> dict:
    rows = list(csv.DictReader(open(progress)))
    if not rows:
        raise SystemExit(f"error: {progress} has no rows")
    if "measured_excl_margin" not in rows[0]:
        raise SystemExit(f"error: {progress} was written by an older strpo.py (no measured_excl_margin column); re-run it")
    config = json.loads((progress.parent / "config.json").read_text())
    delta1 = float(config["delta1"])
    accepted = [r for r in rows if r["accepted"] == "1"]

    def required(r: dict) -> float:
        b = float(r["required_excl_margin"])
        return MARGIN_FRACTION * b if b > 0 else b

    measured = [float(r["measured_excl_margin"]) for r in accepted]
    linear = [float(r["excl_margin"]) for r in accepted]
    return {
        "run": progress.parent.name, "env_id": config["env_id"], "steps": int(rows[-1]["global_step"]), "epochs": len(rows),
        "delta1": delta1, "delta2": float(config["delta2"]), "target": config.get("exclusion_target", "step"),
        "lambda2_mode": config.get("lambda2_mode", "fixed"), "accepted": len(accepted),
        "cases": dict(collections.Counter(r["qcqp_case"] for r in rows)),
        "fallbacks": dict(collections.Counter(r["fallback"] for r in rows if r["fallback"])),
        "accepted_kl_max": max((float(r["kl"]) for r in accepted), default=float("nan")),
        "measured_min": min(measured, default=float("nan")), "measured_max": max(measured, default=float("nan")),
        "linear_min": min(linear, default=float("nan")), "linear_max": max(linear, default=float("nan")),
        "kl_unsafe_first": float(rows[0]["kl_unsafe_before"]), "kl_unsafe_last": float(rows[-1]["kl_unsafe_after"]),
        "toward_unsafe": sum(float(r["kl_unsafe_after"]) < float(r["kl_unsafe_before"]) for r in rows),
        "violations": sum(float(r["kl"]) > delta1 or float(r["measured_excl_margin"]) < required(r) for r in accepted),
        "ep_cost_first": rows[0]["ep_cost"], "ep_cost_last": rows[-1]["ep_cost"],
    }


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: python benchmark/theorem1_report.py runs/<run>/progress.csv [...]")
    for p in paths:
        r = report(Path(p))
        print(f"{r['run']}: {r['steps']:,} steps, {r['epochs']} epochs (delta1 {r['delta1']}, delta2 {r['delta2']}, "
              f"target {r['target']}, lambda2 {r['lambda2_mode']})")
        print(f"  main step accepted {r['accepted']}/{r['epochs']}; QCQP cases {r['cases']}; fallbacks {r['fallbacks'] or 'none'}")
        print(f"  accepted steps: measured KL(pi_k||pi_new) <= {r['accepted_kl_max']:.5f}; measured exclusion margin "
              f"{r['measured_min']:.3g} .. {r['measured_max']:.3g} (linear phi^T x {r['linear_min']:.3g} .. {r['linear_max']:.3g})")
        print(f"  mean KL(pi_unsafe||pi): {r['kl_unsafe_first']:.3f} at the start -> {r['kl_unsafe_last']:.3f} at the end; "
              f"updates that lowered it: {r['toward_unsafe']}")
        print(f"  episode cost: {r['ep_cost_first']} (epoch 1) -> {r['ep_cost_last']} (last epoch)")
        print(f"  accepted steps violating Theorem 1 (measured): {r['violations']}")


if __name__ == "__main__":
    main(sys.argv[1:])
