"""benchmark/compare_runs.py groups run records by name without __seed<K> and summarises them."""
import csv
import subprocess
import sys

from conftest import ROOT


def write_run(folder, rets, costs):
    folder.mkdir(parents=True)
    with open(folder / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "epoch", "ep_ret", "ep_cost"])
        for i, (r, c) in enumerate(zip(rets, costs)):
            w.writerow([1000 * (i + 1), i + 1, r, c])


def test_groups_by_name_and_takes_the_last_three_epochs(tmp_path):
    write_run(tmp_path / "algo__k4__seed0", [0, 0, 10, 20, 30], [50, 50, 1, 2, 3])
    write_run(tmp_path / "algo__k4__seed1", [0, 0, 30, 40, 50], [50, 50, 3, 4, "nan"])
    write_run(tmp_path / "algo__k1__seed0", [0, 5, 5, 5, 5], [0, 0, 0, 0, 0])
    out = subprocess.run([sys.executable, str(ROOT / "benchmark" / "compare_runs.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    k4 = next(line for line in out.splitlines() if line.startswith("| algo__k4 |"))
    # finals: 20 and 40 -> 30 ± 14.1; costs: 2 and 3.5 (nan skipped) -> 2.8 ± 1.1
    assert "| 2 | 5 | 30.0 ± 14.1 | 2.8 ± 1.1 |" in k4 and "20 / 2.0, 40 / 3.5" in k4
    assert "| algo__k1 | 1 | 5 | 5.0 ± 0.0 | 0.0 ± 0.0 |" in out


def test_two_groups_get_their_difference_and_its_standard_error(tmp_path):
    write_run(tmp_path / "runs" / "a__k1__seed0", [10] * 3, [1] * 3)
    write_run(tmp_path / "runs" / "a__k1__seed1", [20] * 3, [3] * 3)
    write_run(tmp_path / "runs" / "a__k4__seed0", [40] * 3, [2] * 3)
    write_run(tmp_path / "runs" / "a__k4__seed1", [60] * 3, [2] * 3)
    out_file = tmp_path / "out.md"
    out = subprocess.run([sys.executable, str(ROOT / "benchmark" / "compare_runs.py"), str(tmp_path / "runs"),
                          "--out", str(out_file)], capture_output=True, text=True, check=True).stdout
    # rewards 15 vs 50: +35; variances 50 and 200 over 2 seeds each -> se = sqrt(25 + 100) = 11.18
    assert "final reward +35.0 ± 11.2 (3.1 standard errors)" in out
    assert "final cost +0.0 ± 1.0 (0.0 standard errors)" in out
    assert out_file.read_text() == out


def test_the_scripts_default_run_folders_group_the_seeds_of_each_configuration(tmp_path):
    # runs/{env_id}__{exp_name}__{seed}__{unix time}/, as every training script names its run folder
    write_run(tmp_path / "SafetyCarCircle1-v0__strpo__0__1764000000", [10] * 3, [1] * 3)
    write_run(tmp_path / "SafetyCarCircle1-v0__strpo__1__1764000950", [20] * 3, [3] * 3)
    write_run(tmp_path / "SafetyCarCircle1-v0__cpo__0__1764001900", [40] * 3, [2] * 3)
    out = subprocess.run([sys.executable, str(ROOT / "benchmark" / "compare_runs.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split(" | ")[:2] for line in out.splitlines() if line.startswith("| Safety")]
    assert rows == [["| SafetyCarCircle1-v0__cpo", "1"], ["| SafetyCarCircle1-v0__strpo", "2"]]
