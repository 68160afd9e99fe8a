"""Shared test utilities: import any training script of the repo as a module, and list the
scripts that carry a given helper, so that every copy of a repeated helper is tested."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(1)  # as the scripts do: 2+ threads spin-wait when envs share the 2 cores

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([p for p in [ROOT / "strpo.py", ROOT / "unsafe_cvar_trpo.py"] if p.exists()]
                 + sorted((ROOT / "baselines").glob("*.py")))
SCRIPTS = [p for p in SCRIPTS if p.name != "__init__.py"]
_cache = {}


def load_script(path: Path):
    """Import a script file as a module (once per test session)."""
    path = Path(path)
    if path not in _cache:
        name = "script_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _cache[path] = module
    return _cache[path]


def scripts_with(*names: str) -> list:
    """pytest params: every training script whose source defines all of `names`."""
    found = []
    for path in SCRIPTS:
        src = path.read_text()
        if all(f"def {n}(" in src or f"class {n}(" in src or f"class {n}:" in src for n in names):
            found.append(pytest.param(path, id=str(path.relative_to(ROOT))))
    return found
