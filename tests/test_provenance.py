"""The repository stands alone: no tracked file points outside it (a user's clone has no ../shared), and
the peer reference runs the docs compare with are in it."""
import subprocess
import sys

from conftest import ROOT

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


def test_the_parity_table_reads_the_peer_runs_committed_in_the_repository():
    out = subprocess.run([sys.executable, "benchmark/parity_table.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.count("| OmniSafe 0.5.0 | 3 |") == 3 and "(no runs)" not in out
