"""No tool writes a tracked file unless asked: run with its defaults in a clean clone of the
repository, every tool of benchmark/ and robustness_attack.py leaves `git status` clean and every
tracked file untouched, even rewritten with the same bytes (its outputs go under runs/, which
.gitignore covers). The ones that take minutes (they train or measure) are
checked on their default output path instead. A tool whose purpose is a committed page is asked for
it by its own command, and is listed with the reason (README, "Other measurements").
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_script

LIBRARIES = {"benchmark/unsafe_sections.py"}  # imported by a tool, never run
TOOLS = sorted(str(p.relative_to(ROOT)) for p in [ROOT / "robustness_attack.py", *(ROOT / "benchmark").glob("*.py")]
               if str(p.relative_to(ROOT)) not in LIBRARIES)
# run in the clone with their defaults, plus the least input they need
RUN_WITH_DEFAULTS = {
    "benchmark/check_run.py": ["docs/runs/matrix/SafetyHopperVelocity-v1__trpo_lag__0", "--epochs", "1"],
    "benchmark/compare_runs.py": ["docs/runs/fisher-subsample"],
    "benchmark/evaluate_unsafe.py": ["--episodes", "1", "--env-ids", "SafetyHopperVelocity-v1"],
    "benchmark/parity_table.py": [],
    "benchmark/strpo_modes.py": ["docs/runs/strpo-modes"],
    "benchmark/theorem1_report.py": ["docs/runs/strpo-modes/default/SafetyCarCircle1-v0/seed0/progress.csv"],
    "benchmark/update_readme.py": [],  # rewrites README.md (REWRITES)
    "robustness_attack.py": ["--checkpoints", "unsafe_policies/SafetyHopperVelocity-v1.pt", "--rates", "0",
                             "--episodes", "1", "--num-envs", "1"],
    "benchmark/watch_policies.py": None,  # test_watch_policies_with_its_defaults_...
}
# exit codes that are a result, not a failure: check_run.py exits 1 when the record does not repeat, which it
# does not on a CPU with other SIMD extensions than the record's (docs/reproduce.md, "Provenance")
EXIT_CODES = {"benchmark/check_run.py": (0, 1)}
# the tracked file a run above rewrites on purpose: the page the tool exists to regenerate (the same bytes here)
REWRITES = {"benchmark/update_readme.py": ["README.md"]}
# minutes of training or measuring: their default output, relative to the repository root
DEFAULT_OUTPUT = {
    "benchmark/bit_identity.py": lambda module: module.Args().out,
    "benchmark/critic_minibatch.py": lambda module: module.Args().out,
    "benchmark/peer_omnisafe.py": lambda module: module.DEFAULT_OUT,  # needs OmniSafe's own venv
    "benchmark/run.py": lambda module: module.Args().root,
    "benchmark/throughput.py": lambda module: module.Args().out,
}
# the command itself asks for the committed page
ASKED_BY_ITS_COMMAND = {
    "benchmark/aggregate.py": "`python benchmark/aggregate.py` regenerates docs/results.md from docs/runs/matrix/; "
                              "other runs go elsewhere with --out-md and --out-dir",
}


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clean clone of the working tree: its tracked files as they are now, committed in a new repository."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    dest = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the working tree is not in the clone either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"]):
        subprocess.run(["git", *command], cwd=dest, check=True, capture_output=True)
    assert git_status(dest) == ""
    return dest


def tracked_mtimes(folder: Path) -> dict[str, int]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=folder, capture_output=True, check=True).stdout.decode()
    return {name: (folder / name).stat().st_mtime_ns for name in filter(None, listed.split("\0"))}


def git_status(folder: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=folder, capture_output=True,
                          text=True, check=True).stdout


def test_every_tool_is_checked_one_way():
    checked = [*RUN_WITH_DEFAULTS, *DEFAULT_OUTPUT, *ASKED_BY_ITS_COMMAND]
    assert sorted(checked) == TOOLS, "a new tool: list it in one of the three tables above"


@pytest.mark.parametrize("tool", [t for t, argv in RUN_WITH_DEFAULTS.items() if argv is not None])
def test_a_tool_run_with_its_defaults_leaves_a_clean_clone_clean(clone, tool):
    before = tracked_mtimes(clone)
    result = subprocess.run([sys.executable, tool, *RUN_WITH_DEFAULTS[tool]], cwd=clone, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode in EXIT_CODES.get(tool, (0,)), result.stderr[-2000:]
    assert git_status(clone) == "", f"{tool} wrote tracked files:\n{git_status(clone)}"
    written = sorted(name for name, mtime in tracked_mtimes(clone).items() if before[name] != mtime)
    assert written == REWRITES.get(tool, []), f"{tool} rewrote tracked files with the same content: {written}"


@pytest.mark.parametrize("tool", sorted(DEFAULT_OUTPUT))
def test_a_slow_tools_default_output_is_under_runs(tool):
    out = Path(DEFAULT_OUTPUT[tool](load_script(ROOT / tool)))
    out = out if out.is_absolute() else ROOT / out
    assert (ROOT / "runs") in out.parents, f"{tool} writes {out} by default"


def test_watch_policies_with_its_defaults_writes_under_runs_and_exits_without_egl_tracebacks(clone):
    """The README's command on a clean clone: it used to rewrite docs/strpo_vs_unsafe.png, and with two
    policies its renderers were freed after EGL had shut down (two `Exception ignored ... EGLError`)."""
    (strpo_checkpoint,) = clone.glob("docs/runs/matrix/SafetyCarCircle1-v0__strpo__0/*/strpo.pt")  # the picture's
    result = subprocess.run([sys.executable, "benchmark/watch_policies.py", "--gif", "--steps", "10", "--frames", "2",
                             "--checkpoints", "unsafe_policies/SafetyCarCircle1-v0.pt", str(strpo_checkpoint.relative_to(clone))],
                            cwd=clone, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Exception ignored" not in result.stderr and "EGLError" not in result.stderr, result.stderr[-2000:]
    assert git_status(clone) == "", f"watch_policies.py wrote tracked files:\n{git_status(clone)}"
    (png,) = (clone / "runs" / "watch").glob("SafetyCarCircle1-v0__seed1__*.png")
    assert png.with_suffix(".gif").is_file()
