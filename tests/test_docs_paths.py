"""Docs whose files exist: every repository path that README.md, unsafe_policies/README.md and the
pages under docs/ mention (in inline code, code blocks or links) is in the repository.

Checked where they stand: a link target from the folder of the page that contains it (README.md's
included blocks as included, i.e. from the repository root), `..` included, and it must stay inside
the repository; a path in code (commands run from the repository root) from the root: tokens whose
first component is a top-level entry (docs/..., benchmark/...) or `..`. Not checked, because they are
not files of a clean clone: URLs, paths of other repositories (omnisafe/...), paths with placeholders
({env_id}, <run>, *, NAME, ...), what a command writes (the path after --save-to, --output-dir), and
what runs write (runs/..., .venv/...).
"""
import importlib.util
import re
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "unsafe_policies" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") and p.name not in ("runs", "wandb")}
OUTPUT_FLAGS = {"--save-to", "--output-dir", "--out", "--output", "-o", ">"}  # the path after these is written
# pages that a script of the repository writes and that do not exist before it has run; each must be named
# in the script that writes it (checked below), so the docs cannot point at a file nothing produces
WRITTEN_BY = {"docs/results.md": "benchmark/aggregate.py", "docs/results/": "benchmark/aggregate.py"}
PATHLIKE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
PLACEHOLDER = re.compile(r"(^|/)([A-Z]+)(/|\.|$)")  # NAME, X, K: a folder or file the reader chooses


def mentioned_paths(text: str) -> tuple[set[str], set[str]]:
    """(paths in inline code and code blocks, link targets): code tokens whose first component is a
    top-level entry of the repository or `..`, and every relative link target."""
    chunks = re.findall(r"```.*?```", text, flags=re.S)
    rest = re.sub(r"```.*?```", " ", text, flags=re.S)
    chunks += re.findall(r"`([^`\n]+)`", rest)
    found = set()
    for chunk in chunks:
        tokens = chunk.replace("```", " ").split()
        for previous, token in zip(["", *tokens], tokens):
            token = token.strip("'\",;:()[]\\").split("=")[-1]
            if previous not in OUTPUT_FLAGS and "/" in token and token.split("/")[0] in TOP_LEVEL | {".."}:
                found.add(token)
    links = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", rest) + re.findall(r"(?:src|href)=\"([^\"#]+)\"", rest)
    links = {link for link in links if "://" not in link and not link.startswith("mailto:")}

    def kept(paths):
        return {t for t in paths if PATHLIKE.match(t) and "..." not in t and not PLACEHOLDER.search(t)}

    return kept(found), kept(links)


def exists(token: str, base: Path) -> bool:
    """token, read from the folder base, is a path of the repository (or a page a script writes)."""
    path = (base / token).resolve()
    if path != ROOT and ROOT not in path.parents:
        return False  # outside the repository: a clean clone has nothing there
    return path.exists() or any(str(path.relative_to(ROOT)).startswith(page.rstrip("/")) for page in WRITTEN_BY)


def missing_paths(doc: Path) -> list[str]:
    code, links = mentioned_paths(doc.read_text())
    return sorted({t for t in code if not exists(t, ROOT)} | {t for t in links if not exists(t, doc.parent)})


def test_pages_not_written_yet_are_named_by_the_script_that_writes_them():
    for page, script in WRITTEN_BY.items():
        assert page in (ROOT / script).read_text(), f"{script} does not write {page}"


@pytest.mark.parametrize("doc", [pytest.param(d, id=str(d.relative_to(ROOT))) for d in DOCS])
def test_every_path_a_doc_mentions_exists_where_it_stands(doc):
    missing = missing_paths(doc)
    assert not missing, f"{doc.relative_to(ROOT)} mentions paths that are not in the repository: {missing}"


def test_readmes_included_blocks_are_their_files_with_links_from_the_readme():
    """README.md's included blocks (docs/picture.md, ...) are checked as included: benchmark/update_readme.py
    must leave README.md as it is, so each block is its file with the file's links rebased to the root."""
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "benchmark" / "update_readme.py")
    update_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_readme)
    readme = (ROOT / "README.md").read_text()
    filled, included = update_readme.fill_includes(readme, ROOT)
    assert "docs/picture.md" in included
    assert filled == readme, "README.md is stale: run python benchmark/update_readme.py"
    assert update_readme.rebase_links("![a](strpo_vs_unsafe.png) [b](../README.md#x) [c](https://x.org/a)",
                                      ROOT / "docs", ROOT) == "![a](docs/strpo_vs_unsafe.png) [b](README.md#x) [c](https://x.org/a)"


def test_the_check_finds_a_missing_path_and_reads_links_from_their_page(tmp_path):
    assert mentioned_paths("see `docs/runs/no_such_file.csv` and [x](docs/nothing.md); "
                           "`python x.py --save-to unsafe_policies/new.pt`, `omnisafe/cpo.py`, `../shared/x.md`") == (
        {"docs/runs/no_such_file.csv", "../shared/x.md"}, {"docs/nothing.md"})
    assert not exists("docs/runs/no_such_file.csv", ROOT)
    assert not exists("../shared/x.md", ROOT)  # outside the repository: not in a clean clone
    page = ROOT / "docs" / "picture.md"
    assert exists("strpo_vs_unsafe.png", page.parent) and not exists("docs/strpo_vs_unsafe.png", page.parent)
    assert exists("../README.md", page.parent) and not exists("../../README.md", page.parent)


def test_the_readmes_install_sentence_is_what_the_makefile_does():
    """`make strpo` installs requirements.txt alone; `make test` also requirements-benchmark.txt."""
    make = (ROOT / "Makefile").read_text()

    def rule(target: str) -> tuple[list[str], str]:  # a target's prerequisites and recipe
        found = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n|\t.*$)*)", make, flags=re.M)
        return found[1].split(), found[2]

    assert rule("strpo")[0] == ["venv"] and rule("venv")[0] == ["$(VENV)/.installed"]
    prerequisites, recipe = rule("$(VENV)/.installed")
    assert prerequisites == ["requirements.txt"] and "-r requirements.txt" in recipe and "benchmark" not in recipe
    assert rule("test")[0] == ["venv-benchmark"] and rule("venv-benchmark")[0] == ["$(VENV)/.installed-benchmark"]
    assert "-r requirements-benchmark.txt" in rule("$(VENV)/.installed-benchmark")[1]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`make strpo` installs `requirements.txt` alone" in readme
    assert "`make test` also installs `requirements-benchmark.txt`" in readme
