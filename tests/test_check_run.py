"""benchmark/check_run.py: a record that a real run left repeats; one whose numbers were changed, or
that is not a training run, is caught."""
import csv
import json
import subprocess
import sys

import pytest
from conftest import ROOT, load_script

CHECK = ROOT / "benchmark" / "check_run.py"
COMMAND = ("python baselines/trpo_lag.py --env-id SafetyHopperVelocity-v1 --seed 3 --total-timesteps 6000 "
           "--steps-per-epoch 2000 --num-envs 2 --output-dir {out}")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """A record as benchmark/run.py leaves it: NAME/run.json and NAME/<run folder>/progress.csv of a real 3-epoch run."""
    folder = tmp_path_factory.mktemp("records") / "SafetyHopperVelocity-v1__trpo_lag__3"
    command = COMMAND.format(out=folder)
    subprocess.run([sys.executable, *command.split()[1:]], cwd=ROOT, check=True, capture_output=True, timeout=300)
    (folder / "run.json").write_text(json.dumps({"command": command, "steps_per_epoch": 2000,
                                                 "git_commit": "0" * 40, "git_dirty": True}))
    return folder


def check(*argv):
    return subprocess.run([sys.executable, str(CHECK), *map(str, argv)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def change_cost(record_dir, epoch):
    """Add 1e-9 to the recorded episode cost of one epoch (1-based) of the record's progress.csv."""
    progress = next(record_dir.glob("*/progress.csv"))
    with open(progress, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[epoch - 1]["ep_cost"] = str(float(rows[epoch - 1]["ep_cost"]) + 1e-9)
    with open(progress, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_record_repeats_its_first_epochs(record):
    out = check(record, "--epochs", 2)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "repeats its first 2 epoch(s) exactly (recorded at 0000000+dirty)" in out.stdout


def test_a_record_whose_cost_was_changed_in_a_checked_epoch_differs(record, tmp_path):
    changed = tmp_path / record.name
    subprocess.run(["cp", "-r", str(record), str(changed)], check=True)
    change_cost(changed, epoch=2)
    out = check(changed, "--epochs", 2)
    assert out.returncode == 1 and "epoch 2, ep_cost: recorded" in out.stdout, out.stdout + out.stderr
    assert check(changed, "--epochs", 1).returncode == 0  # epoch 1 is untouched


def test_a_differing_record_says_whether_it_ran_on_another_cpu(record, tmp_path):
    """A rerun repeats exactly only on a CPU with the record's SIMD extensions (torch and MKL pick kernels by
    them), so a record that differs names the CPU it ran on when that is not this one, or says it is unrecorded."""
    this_cpu = load_script(ROOT / "benchmark" / "run.py").cpu_provenance()
    for case, (cpu, expected) in enumerate(((None, "its CPU is unrecorded"), (this_cpu, None),
                                            ("Other CPU; sse2", "it ran on another CPU (Other CPU; sse2)"))):
        changed = tmp_path / str(case) / record.name
        changed.parent.mkdir()
        subprocess.run(["cp", "-r", str(record), str(changed)], check=True)
        run_json = json.loads((changed / "run.json").read_text())
        (changed / "run.json").write_text(json.dumps({**run_json, "cpu": cpu}))
        change_cost(changed, epoch=1)
        out = check(changed, "--epochs", 1)
        assert out.returncode == 1, out.stdout + out.stderr
        if expected:
            assert expected in out.stdout, out.stdout
        else:
            assert "CPU" not in out.stdout, out.stdout


def test_the_rerun_keeps_the_command_and_cuts_only_budget_and_output():
    module = load_script(CHECK)
    argv = module.rerun_command({"command": COMMAND.format(out="runs/x"), "steps_per_epoch": 2000}, 2, "/tmp/o")
    assert argv == [sys.executable, "baselines/trpo_lag.py", "--env-id", "SafetyHopperVelocity-v1", "--seed", "3",
                    "--total-timesteps", "4000", "--steps-per-epoch", "2000", "--num-envs", "2", "--output-dir", "/tmp/o"]


def test_a_robustness_sweep_or_a_folder_without_record_cannot_be_checked(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "attack").mkdir(parents=True)
    (sweep / "run.json").write_text(json.dumps({"command": "python robustness_attack.py --checkpoints a.pt",
                                                "steps_per_epoch": 15000}))
    (sweep / "x").mkdir()
    (sweep / "x" / "progress.csv").write_text("epoch\n1\n")
    out = check(sweep)
    assert out.returncode == 2 and "not a training command" in out.stdout
    assert check(tmp_path / "empty").returncode == 2


def test_a_resumed_record_is_rerun_from_the_start_and_keeps_the_snapshots_inside_the_cut_budget():
    module = load_script(CHECK)
    command = ("python unsafe_cvar_trpo.py --env-id SafetyCarCircle1-v0 --seed 0 --total-timesteps 300000 "
               "--save-policies-at 1 7 14 20 --output-dir runs/m/X --resume runs/m/X/X__0__1")
    argv = module.rerun_command({"command": command, "steps_per_epoch": 15000}, 7, "/tmp/o")
    assert argv[1:] == ["unsafe_cvar_trpo.py", "--env-id", "SafetyCarCircle1-v0", "--seed", "0", "--total-timesteps",
                        "105000", "--save-policies-at", "1", "7", "--output-dir", "/tmp/o"]
    argv = module.rerun_command({"command": command, "steps_per_epoch": 15000}, 0, "/tmp/o")
    assert "--save-policies-at" not in argv
