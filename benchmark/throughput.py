"""Training throughput against the raw environment, measured in one invocation.

For each (training script, task) pair, back to back so that machine load affects both alike:

(a) raw: the vector env the script itself builds (its own `make_vector_env(env_id, num_envs,
    vector_mode)` with its default `Args().num_envs` and `vector_mode`), stepped with uniformly random
    actions (drawn before the clock starts) for `--steps` steps in total over all envs, auto-reset
    included. Building the env and its first reset are timed separately and reported, not counted.
(b) train: the script's `main(Args(env_id=..., total_timesteps=N, steps_per_epoch=min(15000, N),
    output_dir=<tmp dir>))` run in-process (the script imported by path). Its speed is read from the
    run's progress.csv: total steps / sum over epochs of (epoch batch / epoch sps), i.e. the epoch
    loop only (rollout + update + logging), which leaves out env construction and startup the same
    way as (a).

The ratio train/raw says how much of the raw env speed the training loop keeps. Targets (printed next
to the ratios, never asserted; `ratio_target`): on SafetyHopperVelocity-v1 >= 0.6 for the trust-region
scripts and >= 0.4 for the PPO family, on SafetyCarCircle1-v0 >= 0.85, each script with its default
env count. With `--repeats R` every pair is
measured R times (raw then train each time) and the table gives medians; the ratio is the median of
the per-repeat ratios, each from a raw and a train run made back to back.

    python benchmark/throughput.py --repeats 3 --out benchmark/results/throughput   # the README's table (idle machine)
    python benchmark/throughput.py --steps 4000 --env-ids SafetyHopperVelocity-v1
    python benchmark/throughput.py --scripts strpo.py --env-ids SafetyHopperVelocity-v1 --profile

Writes {out}.csv and {out}.md (machine facts, N, then one row per pair), by default under runs/throughput/;
the README's table is rewritten only with `--out benchmark/results/throughput`. `--profile` runs the
training part under cProfile, prints the top 25 functions by cumulative time and adds to {out}.md, per
pair, the share of main()'s time spent in the vector env's step and in each of the script's own
functions (its rows are then slower than an unprofiled run and are marked so). The README's profile:

    python benchmark/throughput.py --scripts strpo.py --env-ids SafetyHopperVelocity-v1 --profile --out benchmark/results/strpo_profile
"""
from __future__ import annotations

import cProfile
import csv
import difflib
import importlib.util
import io
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  load triton before MuJoCo: after MuJoCo's EGL (MUJOCO_GL=egl) it segfaults
import tyro

try:  # gymnasium-robotics prints a notice about its Adroit hand tasks at import; these tasks are not those
    import farama_notifications

    farama_notifications.notifications.pop("gymnasium_robotics", None)
except ImportError:
    pass

torch.set_num_threads(1)  # as the training scripts do: 2+ threads spin-wait when envs share the cores

ROOT = Path(__file__).resolve().parents[1]
TRAINING_SCRIPTS = ["strpo.py", "unsafe_cvar_trpo.py", "trpo_lag.py", "cpo.py", "pcpo.py", "rcpo.py",
                    "ppo_lag.py", "cppo_pid.py", "cup.py", "focops.py"]
PPO_FAMILY = ("ppo_lag.py", "cppo_pid.py", "cup.py", "focops.py")  # many Adam passes per epoch: a lower Hopper target


def ratio_target(script: str, env_id: str) -> float:
    """The training/raw speed ratio a script should reach on a task (NaN: no target there).
    Hopper's env is so cheap that the update dominates: 0.6 for the one-update-per-epoch trust-region
    scripts, 0.4 for the PPO family; on CarCircle1 0.85 for every script, set when a reset took ~1.1 s
    and the env dominated (since `without_skybox` it takes ~0.02 s, and the update shows there too)."""
    if env_id == "SafetyCarCircle1-v0":
        return 0.85
    if env_id == "SafetyHopperVelocity-v1":
        return 0.4 if script in PPO_FAMILY else 0.6
    return float("nan")
MAX_STEPS_PER_EPOCH = 15_000  # the scripts' default epoch, so a default run times two real epochs
PROFILE_TOP = 25
PROFILE_MIN_SHARE = 0.05  # the profile split lists the script's functions that take at least this share of main()


@dataclass
class Args:
    scripts: list[str] = field(default_factory=lambda: list(TRAINING_SCRIPTS))
    """training scripts to measure: a path, or a name under the repository root or baselines/ (e.g. ppo_lag.py)"""
    env_ids: list[str] = field(default_factory=lambda: ["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"])
    """Safety-Gymnasium tasks to measure each script on"""
    steps: int = 30_000
    """N: env steps for the raw run and total_timesteps of the training run (30000 = two epochs of 15000)"""
    out: str = str(ROOT / "runs" / "throughput" / "throughput")
    """output path without suffix: {out}.csv and {out}.md are written (benchmark/results/throughput: the README's table)"""
    repeats: int = 1
    """measurements per pair (raw then train each time); the table gives medians"""
    profile: bool = False
    """run the training part under cProfile: print the top 25 functions, and tabulate where main() spends its time"""
    seed: int = 1
    """seed of the raw run's resets and random actions, and of the training runs"""


# ----------------------------------------------------------------------------------------------
# Argument checks and script loading
# ----------------------------------------------------------------------------------------------
def resolve_script(name: str) -> Path:
    """A script named by path, or by file name under the root or baselines/."""
    for candidate in (Path(name), ROOT / name, ROOT / "baselines" / name, ROOT / "baselines" / Path(name).name):
        if candidate.is_file() and candidate.suffix == ".py":
            return candidate.resolve()
    known = [p.name for p in [ROOT / "strpo.py", ROOT / "unsafe_cvar_trpo.py", *sorted((ROOT / "baselines").glob("*.py"))]
             if p.is_file()]
    close = difflib.get_close_matches(Path(name).name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {' '.join(known)}"
    raise SystemExit(f"error: no training script {name!r}{hint}")


def load_script(path: Path):
    """Import a training script as a module (by path, once per invocation)."""
    name = "throughput_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for needed in ("Args", "main", "make_vector_env"):
        if not hasattr(module, needed):
            raise SystemExit(f"error: {path.name} has no {needed}; it is not a training script of this repository")
    return module


def safety_env_ids() -> list[str]:
    import gymnasium
    import safety_gymnasium  # noqa: F401  (registers the Safety* ids)

    return sorted(k for k in gymnasium.envs.registry.keys() if k.startswith("Safety"))


def validate_args(args: Args) -> None:
    """One-line errors for bad input, raised before anything is measured."""
    if args.steps <= 0:
        raise SystemExit(f"error: --steps must be positive, got {args.steps}")
    if args.repeats <= 0:
        raise SystemExit(f"error: --repeats must be positive, got {args.repeats}")
    if not args.scripts or not args.env_ids:
        raise SystemExit("error: --scripts and --env-ids each need at least one value")
    ids = safety_env_ids()
    for env_id in args.env_ids:
        if env_id not in ids:
            close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
            raise SystemExit(f"error: unknown env id {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


# ----------------------------------------------------------------------------------------------
# The two measurements
# ----------------------------------------------------------------------------------------------
def measure_raw(module, env_id: str, num_envs: int, vector_mode: str, steps: int, seed: int) -> dict:
    """Step the script's own vector env with uniform random actions; construction timed apart."""
    t0 = time.perf_counter()
    envs = module.make_vector_env(env_id, num_envs, vector_mode)
    envs.reset(seed=seed)
    construct_s = time.perf_counter() - t0
    iters = steps // num_envs  # as the scripts: num_steps = steps_per_epoch // num_envs per epoch
    low, high = envs.single_action_space.low, envs.single_action_space.high
    actions = np.random.default_rng(seed).uniform(low, high, size=(iters, num_envs, low.shape[0])).astype(np.float32)
    try:
        t0 = time.perf_counter()
        for t in range(iters):
            envs.step(actions[t])  # auto-reset of finished envs happens inside, and is counted
        elapsed = time.perf_counter() - t0
        vector_env = type(envs).__name__
    finally:
        envs.close()
    return {"raw_sps": iters * num_envs / elapsed, "env_construct_s": construct_s, "vector_env": vector_env}


def epoch_loop_sps(progress_csv: Path) -> float:
    """Total steps / sum of epoch wall times (batch / sps per row) from a run's progress.csv."""
    with open(progress_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RuntimeError(f"{progress_csv} has no epoch rows")
    total_steps, total_time, prev_step = 0, 0.0, 0
    for row in rows:
        batch = int(row["global_step"]) - prev_step
        prev_step = int(row["global_step"])
        total_steps += batch
        total_time += batch / float(row["sps"])
    return total_steps / total_time


def profile_split(stats: pstats.Stats, script: Path) -> list[tuple[str, float, float]]:
    """Where main() spends its time: (function, cumulative s, share of main's time) for the vector env's step and
    every function or method of the script itself that takes at least PROFILE_MIN_SHARE of main, largest first.
    Cumulative times nest (Rollout.collect includes the env step), so the shares do not add up to 1."""
    entries = stats.stats  # (file, line, name) -> (primitive calls, calls, own time, cumulative time, callers)
    own = {key: value[3] for key, value in entries.items() if Path(key[0]).resolve() == script.resolve()}
    total = max((t for (_, _, name), t in own.items() if name == "main"), default=0.0)
    if total <= 0:
        return []
    env_step = max((v[3] for (file, _, name), v in entries.items()
                    if name == "step" and f"{os.sep}vector{os.sep}" in file and "gymnasium" in file), default=0.0)
    rows = [("the vector env's step (reset included)", env_step, env_step / total)]
    rows += [(f"{script.name}: {name} (line {line})", t, t / total) for (_, line, name), t in own.items()
             if name != "main" and not name.startswith("<") and t / total >= PROFILE_MIN_SHARE]  # no <listcomp>s
    return sorted(rows, key=lambda row: -row[1])


def measure_train(module, env_id: str, steps: int, seed: int, profile: bool) -> tuple[float, str, list]:
    """Run the script's main in-process on a temporary output folder; returns (sps, profile text, profile split)."""
    arg_names = {f.name for f in fields(module.Args)}
    kwargs = dict(env_id=env_id, total_timesteps=steps, steps_per_epoch=min(MAX_STEPS_PER_EPOCH, steps), seed=seed)
    if "unsafe_policy_path" in arg_names:  # sTRPO: the shipped pi_unsafe, wherever we are run from
        kwargs["unsafe_policy_path"] = str(ROOT / "unsafe_policies" / f"{env_id}.pt")
    report, split = "", []
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        run_args = module.Args(output_dir=tmp, **kwargs)
        if profile:
            profiler = cProfile.Profile()
            run_dir = profiler.runcall(module.main, run_args)
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
            report, split = text.getvalue(), profile_split(stats, Path(module.__file__))
        else:
            run_dir = module.main(run_args)
        sps = epoch_loop_sps(Path(run_dir) / "progress.csv")
    return sps, report, split


def skip_reason(module, env_id: str) -> str:
    """Why a pair cannot run, or '' (sTRPO needs a pi_unsafe for the task)."""
    if "unsafe_policy_path" in {f.name for f in fields(module.Args)}:
        path = ROOT / "unsafe_policies" / f"{env_id}.pt"
        if not path.is_file():
            return f"no pi_unsafe at {path.relative_to(ROOT)}"
    return ""


def measure_pair(script: Path, env_id: str, args: Args) -> dict:
    module = load_script(script)
    defaults = module.Args()
    row = {"script": script.name, "env_id": env_id, "num_envs": defaults.num_envs, "vector_mode": defaults.vector_mode,
           "vector_env": "", "steps": args.steps, "repeats": args.repeats, "env_construct_s": float("nan"),
           "raw_sps": float("nan"), "train_sps": float("nan"), "ratio": float("nan"),
           "target": ratio_target(script.name, env_id), "meets_target": "", "status": "ok", "note": "", "profile": []}
    reason = skip_reason(module, env_id)
    if reason:
        row.update(status="skipped", note=reason)
        print(f"[throughput] {script.name} on {env_id}: skipped ({reason})", flush=True)
        return row
    raws, trains, ratios, constructs = [], [], [], []
    for rep in range(args.repeats):
        print(f"[throughput] {script.name} on {env_id} (repeat {rep + 1}/{args.repeats}): raw env, "
              f"{defaults.num_envs} envs, {args.steps} steps", flush=True)
        raw = measure_raw(module, env_id, defaults.num_envs, defaults.vector_mode, args.steps, args.seed)
        print(f"[throughput]   raw {raw['raw_sps']:.0f} steps/s ({raw['vector_env']}, built in {raw['env_construct_s']:.2f} s); "
              f"training...", flush=True)
        try:
            train_sps, report, split = measure_train(module, env_id, args.steps, args.seed, args.profile)
        except SystemExit as exc:  # the script's own one-line error: report the pair, keep going
            row.update(status="failed", note=str(exc).replace("\n", " "), vector_env=raw["vector_env"])
            print(f"[throughput]   failed: {exc}", flush=True)
            return row
        if report:
            print(f"[throughput] cProfile of {script.name} on {env_id}, top {PROFILE_TOP} by cumulative time:\n{report}",
                  flush=True)
        print(f"[throughput]   train {train_sps:.0f} steps/s, ratio {train_sps / raw['raw_sps']:.2f}", flush=True)
        if split:
            row["profile"].append(split)
        raws.append(raw["raw_sps"]); trains.append(train_sps); constructs.append(raw["env_construct_s"])
        ratios.append(train_sps / raw["raw_sps"])
        row["vector_env"] = raw["vector_env"]
    row.update(raw_sps=statistics.median(raws), train_sps=statistics.median(trains), ratio=statistics.median(ratios),
               env_construct_s=statistics.median(constructs))
    if row["target"] == row["target"]:
        row["meets_target"] = "yes" if row["ratio"] >= row["target"] else "no"
    if args.profile:
        row["note"] = "profiled (cProfile slows training)"
    return row


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def git_commit() -> str:
    """The commit of the measured code (HEAD, 7 characters), +dirty when its tracked files differ from it;
    unknown without git or a repository."""
    out = subprocess.run("git rev-parse --verify -q --short=7 HEAD && git status --porcelain -uno", shell=True, cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    return out[0] + ("+dirty" if out[1:] else "") if out else "unknown"


def machine_facts(args: Args) -> dict:
    import mujoco
    import safety_gymnasium

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_commit": git_commit(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "safety_gymnasium": getattr(safety_gymnasium, "__version__", "unknown"),
        "mujoco": mujoco.__version__,
        "platform": platform.platform(),
        "steps_N": args.steps,
        "repeats": args.repeats,
        "load_avg_1min_start": round(os.getloadavg()[0], 2),
    }


def fmt(value, digits: int = 0) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.{digits}f}"
    return str(value) if value != "" else "-"


def markdown(rows: list[dict], facts: dict) -> str:
    profiled = any(r["profile"] for r in rows)
    lines = ["# Training throughput against the raw environment" + (", and where the time goes" if profiled else ""), "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), "",
             "train = steps/s of the epoch loop (rollout + update) from progress.csv; raw = the script's own vector env "
             "with uniform random actions; ratio = train / raw (median over repeats); target = the ratio a script should "
             "reach (0.6 on Hopper for the trust-region scripts, 0.4 for the PPO family, 0.85 on CarCircle1).", "",
             "| script | env | envs | vector env | env build (s) | raw steps/s | train steps/s | ratio | target | meets | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r["status"] + (f": {r['note']}" if r["note"] else "")
        lines.append(f"| {r['script']} | {r['env_id']} | {r['num_envs']} | {fmt(r['vector_env'])} | "
                     f"{fmt(r['env_construct_s'], 2)} | {fmt(r['raw_sps'])} | {fmt(r['train_sps'])} | {fmt(r['ratio'], 2)} | "
                     f"{'>= ' + fmt(r['target'], 2) if r['target'] == r['target'] else '-'} | {fmt(r['meets_target'])} | {status} |")
    for r in rows:  # with --profile: where main() spent its time, one table per repeat
        for rep, split in enumerate(r["profile"], 1):
            lines += ["", f"Where {r['script']}'s main() spends its time on {r['env_id']} (cProfile, repeat {rep} of "
                      f"{len(r['profile'])}; cumulative times nest, so the shares do not add up to 1):", "",
                      "| function | cumulative s | share of main() |", "|---|---|---|"]
            lines += [f"| {name} | {seconds:.1f} | {share:.0%} |" for name, seconds, share in split]
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], facts: dict, out: Path) -> tuple[Path, Path]:
    if out.suffix in (".csv", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out.with_name(out.name + ".csv"), out.with_name(out.name + ".md")
    fact_cols = ["date", "git_commit", "nproc", "torch_threads", "python", "torch", "load_avg_1min_start"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "profile"] + fact_cols, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, **{k: facts[k] for k in fact_cols}})
    md_path.write_text(markdown(rows, facts))
    return csv_path, md_path


def main(args: Args) -> tuple[Path, Path]:
    """Measure every (script, task) pair; returns the paths of the CSV and markdown written."""
    validate_args(args)
    scripts = [resolve_script(s) for s in args.scripts]
    for script in scripts:  # import all first so a bad script fails before minutes of measuring
        module = load_script(script)
        if args.steps < module.Args().num_envs:
            raise SystemExit(f"error: --steps ({args.steps}) must be at least {script.name}'s num_envs ({module.Args().num_envs})")
    facts = machine_facts(args)
    rows = [measure_pair(script, env_id, args) for script in scripts for env_id in args.env_ids]
    facts["torch_threads"] = torch.get_num_threads()  # as the scripts left it (they set it in main)
    csv_path, md_path = write_outputs(rows, facts, Path(args.out))
    print()
    print(markdown(rows, facts))
    print(f"wrote {csv_path} and {md_path}")
    return csv_path, md_path


if __name__ == "__main__":
    main(tyro.cli(Args))
