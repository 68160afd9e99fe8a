"""One text per shared helper: every top-level function or class that several files define is the
same code in each of them (syntax trees compared, docstrings aside), so that a comparison of two
training scripts is a comparison of algorithms, not of plumbing.

Files: the training scripts (strpo.py, unsafe_cvar_trpo.py, baselines/*.py), robustness_attack.py,
and every benchmark/ script that defines a helper of those. A name that each file defines for itself
(its Args, main, ...) is listed in PER_FILE; an intended difference between copies is listed in
ALLOWED with its reason. Everything else must match the reference copy (the first file in FILES
that defines it: strpo.py for most helpers).

A file carries only the helpers it uses (tests/test_budgets.py checks that it calls every one): a
baseline that never reads a checkpoint has no load_checkpoint. Leaving a helper out is fine; the
copies a file does carry must be the reference's text.
"""
import ast
from pathlib import Path

import pytest

from conftest import ROOT, SCRIPTS

TRAINING = [ROOT / "strpo.py", *[p for p in SCRIPTS if p.name != "strpo.py"]]
OTHERS = [ROOT / "robustness_attack.py", *sorted((ROOT / "benchmark").glob("*.py"))]

# each file's own: its arguments, entry points and checks of its own arguments
PER_FILE = {"Args", "main", "train", "validate_args"}

# intended differences: {helper name: {file: why its copy differs}}
ALLOWED = {
    "Lagrange": {"baselines/rcpo.py": "RCPO's multiplier is Tessler et al.'s plain projected step (eq. 11), "
                                      "not the Adam step on the penalty loss of TRPO-Lag / PPO-Lag"},
    "make_env": {"robustness_attack.py": "evaluation envs: no episode seeding for resuming, no video"},
    "make_vector_env": {"robustness_attack.py": "evaluation envs: env 0 films the CSV's first K episodes (--video K), "
                                                "not every 50th training episode"},
}


def top_level_definitions(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def without_docstrings(node: ast.AST) -> str:
    node = ast.parse(ast.unparse(node)).body[0]  # a copy
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                n.body = n.body[1:] or [ast.Pass()]
    return ast.dump(node)


def shared_helpers() -> dict[str, dict[str, str]]:
    """{name: {file: syntax tree}} for every name defined in two or more files. robustness_attack.py and
    the benchmark scripts count only for names that a training script also defines (their own small
    helpers, e.g. a plot or csv writer, may share a name by chance)."""
    found: dict[str, dict[str, str]] = {}
    training_names = set()
    for path in TRAINING:
        training_names |= set(top_level_definitions(path))
    for path in [*TRAINING, *OTHERS]:
        rel = str(path.relative_to(ROOT))
        for name, node in top_level_definitions(path).items():
            if name in PER_FILE or (path not in TRAINING and name not in training_names):
                continue
            found.setdefault(name, {})[rel] = without_docstrings(node)
    return {name: copies for name, copies in found.items() if len(copies) > 1}


HELPERS = shared_helpers()


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_every_copy_of_a_shared_helper_is_the_same_code(name):
    copies = HELPERS[name]
    reference_file = next(f for f in copies if f not in ALLOWED.get(name, {}))
    differ = sorted(f for f, tree in copies.items()
                    if tree != copies[reference_file] and f not in ALLOWED.get(name, {}))
    assert not differ, (f"{name}: the copies in {differ} differ from {reference_file}'s; edit every copy alike, "
                        f"or list an intended difference in ALLOWED with its reason")


def test_the_allow_list_names_only_real_differences():
    """An entry of ALLOWED whose copy has become equal to the reference (or vanished) must go."""
    for name, files in ALLOWED.items():
        copies = HELPERS.get(name, {})
        reference_file = next((f for f in copies if f not in files), None)
        for f in files:
            assert f in copies and reference_file is not None and copies[f] != copies[reference_file], \
                f"ALLOWED[{name!r}][{f!r}] is no longer a difference: remove it"


def test_a_file_may_leave_out_a_helper_it_does_not_use():
    """load_checkpoint is in strpo.py (it reads pi_unsafe) and not in the baselines (they only write
    checkpoints); the copies that exist are still compared."""
    assert "load_checkpoint" not in top_level_definitions(ROOT / "baselines" / "trpo_lag.py")
    assert {"strpo.py", "robustness_attack.py"} <= set(HELPERS["load_checkpoint"])


def test_a_copy_edited_alone_is_caught():
    """The comparison sees one added statement in a copy, and ignores docstrings."""
    node = top_level_definitions(ROOT / "strpo.py")["compute_gae"]
    edited = ast.parse(ast.unparse(node) + "\n    extra = 1").body[0]
    assert without_docstrings(edited) != without_docstrings(node)
    redocumented = ast.parse(ast.unparse(node).replace('"""', '"""Another docstring. ', 1)).body[0]
    assert without_docstrings(redocumented) == without_docstrings(node)


SHARED_CONSTANTS = ("OBS_CLIP", "LOG_STD_INIT")  # the observation clip and the initial policy std
SHARED_DEFAULTS = ("hidden_sizes", "gamma", "steps_per_epoch", "num_envs", "cost_limit")


def module_constants(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in SHARED_CONSTANTS}


def args_defaults(path: Path) -> dict[str, object]:
    args = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == "Args")
    return {n.target.id: ast.literal_eval(n.value) for n in args.body
            if isinstance(n, ast.AnnAssign) and n.value is not None and n.target.id in SHARED_DEFAULTS}


def test_every_training_script_starts_from_the_same_network_and_noise():
    """A comparison of algorithms must not confound the algorithm with its initial policy std, network or
    budget conventions (docs/conventions.md): these constants and defaults are equal in all ten scripts."""
    reference = {**module_constants(TRAINING[0]), **args_defaults(TRAINING[0])}
    assert set(reference) == set(SHARED_CONSTANTS) | set(SHARED_DEFAULTS)
    for path in TRAINING[1:]:
        values = {**module_constants(path), **args_defaults(path)}
        differ = {k: (values.get(k), v) for k, v in reference.items() if values.get(k) != v}
        assert not differ, f"{path.relative_to(ROOT)} differs from strpo.py in {differ} (its value, strpo.py's)"
