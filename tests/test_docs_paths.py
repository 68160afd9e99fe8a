"""Docs whose files exist: every repository path that README.md, unsafe_policies/README.md and the
pages under docs/ mention (in inline code, code blocks or links) is in the repository.

Checked: tokens whose first component is a top-level entry of the repository (docs/..., benchmark/...),
and link targets. Not checked, because they are not files of a clean clone: URLs, paths of other
repositories (omnisafe/...), paths with placeholders ({env_id}, <run>, *, NAME, ...), what a command
writes (the path after --save-to, --output-dir), and what runs write (runs/..., .venv/...).
"""
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


def mentioned_paths(text: str) -> set[str]:
    """Repository paths in inline code, code blocks and link targets: tokens whose first component
    is a top-level entry of the repository (or, for links, that resolve next to the page)."""
    chunks = re.findall(r"```.*?```", text, flags=re.S)
    rest = re.sub(r"```.*?```", " ", text, flags=re.S)
    chunks += re.findall(r"`([^`\n]+)`", rest)
    found = set()
    for chunk in chunks:
        tokens = chunk.replace("```", " ").split()
        for previous, token in zip(["", *tokens], tokens):
            token = token.strip("'\",;:()[]\\").split("=")[-1]
            if previous not in OUTPUT_FLAGS and "/" in token and token.split("/")[0] in TOP_LEVEL:
                found.add(token)
    links = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", rest) + re.findall(r"(?:src|href)=\"([^\"#]+)\"", rest)
    found.update(link for link in links if "://" not in link and not link.startswith("mailto:"))
    return {t for t in found if PATHLIKE.match(t) and "..." not in t and not PLACEHOLDER.search(t)}


def exists(token: str, doc: Path) -> bool:
    if any(token.startswith(page) for page in WRITTEN_BY):
        return True
    return (ROOT / token).exists() or (doc.parent / token).exists()


def test_pages_not_written_yet_are_named_by_the_script_that_writes_them():
    for page, script in WRITTEN_BY.items():
        assert page in (ROOT / script).read_text(), f"{script} does not write {page}"


@pytest.mark.parametrize("doc", [pytest.param(d, id=str(d.relative_to(ROOT))) for d in DOCS])
def test_every_path_a_doc_mentions_exists(doc):
    missing = sorted(t for t in mentioned_paths(doc.read_text()) if not exists(t, doc))
    assert not missing, f"{doc.relative_to(ROOT)} mentions paths that are not in the repository: {missing}"


def test_the_check_finds_a_missing_path():
    assert mentioned_paths("see `docs/runs/no_such_file.csv` and [x](docs/nothing.md); "
                           "`python x.py --save-to unsafe_policies/new.pt`, `omnisafe/cpo.py`") == {
        "docs/runs/no_such_file.csv", "docs/nothing.md"}
    assert not exists("docs/runs/no_such_file.csv", ROOT / "README.md")
