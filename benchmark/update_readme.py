"""Copy generated result files into README.md, so every number there comes from a script.

README.md marks each generated block as

    <!-- include: benchmark/results/throughput.md -->
    ...(replaced by the file's content)...
    <!-- end include -->

and this script replaces the text between each pair with the current content of the named file
(a path relative to the repository root). A relative link in that file points from the file's own
folder, so it is rewritten to point from README's folder (docs/picture.md's `strpo_vs_unsafe.png`
becomes `docs/strpo_vs_unsafe.png`): every link resolves where it stands. README.md is the page
this script exists to regenerate; in a clone whose README is up to date it leaves the file as it was.
Run it after the script that writes the included file:

    python benchmark/throughput.py --repeats 3 --out benchmark/results/throughput && python benchmark/update_readme.py
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)
LINK = re.compile(r"(\]\(|(?:src|href)=\")([^)\s\"#]+)")  # a Markdown link's or an HTML src/href's target


def rebase_links(text: str, source_dir: Path, target_dir: Path) -> str:
    """Relative link targets written from source_dir, rewritten to point from target_dir."""
    def rebase(match: re.Match) -> str:
        link = match[2]
        if "://" in link or link.startswith(("/", "mailto:")):
            return match[0]
        rebased = Path(os.path.relpath(source_dir / link, target_dir)).as_posix()
        return match[1] + rebased + ("/" if link.endswith("/") else "")

    return LINK.sub(rebase, text)


def fill_includes(text: str, readme_dir: Path) -> tuple[str, list[str]]:
    """text with every included block replaced by its file's current content, links rebased to
    readme_dir; and the included paths."""
    included = []

    def fill(match: re.Match) -> str:
        source = ROOT / match["path"]
        if not source.is_file():
            raise SystemExit(f"error: README includes {match['path']}, which does not exist; run the script that writes it")
        included.append(match["path"])
        body = rebase_links(source.read_text().rstrip("\n"), source.parent, readme_dir)
        return match.group(1) + body + "\n" + match.group(4)

    return BLOCK.sub(fill, text), included


def update(readme: Path) -> list[str]:
    text, included = fill_includes(readme.read_text(), readme.parent)
    readme.write_text(text)
    return included


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md"
    for path in update(target):
        print(f"{target.name}: included {path}")
