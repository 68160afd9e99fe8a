"""Runs that survive being killed: --resume, clean stops and clean errors, for every training script,
in subprocesses on a real Safety-Gymnasium task.

The setting: SafetyCarCircle1-v0, one sync env, 500-step epochs. CarCircle1's episodes last exactly
500 steps (they end by truncation only), so every epoch is one whole episode and every checkpoint falls
between two episodes. A run killed at any moment and resumed must then repeat the uninterrupted run
bit for bit: same weights, same progress rows. On tasks whose episodes straddle epochs a resumed run
starts the interrupted episodes afresh (the env's state inside an episode is not saved), so from the
resumed epoch on its data differ from the uninterrupted run's (README, "Stopping and resuming a run").
"""
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SCRIPTS, load_script

EPOCHS = 3
FLAGS = ["--env-id", "SafetyCarCircle1-v0", "--num-envs", "1", "--vector-mode", "sync", "--steps-per-epoch", "500",
         "--total-timesteps", str(500 * EPOCHS), "--seed", "3"]
PARAMS = [pytest.param(p, id=p.stem) for p in SCRIPTS]


def load_checkpoint(path: Path):
    """Any script's final checkpoint, through strpo.py's loader (the baselines only write them)."""
    return load_script(ROOT / "strpo.py").load_checkpoint(path)


def run(script: Path, *flags: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def only_run_dir(output_dir: Path) -> Path:
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    return run_dir


def epochs_in_progress(run_dir: Path) -> list[int]:
    with open(run_dir / "progress.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def final_checkpoint(run_dir: Path) -> Path:
    (ckpt,) = [p for p in run_dir.glob("*.pt") if p.name != "resume.pt"]
    return ckpt


def assert_one_error_line(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stdout[-1000:] + result.stderr[-1000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """script -> run folder of its uninterrupted run (made on first use)."""
    cache = {}

    def get(script: Path) -> Path:
        if script not in cache:
            out = tmp_path_factory.mktemp(f"whole_{script.stem}")
            result = run(script, *FLAGS, "--output-dir", str(out))
            assert result.returncode == 0, result.stderr[-3000:]
            cache[script] = only_run_dir(out)
        return cache[script]

    return get


@pytest.mark.parametrize("script", PARAMS)
def test_killed_at_a_random_moment_and_resumed_repeats_the_uninterrupted_run(script, uninterrupted, tmp_path):
    whole = uninterrupted(script)
    proc = subprocess.Popen([sys.executable, str(script), *FLAGS, "--output-dir", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # until epoch 1's row (and checkpoint) is written
        if any(len(epochs_in_progress(d)) >= 1 for d in tmp_path.iterdir() if (d / "resume.pt").is_file()):
            break
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))  # somewhere in epochs 2-3: mid-rollout, mid-update or mid-write
    proc.kill()
    proc.wait()
    run_dir = only_run_dir(tmp_path)
    result = run(script, "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_in_progress(run_dir) == list(range(1, EPOCHS + 1))  # each epoch once, none lost
    actor, _, meta = load_checkpoint(final_checkpoint(run_dir))
    assert meta["global_step"] == 500 * EPOCHS
    whole_actor, _, _ = load_checkpoint(final_checkpoint(whole))
    for (name, a), b in zip(actor.state_dict().items(), whole_actor.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the uninterrupted run's"
    with open(run_dir / "progress.csv") as f, open(whole / "progress.csv") as g:
        drop = {"sps", "time_elapsed"}  # wall-clock columns
        resumed_rows = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]
        whole_rows = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(g)]
    assert resumed_rows == whole_rows


@pytest.mark.parametrize("script", PARAMS)
def test_resuming_a_finished_run_says_so_and_returns(script, uninterrupted, capsys):
    m = load_script(script)  # in-process: main returns before building anything
    whole = uninterrupted(script)
    assert m.main(m.Args(resume=str(whole))) == whole
    assert "finished" in capsys.readouterr().out


@pytest.mark.parametrize("script", PARAMS)
def test_a_run_killed_between_its_last_epoch_and_its_final_checkpoint_gets_it_on_resume(script, uninterrupted, tmp_path):
    run_dir = tmp_path / uninterrupted(script).name
    shutil.copytree(uninterrupted(script), run_dir)
    final = final_checkpoint(run_dir)
    final.unlink()
    m = load_script(script)  # in-process: it builds the envs, runs no epoch and writes the final checkpoint
    m.main(m.Args(resume=str(run_dir)))
    written, _, _ = load_checkpoint(final)
    expected, _, _ = load_checkpoint(final_checkpoint(uninterrupted(script)))
    assert all(torch.equal(a, b) for a, b in zip(written.state_dict().values(), expected.state_dict().values()))
    assert epochs_in_progress(run_dir) == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize("script", PARAMS)
def test_a_corrupt_foreign_or_missing_resume_checkpoint_is_a_one_line_error(script, uninterrupted, tmp_path):
    """In-process (they fail before anything is built); a bad file given to a script in a subprocess is
    checked for a clean stderr in test_a_bad_checkpoint_file_is_one_error_line_and_the_async_envs_close."""
    m = load_script(script)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "resume.pt").write_bytes(b"not a checkpoint" * 10)
    other = next(p for p in SCRIPTS if p != script)  # a finished run of another script
    for folder in (corrupt, tmp_path / "no_such_run", uninterrupted(other)):
        with pytest.raises(SystemExit) as exc:
            m.main(m.Args(resume=str(folder)))
        assert str(exc.value).startswith("error:") and "\n" not in str(exc.value), exc.value
    if script.name == "strpo.py":  # and once as a user runs it: one line, no traceback
        assert_one_error_line(run(script, "--resume", str(corrupt)))


def test_sigint_to_the_process_group_finishes_the_epoch_and_exits_cleanly(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group, async env workers included: the workers
    ignore it, the main process finishes the epoch, writes its checkpoint, says how to resume, and
    exits 130 with no traceback; the resumed run then completes."""
    script = ROOT / "strpo.py"
    flags = ["--env-id", "SafetyCarCircle1-v0", "--num-envs", "2", "--vector-mode", "async", "--steps-per-epoch", "1000",
             "--total-timesteps", "4000", "--seed", "1", "--output-dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, str(script), *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not any(tmp_path.glob("*/resume.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert f"--resume {run_dir}" in stdout
    done = epochs_in_progress(run_dir)
    assert done == list(range(1, len(done) + 1)) and 2 <= len(done) < 4
    result = run(script, "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_in_progress(run_dir) == [1, 2, 3, 4]
    assert final_checkpoint(run_dir).is_file()


@pytest.mark.parametrize("command", [
    ["strpo.py", "--unsafe-policy-path", "README.md"],
    ["unsafe_cvar_trpo.py", "--init-from", "README.md"],
    ["robustness_attack.py", "--checkpoints", "README.md"],
], ids=["strpo-pi-unsafe", "unsafe-init-from", "robustness-checkpoint"])
def test_a_bad_checkpoint_file_is_one_error_line_and_the_async_envs_close(command, tmp_path):
    """A file that is not a checkpoint, given where a checkpoint is read. strpo.py finds it after its
    async envs exist: they must be closed on the way out (a vector env left to the interpreter's
    teardown prints a traceback)."""
    script, *flags = command
    extra = [] if script == "robustness_attack.py" else ["--env-id", "SafetyCarCircle1-v0", "--num-envs", "2",
                                                         "--vector-mode", "async", "--output-dir", str(tmp_path)]
    assert_one_error_line(run(ROOT / script, *flags, *extra))


def test_strpo_runs_from_any_folder_with_the_shipped_pi_unsafe(tmp_path):
    """The default pi_unsafe path is next to strpo.py, not in the working folder; and the Adroit
    notice of gymnasium-robotics, which has nothing to do with these tasks, is not printed."""
    result = subprocess.run([sys.executable, str(ROOT / "strpo.py"), "--env-id", "SafetyHopperVelocity-v1",
                             "--num-envs", "1", "--steps-per-epoch", "1000", "--total-timesteps", "1000",
                             "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Adroit" not in result.stdout + result.stderr
    assert final_checkpoint(only_run_dir(tmp_path / "runs")).is_file()


def test_with_track_the_resumed_run_continues_the_same_wandb_run(tmp_path):
    """WANDB_MODE=offline (conftest): the killed run and its resumption log under one wandb run id."""
    script = ROOT / "strpo.py"
    flags = ["--env-id", "SafetyHopperVelocity-v1", "--num-envs", "1", "--steps-per-epoch", "1000",
             "--total-timesteps", "3000", "--track", "--output-dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, str(script), *flags], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "WANDB_MODE": "offline"})
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not any(tmp_path.glob("*/resume.pt")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    run_dir = only_run_dir(tmp_path)
    result = subprocess.run([sys.executable, str(script), "--resume", str(run_dir)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-2000:]
    ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 2 and len(ids) == 1, ids
    assert epochs_in_progress(run_dir) == [1, 2, 3]
