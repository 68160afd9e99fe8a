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
