"""Bad flags are one-line errors raised before any env is built, in every training script: a NaN or an
infinity in any float flag (one generic check over the Args fields), a non-positive count."""
import math
import subprocess
import sys
from dataclasses import fields

import pytest

from conftest import ROOT, SCRIPTS, load_script

PARAMS = [pytest.param(p, id=str(p.relative_to(ROOT))) for p in SCRIPTS]


def one_line_error(call) -> str:
    with pytest.raises(SystemExit) as exc:
        call()
    msg = str(exc.value)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("path", PARAMS)
def test_every_float_flag_rejects_nan_and_infinity(path):
    m = load_script(path)
    float_fields = [f.name for f in fields(m.Args) if f.type == "float"]
    assert "cost_limit" in float_fields
    for name in float_fields:
        for bad in (math.nan, math.inf, -math.inf):
            args = m.Args(env_id="SafetyHopperVelocity-v1", **{name: bad})
            msg = one_line_error(lambda: m.validate_args(args))
            assert f"--{name.replace('_', '-')} must be a finite number" in msg, msg


@pytest.mark.parametrize("path", PARAMS)
def test_every_count_flag_must_be_positive(path):
    m = load_script(path)
    for f in fields(m.Args):
        if f.type == "int" and f.name != "seed":
            args = m.Args(env_id="SafetyHopperVelocity-v1", **{f.name: 0})
            assert f"--{f.name.replace('_', '-')} must be positive" in one_line_error(lambda: m.validate_args(args))


COMMANDS = [[p, "--cost-limit", "nan"] for p in PARAMS] + [
    [pytest.param(ROOT / "strpo.py", id="strpo.py"), "--cost-limit", "inf"],
    [pytest.param(ROOT / "strpo.py", id="strpo.py"), "--delta1", "inf"],
    [pytest.param(ROOT / "baselines" / "ppo_lag.py", id="baselines/ppo_lag.py"), "--cost-limit", "inf"]]


@pytest.mark.parametrize("script,flag,value", [pytest.param(c[0].values[0], c[1], c[2], id=f"{c[0].id} {c[1]} {c[2]}")
                                               for c in COMMANDS])
def test_a_non_finite_flag_on_the_command_line_is_one_error_line_before_any_env(script, flag, value, tmp_path):
    result = subprocess.run([sys.executable, str(script), "--env-id", "SafetyHopperVelocity-v1", flag, value,
                             "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {flag} must be a finite number, got {float(value)}", result.stderr
    assert not any(tmp_path.iterdir()), "a run folder was made"
