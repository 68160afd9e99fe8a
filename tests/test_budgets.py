"""Size budgets of the training scripts, measured from the syntax tree (issue 25), so that the files cannot
quietly regrow: every line of a file gets one role from the top-level statement it belongs to (with the
comment lines right above it):

  docstring   the module docstring            args       the Args dataclass (what --help shows)
  imports     import statements               algorithm  the update, multiplier, advantages (every
  math        GAE, CG, Fisher-vector product,            definition not named below) and their constants
              flat parameters, critic fits    model      normaliser, actor, critics, network init
  env         rollout, vector envs, seeding   plumbing   argument checks, env speed-up, video,
  main        main and train (the loop)                  checkpoints, resuming, signals, logging
  blank       blank lines and section banners

`python tests/test_budgets.py FILE...` prints the table (lines per role, first line of the update).
"""
import ast
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ROOT, SCRIPTS  # noqa: E402

ROLES = ["docstring", "imports", "args", "algorithm", "math", "model", "env", "plumbing", "main", "blank"]
ORDER = ["args", "algorithm", "math", "model", "env", "plumbing", "main"]  # the order of a file's definitions
MATH = {"compute_gae", "conjugate_gradient", "gaussian_kl", "mean_kl", "fisher_vector_product", "flat_grad",
        "get_flat_params", "set_flat_params", "fit_critics"}
MODEL = {"OBS_CLIP", "LOG_STD_INIT", "RunningMeanStd", "layer_init", "mlp", "Actor", "QuantileCritic"}
ENV = {"NAVIGATION_TASKS", "Rollout", "make_vector_env", "make_env", "seed_each_episode",
       "is_navigation_task"}
PLUMBING = {"CHECKPOINT_FORMAT_VERSION", "RESUME_FILE", "RESUME_FORMAT_VERSION", "VIDEO_EVERY", "VIDEO_SIZE",
            "TORCH_THREADS", "validate_args", "check_common_args", "require", "check_renderer", "without_skybox",
            "log_new_videos", "save_checkpoint", "atomic_save", "load_checkpoint", "load_resume", "start_run", "restore",
            "open_log", "GracefulStop", "log_epoch", "end_epoch", "finish", "unsafe_policy_path",
            "check_unsafe_policy_exists", "load_unsafe_policy"}
MAIN = {"main", "train"}

# the budgets (issue 25); a file that misses a target is listed in OVER with its limit and the reason
UPDATE_STARTS_BY = 250  # the first line of the algorithm
PLUMBING_LINES = 200
HELPER_LINES = 25  # a plumbing helper (function or class, its docstring included)
FILE_LINES = {"strpo.py": 850, "unsafe_cvar_trpo.py": 600}
BASELINE_LINES = 650
FEATURES = ("plumbing carries what CleanRL's 164 lines do not, in the ~190 lines every script shares (a baseline's "
            "plumbing is within the 200): --resume that repeats a run bit for bit (load_resume, restore, resume.pt in "
            "end_epoch, atomic writes, progress.csv cut back: ~55 lines), graceful Ctrl-C/SIGTERM (18), the shared argument "
            "checks (17), the navigation speed-up (18), video with its renderer probe and wandb upload (17), the run's "
            "start (config.json, wandb: 18), the epoch's log and final checkpoint (open_log, log_epoch, finish: 35); every "
            "one a feature issue 25 keeps, each helper under 25 lines")
LONGER = ("besides plumbing, two critics, the resumable rollout (episode seeding, final observations), the "
          "multiplier and the per-epoch diagnostics; the main loop reads as the docstring's steps. Without its "
          "algorithm and blank lines a baseline is 570-615 lines of Args, shared math, model, env, plumbing and main "
          "(measured after issue 25's slimming), so 650 in all would need a feature dropped or one-liners")
OVER = {  # {file: {budget: (limit, why)}}
    "strpo.py": {"plumbing": (225, FEATURES + "; and, for pi_unsafe, load_checkpoint (19) and unsafe_policy_path (3), "
                                              "and sTRPO's own argument checks (validate_args: 11)"),
                 "total": (1064, LONGER + "; the sTRPO step with its ablations")},
    "unsafe_cvar_trpo.py": {"plumbing": (221, FEATURES + "; and load_checkpoint for --init-from (19), and its own argument "
                                                         "checks (validate_args: 10)"),
                            "total": (949, LONGER + "; the quantile critic, its SR(lambda) targets and calibration")},
    **{f"baselines/{name}": {"total": (total, LONGER)} for name, total in (
        ("cpo.py", 871), ("cppo_pid.py", 807), ("cup.py", 793), ("focops.py", 750), ("pcpo.py", 820), ("ppo_lag.py", 784),
        ("rcpo.py", 797), ("trpo_lag.py", 828))},
}


def role_of(name: str) -> str:
    for role, names in (("math", MATH), ("model", MODEL), ("env", ENV), ("plumbing", PLUMBING), ("main", MAIN)):
        if name in names:
            return role
    return "args" if name == "Args" else "algorithm"


def measure(path: Path) -> dict:
    """{"roles": Counter of lines per role, "total", "update_start", "helpers": {name: (role, lines)},
    "order": [role of each top-level definition]}."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    role = ["blank"] * len(lines)
    helpers, order, update_start = {}, [], None
    for i, node in enumerate(tree.body):
        start, end = node.lineno - 1, node.end_lineno
        if getattr(node, "decorator_list", None):
            start = node.decorator_list[0].lineno - 1
        while start > 0 and lines[start - 1].startswith("#") and not lines[start - 1].startswith("# ---"):
            start -= 1
        name = getattr(node, "name", None)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            kind = "docstring"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            kind = "imports"
        elif isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            kind = "main"
        elif isinstance(node, (ast.Try, ast.If)):
            kind = "plumbing"  # import-time workarounds
        elif name is not None:
            kind = role_of(name)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                helpers[name] = (kind, end - start)
                order.append(kind)
                if kind == "algorithm" and update_start is None:
                    update_start = start + 1
        else:
            kind = "plumbing"
        for k in range(start, end):
            role[k] = kind
    for k, line in enumerate(lines):
        if not line.strip() or line.startswith("# ---"):
            role[k] = "blank"
    return {"roles": Counter(role), "total": len(lines), "update_start": update_start, "helpers": helpers,
            "order": order}


def limit(name: str, budget: str, default: int) -> int:
    return OVER.get(name, {}).get(budget, (default, ""))[0]


def file_budget(path: Path) -> int:
    return FILE_LINES.get(path.name, BASELINE_LINES)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


PARAMS = [pytest.param(p, id=rel(p)) for p in SCRIPTS]


@pytest.mark.parametrize("path", PARAMS)
def test_the_update_starts_within_the_first_250_lines(path):
    m = measure(path)
    assert m["update_start"] is not None and m["update_start"] <= limit(rel(path), "update_start", UPDATE_STARTS_BY), m["update_start"]


@pytest.mark.parametrize("path", PARAMS)
def test_plumbing_stays_within_its_budget(path):
    m = measure(path)
    assert m["roles"]["plumbing"] <= limit(rel(path), "plumbing", PLUMBING_LINES), m["roles"]


@pytest.mark.parametrize("path", PARAMS)
def test_no_plumbing_helper_is_longer_than_25_lines(path):
    long = {n: k for n, (role, k) in measure(path)["helpers"].items() if role == "plumbing" and k > HELPER_LINES}
    assert not long, long


@pytest.mark.parametrize("path", PARAMS)
def test_the_file_stays_within_its_line_budget(path):
    m = measure(path)
    assert m["total"] <= limit(rel(path), "total", file_budget(path)), m["total"]


@pytest.mark.parametrize("path", PARAMS)
def test_definitions_come_in_reading_order(path):
    """Args, the algorithm, shared math, model, rollout and env, plumbing, main. A new helper whose name the
    tables above do not know counts as algorithm: placed among the plumbing, it fails here until classified."""
    if "order" in OVER.get(rel(path), {}):
        pytest.skip(OVER[rel(path)]["order"][1])
    order = measure(path)["order"]
    ranks = [ORDER.index(role) for role in order]
    assert ranks == sorted(ranks), order


@pytest.mark.parametrize("path", PARAMS)
def test_every_definition_is_used_by_its_file(path):
    """No helper a file never calls (e.g. a checkpoint loader kept only so that copies match)."""
    tree = ast.parse(path.read_text())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
           {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    unused = [name for name in defined if name not in used and name != "main"]
    assert not unused, unused


def test_the_measure_sees_a_regrown_file(tmp_path):
    """A plumbing helper of 30 lines and a file that grew past its budget are caught."""
    src = (ROOT / "baselines" / "trpo_lag.py").read_text()
    grown = tmp_path / "trpo_lag.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(26))
    anchor = "def atomic_save(obj, path: Path) -> None:\n"
    assert src.count(anchor) == 1
    grown.write_text(src.replace(anchor, anchor + body, 1))
    before, after = measure(ROOT / "baselines" / "trpo_lag.py"), measure(grown)
    assert after["helpers"]["atomic_save"] == ("plumbing", before["helpers"]["atomic_save"][1] + 26)
    assert after["helpers"]["atomic_save"][1] > 25
    assert after["roles"]["plumbing"] == before["roles"]["plumbing"] + 26
    assert after["total"] == before["total"] + 26


def table(paths: list[Path]) -> str:
    head = "| file | lines | " + " | ".join(ROLES) + " | update starts |"
    rows = [head, "|" + "---|" * (len(ROLES) + 3)]
    for p in paths:
        m = measure(p)
        rows.append(f"| {p.name} | {m['total']} | " + " | ".join(str(m["roles"][r]) for r in ROLES)
                    + f" | {m['update_start']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]] or SCRIPTS))
