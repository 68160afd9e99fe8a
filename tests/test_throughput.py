"""Smoke tests of benchmark/throughput.py: it runs end to end on a tiny budget and writes its table.
Timings are never asserted (the machine is shared); only that every number is there and finite."""
import csv
import math
import subprocess
import sys

import pytest
from conftest import ROOT, load_script

THROUGHPUT = ROOT / "benchmark" / "throughput.py"


@pytest.fixture(scope="module")
def throughput():
    return load_script(THROUGHPUT)


def test_a_tiny_run_writes_csv_and_markdown_with_a_skipped_pair_and_measured_pairs(throughput, tmp_path, capsys):
    out = tmp_path / "tput"
    args = throughput.Args(scripts=["strpo.py", "unsafe_cvar_trpo.py"],
                           env_ids=["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"], steps=800, out=str(out))
    # CarCircle1 would be slow to train even for 800 steps; measure it only where it is skipped (strpo, no pi_unsafe)
    if (ROOT / "unsafe_policies" / "SafetyCarCircle1-v0.pt").is_file():
        args.env_ids = ["SafetyHopperVelocity-v1"]
    csv_path, md_path = throughput.main(args)
    rows = list(csv.DictReader(open(csv_path)))
    by_pair = {(r["script"], r["env_id"]): r for r in rows}
    for script in ("strpo.py", "unsafe_cvar_trpo.py"):
        row = by_pair[(script, "SafetyHopperVelocity-v1")]
        assert row["status"] == "ok", row
        for col in ("raw_sps", "train_sps", "ratio", "env_construct_s"):
            assert math.isfinite(float(row[col])) and float(row[col]) > 0
        assert row["target"] == "0.6" and row["meets_target"] in ("yes", "no")
        assert row["nproc"] and row["torch_threads"] == "1" and row["python"] and row["torch"]
    if ("strpo.py", "SafetyCarCircle1-v0") in by_pair:
        skipped = by_pair[("strpo.py", "SafetyCarCircle1-v0")]
        assert skipped["status"] == "skipped" and "SafetyCarCircle1-v0.pt" in skipped["note"]
    md = md_path.read_text()
    assert "| strpo.py | SafetyHopperVelocity-v1 |" in md and "steps_N 800" in md and "nproc" in md
    assert "| ratio |" in capsys.readouterr().out


def test_targets_by_script_family_and_task(throughput):
    assert throughput.ratio_target("cpo.py", "SafetyHopperVelocity-v1") == 0.6
    assert throughput.ratio_target("ppo_lag.py", "SafetyHopperVelocity-v1") == 0.4
    assert throughput.ratio_target("focops.py", "SafetyCarCircle1-v0") == 0.85
    assert len(throughput.Args().scripts) == 10 and set(throughput.Args().env_ids) == {
        "SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"}


def test_profile_prints_the_top_functions_and_tabulates_where_main_spends_its_time(throughput, tmp_path, capsys):
    args = throughput.Args(scripts=["unsafe_cvar_trpo.py"], env_ids=["SafetyHopperVelocity-v1"], steps=400,
                           out=str(tmp_path / "prof.csv"), profile=True)
    csv_path, md_path = throughput.main(args)
    printed = capsys.readouterr().out
    assert "cProfile of unsafe_cvar_trpo.py" in printed and "cumulative" in printed
    assert csv_path == tmp_path / "prof.csv"
    assert "profiled" in next(csv.DictReader(open(csv_path)))["note"]
    md = md_path.read_text()
    assert "Where unsafe_cvar_trpo.py's main() spends its time on SafetyHopperVelocity-v1" in md
    shares = {line.split(" | ")[0].lstrip("| "): float(line.split(" | ")[2].rstrip("% |")) / 100
              for line in md.splitlines() if line.startswith("| ") and line.endswith("% |")}
    # the env's step happens inside the rollout, and everything inside main's epoch loop: the nesting must hold
    env, collect, train = (shares["the vector env's step (reset included)"],
                           next(v for k, v in shares.items() if k.startswith("unsafe_cvar_trpo.py: collect ")),
                           next(v for k, v in shares.items() if k.startswith("unsafe_cvar_trpo.py: train ")))
    assert 0 < env <= collect <= train <= 1
    assert all(v >= throughput.PROFILE_MIN_SHARE for k, v in shares.items() if k.startswith("unsafe_cvar_trpo.py:"))


def test_unknown_script_and_env_id_are_one_line_errors(throughput, tmp_path):
    with pytest.raises(SystemExit, match="no training script 'ppo_lagg.py'; did you mean ppo_lag.py"):
        throughput.main(throughput.Args(scripts=["ppo_lagg.py"], env_ids=["SafetyHopperVelocity-v1"], out=str(tmp_path / "x")))
    with pytest.raises(SystemExit, match="unknown env id 'SafetyHoperVelocity-v1'"):
        throughput.main(throughput.Args(env_ids=["SafetyHoperVelocity-v1"], out=str(tmp_path / "x")))
    with pytest.raises(SystemExit, match="--steps must be positive"):
        throughput.main(throughput.Args(steps=0, out=str(tmp_path / "x")))


def test_help_documents_every_flag():
    help_text = subprocess.run([sys.executable, str(THROUGHPUT), "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    for flag, words in [("--scripts", "training scripts"), ("--env-ids", "tasks"), ("--steps", "env steps"),
                        ("--out", "output path"), ("--repeats", "median"), ("--profile", "cProfile"), ("--seed", "seed")]:
        assert flag in help_text and words in help_text, flag
