"""Copy generated result files into README.md, so every number there comes from a script.

README.md marks each generated block as

    <!-- include: benchmark/results/throughput.md -->
    ...(replaced by the file's content)...
    <!-- end include -->

and this script replaces the text between each pair with the current content of the named file
(a path relative to the repository root). Run it after the script that writes the file:

    python benchmark/throughput.py --repeats 3 && python benchmark/update_readme.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def update(readme: Path) -> list[str]:
    text = readme.read_text()
    included = []

    def fill(match: re.Match) -> str:
        source = ROOT / match["path"]
        if not source.is_file():
            raise SystemExit(f"error: {readme.name} includes {match['path']}, which does not exist; run the script that writes it")
        included.append(match["path"])
        return match.group(1) + source.read_text().rstrip("\n") + "\n" + match.group(4)

    readme.write_text(BLOCK.sub(fill, text))
    return included


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md"
    for path in update(target):
        print(f"{target.name}: included {path}")
