"""benchmark/strpo_modes.py: on synthetic progress.csv files with known values, the table states
exactly their final means and stds, the fallback counts and the updates that lowered the KL to
pi_unsafe; unfinished runs are left out; each table names the commits of its runs."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import ROOT


def write_run(folder, seed, rets, costs, fallbacks, kl_before, kl_after, epochs_planned=None, **provenance):
    run = folder / f"SafetyHopperVelocity-v1__strpo__{seed}__1"
    run.mkdir(parents=True)
    n = len(rets)
    config = {"env_id": "SafetyHopperVelocity-v1", "seed": seed, "total_timesteps": 1000 * (epochs_planned or n),
              "steps_per_epoch": 1000, "num_envs": 4, "delta1": 0.01, "delta2": 1e-4, "cost_limit": 25.0, **provenance}
    (run / "config.json").write_text(json.dumps(config))
    with open(run / "progress.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["global_step", "ep_ret", "ep_cost", "kl_unsafe_before", "kl_unsafe_after",
                                          "accepted", "fallback", "qcqp_case"])
        w.writeheader()
        for i in range(n):
            w.writerow({"global_step": 1000 * (i + 1), "ep_ret": rets[i], "ep_cost": costs[i], "kl_unsafe_before": kl_before[i],
                        "kl_unsafe_after": kl_after[i], "accepted": int(not fallbacks[i]), "fallback": fallbacks[i],
                        "qcqp_case": "active"})


def test_table_states_the_known_final_means_fallbacks_and_moves_toward_pi_unsafe(tmp_path):
    root = tmp_path / "runs"
    for seed, offset in ((0, 0.0), (1, 10.0)):
        write_run(root / "default" / "SafetyHopperVelocity-v1" / f"seed{seed}", seed,
                  rets=[1, 2, 100 + offset, 110 + offset, 120 + offset], costs=[50, 40, 3, 4, 5],
                  fallbacks=["", "exclusion", "", "", ""], kl_before=[1, 2, 3, 4, 5], kl_after=[2, 3, 4, 5, 6])
    write_run(root / "literal" / "SafetyHopperVelocity-v1" / "seed0", 0, rets=[1, 2, 3, 4, 5], costs=[9] * 5,
              fallbacks=["reverse"] * 5, kl_before=[2, 2, 2, 2, 2], kl_after=[1, 1, 1, 3, 2])
    write_run(root / "noexcl" / "SafetyHopperVelocity-v1" / "seed0", 0, rets=[1], costs=[1], fallbacks=[""],
              kl_before=[1], kl_after=[1], epochs_planned=5)  # unfinished: 1 of 5 epochs
    out = tmp_path / "modes.md"
    subprocess.run([sys.executable, str(ROOT / "benchmark" / "strpo_modes.py"), str(root), "--out", str(out),
                    "--copy-to", str(tmp_path / "records")], check=True, capture_output=True)
    text = out.read_text()
    finals = [np.mean([100, 110, 120]), np.mean([110, 120, 130])]  # last 3 epochs per seed: 110 and 120
    assert f"| {np.mean(finals):.1f} ± {np.std(finals, ddof=1):.1f} | 4.0 ± 0.0 |" in text  # std over seeds, ddof 1
    assert "| 0, 1 |" in text and "| 8/10 |" in text and "exclusion 2" in text
    assert "| 0/10 |" in text  # no default update lowered the KL to pi_unsafe
    assert "reverse 5" in text and "| 3/5 |" in text  # three literal updates lowered it
    assert "(not run)" in text  # the unfinished --no-exclusion run is left out
    assert (tmp_path / "records" / "default" / "SafetyHopperVelocity-v1" / "seed1" / "progress.csv").is_file()
    assert out.with_suffix(".png").is_file()


def test_each_table_names_the_commits_of_its_runs_from_config_json_else_the_provenance_record(tmp_path):
    """git_commit of config.json (7 characters, +dirty), else the commit ROOT/provenance.json names for the
    setting (its notes become the Provenance section, copied along with --copy-to), else unrecorded."""
    root = tmp_path / "runs"
    run = dict(rets=[1, 2, 3], costs=[1, 1, 1], fallbacks=[""] * 3, kl_before=[1] * 3, kl_after=[1] * 3)
    hopper = root / "{}" / "SafetyHopperVelocity-v1" / "seed{}"
    write_run(Path(str(hopper).format("default", 0)), 0, **run, git_commit="a" * 40, git_dirty=False)
    write_run(Path(str(hopper).format("default", 1)), 1, **run, git_commit="b" * 40, git_dirty=True)
    write_run(Path(str(hopper).format("literal", 0)), 0, **run)
    write_run(Path(str(hopper).format("noexcl", 0)), 0, **run)
    (root / "provenance.json").write_text(json.dumps({"commits": {"noexcl": "1234567"}, "notes": ["Found by bisecting."]}))
    out = tmp_path / "modes.md"
    subprocess.run([sys.executable, str(ROOT / "benchmark" / "strpo_modes.py"), str(root), "--out", str(out),
                    "--copy-to", str(tmp_path / "records")], check=True, capture_output=True)
    text = out.read_text()
    assert ("Code of the runs behind this table: default aaaaaaa (1 run), bbbbbbb+dirty (1 run); literal unrecorded (1 run); "
            "noexcl 1234567 per git history (1 run).") in text
    assert "## Provenance\n\nFound by bisecting.\n" in text
    assert (tmp_path / "records" / "provenance.json").read_text() == (root / "provenance.json").read_text()
