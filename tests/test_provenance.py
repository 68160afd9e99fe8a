"""The repository stands alone: no tracked file points outside it (a user's clone has no ../shared), and
the peer reference runs the docs compare with are in it. Every run names the code that made it: each
training script's config.json carries the git commit of the repository the script lives in and whether
its tracked files differed from it (null when there is no git or no .git, e.g. a single copied file), and
no absolute path the user did not give; a measurement table (throughput, critic minibatch) names the commit it measured."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPTS, load_script

OUTSIDE = ("../shared", "shared/peer-runs")
CHECKS = {"tests/test_provenance.py", "tests/test_docs_paths.py"}  # they name an outside path to test its detection


def test_no_tracked_file_mentions_a_folder_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in filter(None, files.split("\0")):
        path = ROOT / name
        if name in CHECKS or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {word}" for word in OUTSIDE if word in text]
    assert not offenders, offenders


def test_no_committed_run_record_holds_an_absolute_path():
    """run.json's command and the config.json values of docs/runs/ are relative to the repository root: an
    interpreter or a checkout path of the machine that ran them says nothing on another. (output_dir, where
    the experimenter had the run write, is kept as given: the record's own folder is where it is now.)"""
    offenders = []
    for path in sorted((ROOT / "docs" / "runs").rglob("*.json")):
        record = json.loads(path.read_text())
        values = ([record.get("command", "")] if path.name == "run.json" else
                  [v for k, v in record.items() if k != "output_dir"] if isinstance(record, dict) else [])
        offenders += [f"{path.relative_to(ROOT)}: {v}" for v in values
                      if isinstance(v, str) and (v.startswith("/") or " /" in v)]
    assert not offenders, offenders[:5]


def test_the_parity_table_reads_the_peer_runs_committed_in_the_repository():
    out = subprocess.run([sys.executable, "benchmark/parity_table.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.count("| OmniSafe 0.5.0 | 3 |") == 3 and "(no runs)" not in out


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def absolute_paths(config: dict) -> list:
    return [f"{key}: {value}" for key, value in config.items() if isinstance(value, str) and os.path.isabs(value)]


def test_a_short_real_run_records_the_commit_of_its_repository_and_no_absolute_path(tmp_path):
    """unsafe_cvar_trpo.py, one epoch, started from another folder with its defaults (runs/ under the working
    directory): config.json names the repository's HEAD and whether its tracked files differ from it."""
    flags = ["--env-id", "SafetyHopperVelocity-v1", "--num-envs", "2", "--steps-per-epoch", "1000",
             "--total-timesteps", "1000"]
    subprocess.run([sys.executable, str(ROOT / "unsafe_cvar_trpo.py"), *flags], cwd=tmp_path, capture_output=True,
                   text=True, check=True, timeout=300)
    [config_path] = (tmp_path / "runs").glob("*/config.json")
    config = json.loads(config_path.read_text())
    assert config["git_commit"] == git("rev-parse", "HEAD")
    assert config["git_dirty"] == bool(git("status", "--porcelain", "--untracked-files=no"))
    assert not absolute_paths(config)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_writes_its_commit_into_config_json_and_null_without_git(script, tmp_path, monkeypatch):
    """Each copy of start_run, in-process (no env is built): the commit is the repository's HEAD; without a
    repository (GIT_DIR names none, as for a copied file) or without git on PATH it is null, and the run starts."""
    module = load_script(script)
    monkeypatch.chdir(tmp_path)  # the relative output_dir below lands in tmp_path
    head, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    cases = [({}, (head, dirty)), ({"GIT_DIR": str(tmp_path / "none")}, (None, None)), ({"PATH": str(tmp_path)}, (None, None))]
    for case, (env, expected) in enumerate(cases):
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            _, _, run_dir = module.start_run(module.Args(output_dir=f"runs/case{case}"))  # one folder per case
        config = json.loads((run_dir / "config.json").read_text())
        assert (config["git_commit"], config["git_dirty"]) == expected, env
        assert not absolute_paths(config)


@pytest.mark.parametrize("tool", ["benchmark/throughput.py", "benchmark/critic_minibatch.py"])
def test_a_measurement_names_the_commit_of_the_code_it_measured_and_whether_it_was_dirty(tool, tmp_path, monkeypatch):
    """These tools record measurements, not runs: their tables name HEAD when generated, +dirty when the tracked
    files differ from it, unknown outside a repository."""
    module = load_script(ROOT / tool)
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setattr(module, "ROOT", repo)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert module.git_commit() == "unknown"
    run = lambda *argv: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=repo,  # noqa: E731
                                       capture_output=True, text=True, check=True).stdout.strip()
    run("init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    run("add", "code.py")
    run("commit", "-q", "-m", "code")
    head = run("rev-parse", "--short=7", "HEAD")
    assert module.git_commit() == head
    (repo / "code.py").write_text("x = 2\n")
    assert module.git_commit() == head + "+dirty"
