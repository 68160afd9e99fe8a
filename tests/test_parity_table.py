"""benchmark/parity_table.py: the same rows from the parity records' layout and from benchmark/run.py's."""
import csv
import json
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "benchmark" / "parity_table.py"


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_matrix_layout_gives_the_rows_of_the_parity_layout(tmp_path):
    env = "SafetyHopperVelocity-v1"
    for seed, (ret, cost) in enumerate([(100, 10), (200, 30)]):
        rows = [[1000 * (i + 1), i + 1, ret if i >= 2 else 0, cost if i >= 2 else 90] for i in range(5)]
        header = ["global_step", "epoch", "ep_ret", "ep_cost"]
        write_csv(tmp_path / "parity" / f"cpo__{env}__seed{seed}" / "progress.csv", header, rows)
        # benchmark/run.py: an interrupted first attempt (older stamp) beside the finished one
        write_csv(tmp_path / "matrix" / f"{env}__cpo__{seed}" / f"{env}__cpo__{seed}__2" / "progress.csv", header, rows)
        write_csv(tmp_path / "matrix" / f"{env}__cpo__{seed}" / f"{env}__cpo__{seed}__1" / "progress.csv", header, rows[:1])
        write_csv(tmp_path / "omni" / f"CPO_seed-{seed:03d}.csv", ["Metrics/EpRet", "Metrics/EpCost"], [[1, 1]] * 5)
    common = [sys.executable, str(SCRIPT), "--omnisafe", str(tmp_path / "omni"), "--seeds", "0", "1"]
    a = subprocess.run(common + ["--ours", str(tmp_path / "parity")], capture_output=True, text=True, check=True).stdout
    out = tmp_path / "table.md"
    b = subprocess.run(common + ["--matrix", str(tmp_path / "matrix"), "--out", str(out)],
                       capture_output=True, text=True, check=True).stdout
    assert a == b == out.read_text()
    # final = last 3 epochs (100 / 10 and 200 / 30): 150 ± 71 (ddof 1); mean cost (0.4 x 90 + 0.6 x cost)
    row = next(line for line in a.splitlines() if line.startswith("| CPO | ours"))
    assert "| 2 | 150 ± 71 | 20.0 ± 14.1 | 48.0 ± 8.5 | 100 / 10.0, 200 / 30.0 |" in row


def test_each_row_of_ours_names_the_commits_of_its_runs(tmp_path):
    """run.json's git_commit (benchmark/run.py's layout), else config.json's, +dirty; else unrecorded."""
    env, header = "SafetyHopperVelocity-v1", ["global_step", "epoch", "ep_ret", "ep_cost"]
    for seed in (0, 1, 2):
        run = tmp_path / "matrix" / f"{env}__cpo__{seed}" / f"{env}__cpo__{seed}__1"
        write_csv(run / "progress.csv", header, [[1000, 1, 10, 1]])
        if seed == 0:
            (run.parent / "run.json").write_text(json.dumps({"git_commit": "a" * 40, "git_dirty": False}))
        if seed == 1:
            (run / "config.json").write_text(json.dumps({"git_commit": "b" * 40, "git_dirty": True}))
    out = subprocess.run([sys.executable, str(SCRIPT), "--matrix", str(tmp_path / "matrix"), "--omnisafe", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("| CPO | ours"))
    assert row.endswith("| aaaaaaa (1 run), bbbbbbb+dirty (1 run), unrecorded (1 run) |")
