"""The paper's experiment matrix (section 5, appendices C and D), run as Ray tasks.

A *matrix* is a list of runs, each one (script, env id, seed, extra flags) plus its budget. Presets
build the paper's matrices; `--algos/--env-ids/--seeds/--filter` narrow them. Every run is ONE Ray
task (`ray.remote(num_cpus=...)`) that starts ONE training subprocess and waits for it; Ray does all
the scheduling, locally (`ray.init()` starts a pool of `--workers` CPUs, default one per core) or on
an existing cluster (`--address`). There is no scheduler and no job script in this file.

Folders. Run NAME writes everything under `{root}/NAME/` (default root runs/matrix/), a name without
timestamp so that the same matrix finds its runs again:

    {root}/NAME/run.json                          what was run (script, flags, budget, command, times, exit code)
    {root}/NAME/log.txt                           the subprocess's stdout and stderr, every attempt
    {root}/NAME/{env}__{exp}__{seed}__{time}/     the script's own run folder (--output-dir {root}/NAME)
        progress.csv  config.json  resume.pt (every epoch)  {exp}.pt (at the end)

Skip / resume decisions (`plan_run`), made again for every run each time the matrix is started:
- finished: some subfolder holds the final checkpoint `{exp}.pt` (robustness: robustness.csv), or a
  progress.csv that reached the budget (a published record: docs/runs/matrix has no checkpoints) -> skipped;
- interrupted: a subfolder has progress.csv but no final checkpoint -> continued with
  `--resume <that subfolder>` (the most advanced one) when it holds the resume.pt that the scripts
  write at every epoch end and the script's `--help` lists `--resume`; otherwise (stopped inside its
  first epoch) started from scratch in a fresh timestamped subfolder (the partial one stays;
  aggregate.py keeps the longest progress.csv of a run);
- new: nothing there yet -> started.
A run whose run.json records another budget or other flags than the matrix asks for is refused
(`mismatch`): use another `--root` for a different budget. Before launching, each script's `--help`
must list every flag its runs pass (`--no-check-flags` skips this), so that a matrix written for a
newer script fails at once rather than run by run.

Dependencies are Ray object references, not polling: the π_unsafe ablation's sTRPO runs take the
checkpoint of an `unsafe_cvar_trpo.py` run, the robustness runs take the final checkpoints of `main`.
A flag value `@ckpt:NAME/FILE.pt` stands for that run's checkpoint and is resolved when the task starts
(after its inputs finished); a run whose inputs are missing is reported as blocked.

CPU needs: navigation tasks (ids with Goal, Circle, Button or Push, not Velocity) step their envs in
async subprocesses (the scripts' `--vector-mode auto`) and reserve `--nav-cpus` CPUs; velocity tasks
(sync envs) and everything with `--vector-mode sync` reserve one. The default is 1: since the scripts
skip the skybox at reset (`without_skybox`), an async navigation run no longer waits on its envs,
and two side by side on 2 cores train more steps per second in total than one given both (compare
the sps column of the navigation runs in docs/runs/matrix/, run two at a time, with the single-run
rows of benchmark/results/throughput.md); `--nav-cpus 2` gives each run its own two.

Presets (seeds 0-2; 15,000-step epochs; velocity tasks 450k steps, navigation tasks 300k):
- main: the nine algorithms (sTRPO + 8 baselines) x the four paper tasks;
- ablation-delta (C.1), ablation-lambda2 (C.3), ablation-components (C.4): sTRPO variants on
  SafetyHopperVelocity-v1; ablation-unsafe (C.2): pi_unsafe trained with the CVaR or the mean critic
  on Hopper and CarCircle1, and sTRPO given each; ablation-unsafe-strength: sTRPO (seeds 0-4) against
  the policies that collected epochs of C.2's CVaR pi_unsafe run of seed 0; `ablations` = all five;
- robustness (D): robustness_attack.py on the final checkpoints of `main` for the four paper tasks,
  attack rates 0, 0.2, ..., 1.0, one call per (task, seed) with the nine algorithms, plus the same
  checkpoints evaluated with sampled actions at rate 0 (`{task}__robustness-stochastic__{seed}`: training
  samples its actions, the paper's evaluation takes the mean one); with `--algos`, one call per (task,
  seed) with just those algorithms' checkpoints, named `{task}__robustness-{algos}__{seed}` (e.g. after
  sTRPO's main runs are redone; aggregate.py takes each checkpoint's rows from its newest sweep);
- all: everything above.
Presets beyond the paper's matrix (not in `all`):
- seeds: seeds 0-9 of sTRPO, CPO, CPPO-PID and CUP on SafetyHopperVelocity-v1 and SafetyCarCircle1-v0 at
  the budgets of `main`, plus sTRPO with `--delta2 0.01` (the main text's single delta) on both tasks; a
  run that `main` has too (same script, task, seed, flags, budget) has main's name and group, so its
  folder is found and skipped, never run twice;
- long: sTRPO, CPO, CPPO-PID, CUP and PPO-Lag, seeds 0-2, on SafetyCarCircle1-v0 at 1,000,000 steps and
  SafetyAntVelocity-v1 at 2,000,000 (names end in `__long__SEED`: another budget, another folder).

Provenance: every run.json records the git commit of the repository and whether its tracked files had
uncommitted changes (`git_commit`, `git_dirty`), the CPU (`cpu`: model and SIMD extensions, which decide how
torch's and MKL's kernels round), and the command as run from the repository root with relative paths
(`python strpo.py ...`; the subprocess itself uses this interpreter, sys.executable).

wandb: `--track` passes `--track --wandb-project-name P [--wandb-entity E]` to every training run and, in
its environment, WANDB_RUN_GROUP = `{group}__{env_id}` (the page's sections), WANDB_JOB_TYPE = the
algorithm and variant, WANDB_TAGS = algorithm, variant, preset, task; with WANDB_MODE=offline the runs
land in each run folder's wandb/ for `wandb sync`. Tracking does not change a run, so it is not part of
what run.json must match (a tracked matrix reuses untracked runs and the other way round).

    python benchmark/run.py --preset main --dry-run                 # print the 108 commands
    python benchmark/run.py --preset main                           # run them on a local pool
    python benchmark/run.py --preset main --filter Hopper '__(strpo|cpo)__'
    python benchmark/run.py --preset ablations robustness --address auto   # on a running Ray cluster
    python benchmark/run.py --preset seeds --dry-run                # main's seeds 0-2 skip, the rest start
    WANDB_MODE=offline python benchmark/run.py --preset main --track   # then: wandb sync runs/matrix/*/*/wandb/offline-run-*
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import tyro

ROOT = Path(__file__).resolve().parents[1]

# The paper's comparison (section 5.1): sTRPO and the eight baselines of this repository.
ALGORITHMS = {
    "strpo": "strpo.py",
    "trpo_lag": "baselines/trpo_lag.py",
    "cpo": "baselines/cpo.py",
    "ppo_lag": "baselines/ppo_lag.py",
    "cppo_pid": "baselines/cppo_pid.py",
    "rcpo": "baselines/rcpo.py",
    "pcpo": "baselines/pcpo.py",
    "cup": "baselines/cup.py",
    "focops": "baselines/focops.py",
}
PAPER_TASKS = ("SafetyCarCircle1-v0", "SafetyCarGoal1-v0", "SafetyAntVelocity-v1", "SafetyHopperVelocity-v1")
NAVIGATION_TASKS = ("SafetyCarCircle1-v0", "SafetyCarGoal1-v0")
ABLATION_TASK = "SafetyHopperVelocity-v1"
SEEDS = (0, 1, 2)
# Budget this machine finishes (issue 15's proposal), set when navigation runs were env-bound; since
# without_skybox they are 2-3x faster (benchmark/results/throughput.md).
VELOCITY_STEPS = 450_000
NAVIGATION_STEPS = 300_000
STEPS_PER_EPOCH = 15_000  # the paper's epoch (5.2) and every script's default
UNSAFE_TASKS = ("SafetyHopperVelocity-v1", "SafetyCarCircle1-v0")  # C.2: pi_unsafe's critics compared on both kinds of task
UNSAFE_STEPS = 450_000  # the Hopper pi_unsafe's budget in C.2 (CarCircle1: the navigation budget)
# ablation-unsafe-strength: sTRPO (5 seeds) against the policies that collected these epochs of C.2's CVaR pi_unsafe
# run of seed 0, from its untrained policy (epoch 1) to the one of its last epoch; progress.csv's ep_cost of epoch k is
# that policy's own episode cost
STRENGTH_EPOCHS = {"SafetyHopperVelocity-v1": (1, 10, 20, 30), "SafetyCarCircle1-v0": (1, 7, 14, 20)}
STRENGTH_SEEDS = (0, 1, 2, 3, 4)
ROBUSTNESS_RATES = ("0.0", "0.2", "0.4", "0.6", "0.8", "1.0")
NAVIGATION_WORDS = ("Goal", "Circle", "Button", "Push")
PRESETS = ("main", "ablation-delta", "ablation-lambda2", "ablation-unsafe", "ablation-components",
           "ablation-unsafe-strength", "robustness")
EXTRA_PRESETS = ("seeds", "long")  # beyond the paper's matrix: not in `all`
SEEDS_ALGOS = ("strpo", "cpo", "cppo_pid", "cup")  # the `seeds` preset: sTRPO and the three closest baselines
SEEDS_TASKS = ("SafetyHopperVelocity-v1", "SafetyCarCircle1-v0")
MANY_SEEDS = tuple(range(10))
LONG_ALGOS = ("strpo", "cpo", "cppo_pid", "cup", "ppo_lag")
LONG_STEPS = {"SafetyCarCircle1-v0": 1_000_000, "SafetyAntVelocity-v1": 2_000_000}
ALIASES = {"ablations": ("ablation-delta", "ablation-lambda2", "ablation-unsafe", "ablation-components",
                         "ablation-unsafe-strength"),
           "all": PRESETS}
POLL_SECONDS = 2.0
OBJECT_STORE_BYTES = 100 * 1024**2  # tasks pass only small status dicts; Ray's default takes 30% of the RAM


@dataclass
class Args:
    preset: list[str] = field(default_factory=lambda: ["main"])
    """presets to run: main, ablation-delta, ablation-lambda2, ablation-unsafe, ablation-components,
    ablation-unsafe-strength, robustness; `ablations` = the five ablations, `all` = all of those; beyond the paper: seeds, long"""
    root: str = "runs/matrix"
    """folder of the runs' stable folders (relative paths are taken from the repository root)"""
    filter: list[str] = field(default_factory=list)
    """keep only runs whose name matches every one of these regular expressions (--filter Hopper __cpo__)"""
    algos: Optional[list[str]] = None
    """keep only these algorithms (script stems, e.g. strpo ppo_lag)"""
    env_ids: Optional[list[str]] = None
    """keep only these tasks"""
    seeds: Optional[list[int]] = None
    """seeds instead of the presets' own (0 1 2; the seeds preset 0-9)"""
    dry_run: bool = False
    """print each run's decision and command, run nothing"""
    workers: Optional[int] = None
    """CPUs of the local Ray pool; default one per core (ignored with --address)"""
    address: Optional[str] = None
    """address of an existing Ray cluster (`auto` for the one started on this machine by `ray start`)"""
    nav_cpus: int = 1
    """CPUs reserved by a navigation run with async envs (velocity and sync runs reserve 1)"""
    total_timesteps: Optional[int] = None
    """override every training run's budget (smoke tests); the stable folders then refuse the real budget"""
    steps_per_epoch: Optional[int] = None
    """override the 15,000-step epoch"""
    num_envs: Optional[int] = None
    """pass --num-envs to every training run (default: the scripts' own)"""
    robustness_episodes: int = 20
    """episodes per attack rate and checkpoint in the robustness preset (paper: 1000)"""
    check_flags: bool = True
    """before launching, check with each script's --help that it knows every flag its runs pass"""
    track: bool = False
    """log every training run to wandb (passes the scripts' --track; WANDB_MODE=offline works without an
    account, then `wandb sync`); group = preset group and task, job type and tags = algorithm and variant"""
    wandb_project: str = "strpo"
    """wandb project of the runs (the scripts' --wandb-project-name)"""
    wandb_entity: Optional[str] = None
    """wandb entity (team) of the runs; default: your default entity"""


@dataclass
class Run:
    """One cell of the matrix: a script called with its env, seed, budget and extra flags."""
    name: str  # stable folder name under the root
    preset: str
    group: str  # which figure / table of aggregate.py it belongs to
    label: str  # legend label within the group
    script: str  # path relative to the repository root
    env_id: str
    seed: int
    flags: list[str] = field(default_factory=list)  # extra flags; "@ckpt:NAME/FILE.pt" = another run's checkpoint
    total_timesteps: Optional[int] = None  # None: not a training run (robustness)
    steps_per_epoch: Optional[int] = None
    cpus: int = 1

    @property
    def kind(self) -> str:
        return "train" if self.total_timesteps is not None else "robustness"

    @property
    def checkpoint_name(self) -> str:
        """The file a finished run leaves: {exp_name}.pt for training runs, robustness.csv for attacks."""
        if self.kind == "robustness":
            return "robustness.csv"
        if "--exp-name" in self.flags:
            return self.flags[self.flags.index("--exp-name") + 1] + ".pt"
        return Path(self.script).stem + ".pt"

    @property
    def wandb_env(self) -> dict[str, str]:
        """wandb's documented environment variables for this run (the scripts' wandb.init takes no group,
        job type or tags): the group is the page's section (group and task), the job type and the tags the
        algorithm and variant read from the name {env}__{algo}[__{variant}]__{seed}."""
        parts = self.name.split("__")
        algo, variant = (parts[1], "__".join(parts[2:-1])) if len(parts) >= 3 else (Path(self.script).stem, "")
        tags = [algo, *([variant] if variant else []), self.preset, self.env_id]
        return {"WANDB_RUN_GROUP": f"{self.group}__{self.env_id}",
                "WANDB_JOB_TYPE": f"{algo}__{variant}" if variant else algo,
                "WANDB_TAGS": ",".join(dict.fromkeys(t.replace(",", ";")[:64] for t in tags))}

    @property
    def inputs(self) -> list[str]:
        """Names of the runs whose checkpoints this run reads."""
        return [f[len("@ckpt:"):].split("/")[0] for f in self.flags if f.startswith("@ckpt:")]


# ----------------------------------------------------------------------------------------------
# The matrix


def is_navigation(env_id: str) -> bool:
    return "Velocity" not in env_id and any(word in env_id for word in NAVIGATION_WORDS)


def cpus_needed(env_id: str, flags: list[str], nav_cpus: int) -> int:
    """Async vector envs (navigation tasks under --vector-mode auto) keep more than one core busy."""
    mode = flags[flags.index("--vector-mode") + 1] if "--vector-mode" in flags else "auto"
    if mode == "sync" or (mode == "auto" and not is_navigation(env_id)):
        return 1
    return nav_cpus


def budget(env_id: str) -> int:
    return NAVIGATION_STEPS if is_navigation(env_id) else VELOCITY_STEPS


def train_run(preset: str, group: str, label: str, algo: str, script: str, env_id: str, seed: int,
              flags: list[str], variant: str = "", nav_cpus: int = 1) -> Run:
    name = f"{env_id}__{algo}{'__' + variant if variant else ''}__{seed}"
    return Run(name=name, preset=preset, group=group, label=label, script=script, env_id=env_id, seed=seed,
               flags=list(flags), total_timesteps=budget(env_id), steps_per_epoch=STEPS_PER_EPOCH,
               cpus=cpus_needed(env_id, flags, nav_cpus))


def matrix(scripts: list[str], env_ids: list[str], seeds: list[int], flags: list[str] = (), preset: str = "custom",
           nav_cpus: int = 1) -> list[Run]:
    """The plain product script x env id x seed, all with the same extra flags."""
    return [train_run(preset, preset, Path(s).stem, Path(s).stem, s, env, seed, list(flags), nav_cpus=nav_cpus)
            for env in env_ids for s in scripts for seed in seeds]


def preset_runs(preset: str, seeds: Optional[tuple[int, ...]] = None, nav_cpus: int = 1, episodes: int = 20) -> list[Run]:
    """The runs of one preset (see the module docstring; values from the paper's appendices C and D).
    seeds: default 0-2 (the `seeds` preset: 0-9)."""
    if seeds is None:
        seeds = MANY_SEEDS if preset == "seeds" else SEEDS
    hopper = ABLATION_TASK
    strpo = ALGORITHMS["strpo"]

    def variants(group, items):  # items: (variant slug, legend label, flags)
        return [train_run(preset, group, label, "strpo", strpo, hopper, seed, flags, variant, nav_cpus)
                for variant, label, flags in items for seed in seeds]

    if preset == "main":
        return [train_run("main", "main", algo, algo, script, env, seed, [], nav_cpus=nav_cpus)
                for env in PAPER_TASKS for algo, script in ALGORITHMS.items() for seed in seeds]
    if preset == "ablation-delta":  # C.1: one delta for both constraints, and the decoupled delta1/delta2
        return variants("ablation-delta", [
            ("delta=1e-2", "δ = 1e-2", ["--delta1", "0.01", "--delta2", "0.01"]),
            ("delta=1e-3", "δ = 1e-3", ["--delta1", "0.001", "--delta2", "0.001"]),
            ("delta=1e-4", "δ = 1e-4", ["--delta1", "0.0001", "--delta2", "0.0001"]),
            ("delta1=1e-2_delta2=1e-4", "δ1 = 1e-2, δ2 = 1e-4", ["--delta1", "0.01", "--delta2", "0.0001"]),
        ])
    if preset == "ablation-lambda2":  # C.3: fixed weights of phi in G = H^-1 (g + lambda2 phi)
        return variants("ablation-lambda2", [
            ("lambda2=0.01", "λ2 = 0.01 (fixed)", ["--lambda2-mode", "fixed", "--lambda2", "0.01"]),
            ("lambda2=1.0", "λ2 = 1.0 (fixed)", ["--lambda2-mode", "fixed", "--lambda2", "1.0"]),
        ])
    if preset == "ablation-components":  # C.4
        return variants("ablation-components", [
            ("no-joint-advantage", "no joint advantage", ["--no-joint-advantage"]),
            ("no-exclusion", "no exclusion (λ2 = 0)", ["--no-exclusion"]),
        ])
    def unsafe_run(env, critic, seed):  # C.2's pi_unsafe; the CVaR ones also keep the policies of STRENGTH_EPOCHS
        flags = ["--critic", critic] + (["--save-policies-at", *map(str, STRENGTH_EPOCHS[env])] if critic == "cvar" else [])
        run = train_run("ablation-unsafe", "ablation-unsafe-reference", f"{critic} critic", "unsafe_cvar_trpo",
                        "unsafe_cvar_trpo.py", env, seed, flags, f"critic={critic}", nav_cpus)
        if env == hopper:
            run.total_timesteps = UNSAFE_STEPS
        return run

    if preset == "ablation-unsafe":  # C.2: pi_unsafe trained with the CVaR (DTRPO) or the mean (TRPO) critic
        runs = []
        for env in UNSAFE_TASKS:
            for critic, label in (("cvar", "π_unsafe: CVaR critic (DTRPO)"), ("mean", "π_unsafe: mean critic (TRPO)")):
                for seed in seeds:
                    unsafe = unsafe_run(env, critic, seed)
                    runs.append(unsafe)
                    runs.append(train_run(preset, "ablation-unsafe", label, "strpo", strpo, env, seed,
                                          ["--unsafe-policy-path", f"@ckpt:{unsafe.name}/{unsafe.checkpoint_name}"],
                                          f"unsafe={critic}", nav_cpus))
        return runs
    if preset == "ablation-unsafe-strength":  # how unsafe must pi_unsafe be: one pi_unsafe run at several epochs
        runs = []
        for env in UNSAFE_TASKS:
            source = unsafe_run(env, "cvar", 0)
            runs.append(source)
            for k in STRENGTH_EPOCHS[env]:
                runs += [train_run(preset, "ablation-unsafe-strength", f"π_unsafe of epoch {k}", "strpo", strpo, env, seed,
                                   ["--unsafe-policy-path", f"@ckpt:{source.name}/unsafe_cvar_trpo_epoch{k}.pt"],
                                   f"unsafe=epoch{k}", nav_cpus)
                         for seed in STRENGTH_SEEDS]
        return runs
    if preset == "robustness":  # D: one attack sweep per (task, seed) over the nine algorithms, and the
        runs = []                 # same checkpoints evaluated with sampled actions at alpha = 0
        for env in NAVIGATION_TASKS + tuple(t for t in PAPER_TASKS if t not in NAVIGATION_TASKS):
            for seed in seeds:
                ckpts = [f"@ckpt:{env}__{algo}__{seed}/{algo}.pt" for algo in ALGORITHMS]
                for kind, rates, mode in (("robustness", ROBUSTNESS_RATES, []),
                                          ("robustness-stochastic", ("0.0",), ["--stochastic"])):
                    runs.append(Run(name=f"{env}__{kind}__{seed}", preset="robustness", group="robustness",
                                    label=kind, script="robustness_attack.py", env_id=env, seed=seed,
                                    flags=["--checkpoints", *ckpts, "--rates", *rates, "--episodes", str(episodes),
                                           "--seed", str(seed), *mode], cpus=cpus_needed(env, [], nav_cpus)))
        return runs
    if preset == "seeds":  # main's runs keep main's name and group: the folders main left are reused
        runs = [train_run("main", "main", algo, algo, ALGORITHMS[algo], env, seed, [], nav_cpus=nav_cpus)
                for env in SEEDS_TASKS for algo in SEEDS_ALGOS for seed in seeds]
        return runs + [train_run(preset, "seeds-delta2", "δ2 = 1e-2 (= δ1)", "strpo", strpo, env, seed,
                                 ["--delta2", "0.01"], "delta2=1e-2", nav_cpus)
                       for env in SEEDS_TASKS for seed in seeds]
    if preset == "long":  # another budget: another name (and folder) than main's
        runs = []
        for env, steps in LONG_STEPS.items():
            for algo in LONG_ALGOS:
                for seed in seeds:
                    run = train_run(preset, "long", algo, algo, ALGORITHMS[algo], env, seed, [], "long", nav_cpus)
                    run.total_timesteps = steps
                    runs.append(run)
        return runs
    raise SystemExit(f"error: unknown preset {preset!r}; choose from {', '.join(PRESETS + EXTRA_PRESETS + tuple(ALIASES))}")


def expand_presets(names: list[str]) -> list[str]:
    out = []
    for name in names:
        for preset in ALIASES.get(name, (name,)):
            if preset not in PRESETS + EXTRA_PRESETS:
                raise SystemExit(f"error: unknown preset {preset!r}; choose from {', '.join(PRESETS + EXTRA_PRESETS + tuple(ALIASES))}")
            if preset not in out:
                out.append(preset)
    return out


def only_algos(run: Run, algos: list[str]) -> Run:
    """A robustness sweep narrowed to the checkpoints of `algos` (another name: it never replaces the full sweep's
    folder); the sweep itself when none of them is a main algorithm."""
    keep = sorted(a for a in algos if a in ALGORITHMS)
    if not keep:
        return run
    flags = [f for f in run.flags if not f.startswith("@ckpt:") or Path(f).stem in keep]
    return replace(run, name=run.name.replace(f"__{run.label}__", f"__{run.label}-{'-'.join(keep)}__"), flags=flags)


def select_runs(args: Args) -> list[Run]:
    """Presets expanded, then narrowed by --algos/--env-ids/--filter and changed by the budget overrides."""
    seeds = tuple(args.seeds) if args.seeds is not None else None
    runs = [r for p in expand_presets(args.preset)
            for r in preset_runs(p, seeds, args.nav_cpus, args.robustness_episodes)]
    if args.algos is not None:
        unknown = sorted(set(args.algos) - set(ALGORITHMS) - {"unsafe_cvar_trpo", "robustness_attack"})
        if unknown:
            raise SystemExit(f"error: unknown --algos {unknown}; choose from {', '.join(ALGORITHMS)}")
        runs = [r for r in runs if Path(r.script).stem in args.algos or r.kind == "robustness"]
        runs = [only_algos(r, args.algos) if r.kind == "robustness" else r for r in runs]
    if args.env_ids is not None:
        runs = [r for r in runs if r.env_id in args.env_ids]
    for pattern in args.filter:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise SystemExit(f"error: --filter {pattern!r} is not a regular expression ({e})")
        runs = [r for r in runs if regex.search(r.name)]
    for run in runs:
        if run.kind == "train":
            if args.total_timesteps is not None:
                run.total_timesteps = args.total_timesteps
            if args.steps_per_epoch is not None:
                run.steps_per_epoch = args.steps_per_epoch
            if args.num_envs is not None:
                run.flags += ["--num-envs", str(args.num_envs)]
    unique = {}  # a run that two presets share (a pi_unsafe both ablations use) is run once
    for run in runs:
        assert identity(unique.setdefault(run.name, run)) == identity(run), f"two different runs named {run.name}"
    return list(unique.values())


# ----------------------------------------------------------------------------------------------
# Skip / resume decisions and commands


def root_path(root: str | Path) -> Path:
    root = Path(root)
    return root if root.is_absolute() else ROOT / root


def shown(path: Path) -> str:
    """A path as the commands give it: relative to the repository root (their working directory) when inside it."""
    path = Path(path)
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def subfolders(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_dir()) if run_dir.is_dir() else []


def progress_steps(progress_csv: Path) -> int:
    """global_step of the last row of a progress.csv (0 when empty or unreadable)."""
    try:
        lines = progress_csv.read_text().strip().splitlines()
        header = lines[0].split(",")
        return int(float(lines[-1].split(",")[header.index("global_step")])) if len(lines) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0


def find_checkpoint(run_dir: Path, name: str) -> Optional[Path]:
    """The newest `name` in the run's folder or its subfolders (robustness: {run_dir}/attack/)."""
    found = [p / name for p in [run_dir, *subfolders(run_dir)] if (p / name).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_state(run: Run, root: Path) -> tuple[str, Optional[Path]]:
    """('finished', checkpoint) | ('interrupted', subfolder to resume) | ('new', None) | ('mismatch', run.json)."""
    run_dir = root / run.name
    record = run_dir / "run.json"
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except json.JSONDecodeError:
            old = {}
        if any(old.get(k) != v for k, v in identity(run).items()):
            return "mismatch", record
    ckpt = find_checkpoint(run_dir, run.checkpoint_name)
    if ckpt is not None:
        return "finished", ckpt
    partial = [p for p in subfolders(run_dir) if (p / "progress.csv").is_file()]
    done = [p for p in partial if run.kind == "train" and progress_steps(p / "progress.csv") >= run.total_timesteps]
    if done:  # the whole budget trained but no checkpoint: a published record (aggregate.py --publish)
        return "finished", done[0] / "progress.csv"
    if partial:  # the most advanced one; among equals, one that the script can resume (its resume.pt)
        return "interrupted", max(partial, key=lambda p: (progress_steps(p / "progress.csv"), (p / "resume.pt").is_file(), p.name))
    return "new", None


def identity(run: Run) -> dict:
    """What must match between the run.json on disk and the matrix for the folder to be reused."""
    return {"script": run.script, "env_id": run.env_id, "seed": run.seed, "flags": run.flags,
            "total_timesteps": run.total_timesteps, "steps_per_epoch": run.steps_per_epoch}


def resolve_flags(run: Run, root: Path) -> tuple[list[str], list[str]]:
    """Flags with every @ckpt:NAME/FILE replaced by that run's checkpoint path; also the missing ones
    (given as the glob that would find them)."""
    flags, missing = [], []
    for flag in run.flags:
        if flag.startswith("@ckpt:"):
            name, file = flag[len("@ckpt:"):].split("/", 1)
            ckpt = find_checkpoint(root / name, file)
            if ckpt is None:
                missing.append(shown(root / name / "*" / file))
                flags.append(missing[-1])
            else:
                flags.append(shown(ckpt))
        else:
            flags.append(flag)
    return flags, missing


def tracking_flags(wandb: Optional[dict]) -> list[str]:
    """The training scripts' wandb flags for run.py's --track (wandb = {"project": P, "entity": E or None})."""
    if not wandb:
        return []
    return ["--track", "--wandb-project-name", wandb["project"],
            *(["--wandb-entity", wandb["entity"]] if wandb.get("entity") else [])]


def build_command(run: Run, root: Path, python: str, resume_from: Optional[Path] = None,
                  wandb: Optional[dict] = None) -> tuple[list[str], list[str]]:
    """The subprocess's argv (run from the repository root) and the input checkpoints still missing.
    `wandb` (run.py's --track) adds the scripts' wandb flags to a training run; it is not one of run.flags,
    so it never makes run.json mismatch."""
    flags, missing = resolve_flags(run, root)
    run_dir = root / run.name
    if run.kind == "robustness":
        return [python, run.script, *flags, "--out", shown(run_dir / "attack")], missing
    cmd = [python, run.script, "--env-id", run.env_id, "--seed", str(run.seed),
           "--total-timesteps", str(run.total_timesteps), "--steps-per-epoch", str(run.steps_per_epoch),
           "--output-dir", shown(run_dir), *flags, *tracking_flags(wandb)]
    if resume_from is not None:
        cmd += ["--resume", shown(resume_from)]
    return cmd, missing


def portable_command(cmd: list[str]) -> str:
    """The command as run.json and log.txt record it: `python` for the interpreter, every absolute path
    relative to the repository root (the subprocess's working directory), so no record names this machine."""
    rel = [a if not os.path.isabs(a) else os.path.relpath(a, ROOT) for a in cmd[1:]]
    return shlex.join(["python", *rel])


def git_provenance() -> dict:
    """The repository's commit and whether its tracked files differ from it (None when git cannot tell)."""
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}


def plan_run(run: Run, root: Path, resumable: bool, python: str = "python", wandb: Optional[dict] = None) -> dict:
    """What starting the matrix does with this run now: action skip | resume | restart | start | refuse,
    the command, and why."""
    state, path = run_state(run, root)
    if state == "finished":
        return {"action": "skip", "command": None, "why": f"finished ({path.relative_to(root)})"}
    if state == "mismatch":
        return {"action": "refuse", "command": None,
                "why": f"{path} records another budget or other flags; use another --root"}
    resumable = resumable and state == "interrupted" and (path / "resume.pt").is_file()
    resume_from = path if resumable else None
    cmd, missing = build_command(run, root, python, resume_from, wandb)
    if state == "interrupted":
        action = "resume" if resumable else "restart"
        why = (f"interrupted at step {progress_steps(path / 'progress.csv')}: "
               + ("--resume" if resumable else f"no resume.pt to continue from in {path.name}, starting from scratch"))
    else:
        action, why = "start", "new"
    if missing:
        why += f"; waits for {len(missing)} input checkpoint(s)"
    return {"action": action, "command": cmd, "why": why, "missing": missing}


def script_help(scripts: list[str]) -> dict[str, str]:
    """`python SCRIPT --help` of each script (in parallel: each one imports torch and the envs)."""
    procs = {s: subprocess.Popen([sys.executable, s, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
             for s in scripts}
    helps = {s: p.communicate()[0] for s, p in procs.items()}
    broken = {s: helps[s].strip().splitlines()[-1:] for s, p in procs.items() if p.returncode != 0}
    if broken:
        raise SystemExit("error: --help failed for " + "; ".join(f"{s}: {' '.join(t)}" for s, t in broken.items()))
    return helps


def unknown_flags(run: Run, help_text: str) -> list[str]:
    return [f for f in run.flags if f.startswith("--")
            and not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", help_text)]


# ----------------------------------------------------------------------------------------------
# Execution: one Ray task per run, one subprocess per task


def die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the Ray worker dies (Ctrl-C on the driver,
    ray.shutdown, a lost node), so that no training process outlives the matrix; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_provenance() -> Optional[str]:
    """This machine's CPU as run.json records it: model name and SIMD extensions (from /proc/cpuinfo; None where
    it is missing). torch and MKL choose their kernels by these, and kernels of other widths round differently,
    so a run repeats bit for bit only on a CPU with the same extensions (docs/reproduce.md, "Provenance")."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:40] if ":" in line)
    except OSError:
        return None
    info = {k.strip(): v.strip() for k, v in info.items()}
    simd = sorted(f for f in info.get("flags", "").split() if re.fullmatch(r"sse\S*|ssse3|avx\S*|fma|f16c|amx\S*", f))
    return f"{info.get('model name', 'unknown')}; {' '.join(simd)}"


def execute_run(run_dict: dict, root: str, resumable: bool, *upstream: dict, wandb: Optional[dict] = None) -> dict:
    """Body of the Ray task: decide again (the inputs have finished by now), then run the subprocess with
    its output in {root}/NAME/log.txt. Returns a status dict; never raises, so dependants can read it.
    wandb: run.py's --track ({"project", "entity"}), or None."""
    run, root = Run(**run_dict), Path(root)
    started = time.time()
    status = {"name": run.name, "seconds": 0.0}
    failed_inputs = [u["name"] for u in upstream if u["status"] not in ("finished", "skipped")]
    plan = plan_run(run, root, resumable, sys.executable, wandb)
    if plan["action"] == "skip":
        return {**status, "status": "skipped", "why": plan["why"]}
    if plan["action"] == "refuse":
        return {**status, "status": "refused", "why": plan["why"]}
    if plan["missing"]:
        return {**status, "status": "blocked",
                "why": f"inputs failed: {failed_inputs}" if failed_inputs else f"missing {plan['missing']}"}
    run_dir = root / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {**asdict(run), "command": portable_command(plan["command"]), "action": plan["action"],
              **git_provenance(), "cpu": cpu_provenance(), "started_at": started, "ended_at": None, "returncode": None}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    env = {**os.environ, **(run.wandb_env if wandb and run.kind == "train" else {})}
    with open(run_dir / "log.txt", "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {plan['action']}: {plan['why']}\n"
                  f"$ {record['command']}\n")
        log.flush()
        returncode = subprocess.run(plan["command"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, env=env).returncode
        log.write(f"=== exit code {returncode}\n")
    record.update(ended_at=time.time(), returncode=returncode)  # aggregate.py reports the matrix's wall time
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    done = run_state(run, root)[0] == "finished"
    return {**status, "status": "finished" if returncode == 0 and done else "failed", "returncode": returncode,
            "seconds": time.time() - started, "why": f"see {run_dir / 'log.txt'}"}


class Progress:
    """Runs done / total, environment steps per second over this session, time left; tqdm if present."""

    def __init__(self, runs: list[Run], root: Path):
        self.runs, self.root, self.start = runs, root, time.time()
        self.total_steps = sum(r.total_timesteps or 0 for r in runs)
        self.start_steps = self.steps()
        self.last_print = 0.0
        try:
            from tqdm import tqdm
            # redraw every second on a terminal, every minute into a log file (nohup)
            self.bar = tqdm(total=len(runs), unit="run", dynamic_ncols=True,
                            mininterval=1 if sys.stderr.isatty() else 60)
        except ImportError:
            self.bar = None

    def steps(self) -> int:
        """Steps done by the training runs: the newest progress.csv of each run folder."""
        total = 0
        for run in self.runs:
            if run.kind != "train":
                continue
            csvs = [p / "progress.csv" for p in subfolders(self.root / run.name) if (p / "progress.csv").is_file()]
            if csvs:
                total += min(progress_steps(max(csvs, key=lambda p: p.stat().st_mtime)), run.total_timesteps)
        return total

    def update(self, done: int, finished_now: int = 0) -> None:
        elapsed = time.time() - self.start
        steps = self.steps()
        rate = (steps - self.start_steps) / elapsed if elapsed > 0 else 0.0
        left = (self.total_steps - steps) / rate if rate > 0 else float("nan")
        eta = "?" if left != left else f"{int(left // 3600)}h{int(left % 3600 // 60):02d}m"
        text = f"{steps:,}/{self.total_steps:,} steps, {rate:,.0f} steps/s, left {eta}"
        if self.bar is not None:
            self.bar.update(finished_now)
            self.bar.set_postfix_str(text)
        elif time.time() - self.last_print > 30 or finished_now:
            print(f"[{done}/{len(self.runs)} runs] {text}", flush=True)
            self.last_print = time.time()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def launch(runs: list[Run], root: Path, resumable: dict[str, bool], workers: Optional[int] = None,
           address: Optional[str] = None, progress: bool = True, wandb: Optional[dict] = None) -> list[dict]:
    """Submit every run as a Ray task (dependants receive their inputs' object refs) and wait for all."""
    import ray

    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, configure_logging=False,
                 object_store_memory=OBJECT_STORE_BYTES)
    try:
        pool = int(ray.cluster_resources().get("CPU", 1))
        task = ray.remote(execute_run)
        refs, by_name = {}, {r.name: r for r in runs}

        def submit(run: Run):
            if run.name in refs:
                return refs[run.name]
            upstream = [submit(by_name[n]) for n in run.inputs if n in by_name]
            cpus = min(run.cpus, pool)  # a 2-CPU run on a 1-CPU pool would wait forever
            refs[run.name] = task.options(num_cpus=cpus, max_retries=1, name=run.name).remote(
                asdict(run), str(root), resumable.get(run.script, False), *upstream, wandb=wandb)
            return refs[run.name]

        for run in runs:
            submit(run)
        bar = Progress(runs, root) if progress else None
        pending, results = list(refs.values()), []
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            results += ray.get(ready)
            for r in ray.get(ready):
                if r["status"] not in ("finished", "skipped"):
                    print(f"{r['name']}: {r['status']} ({r.get('why', '')})", file=sys.stderr, flush=True)
            if bar:
                bar.update(len(results), len(ready))
        if bar:
            bar.close()
        return results
    finally:
        ray.shutdown()


def main(args: Args) -> list[dict]:
    if args.nav_cpus < 1 or args.robustness_episodes < 1 or (args.workers is not None and args.workers < 1):
        raise SystemExit("error: --nav-cpus, --robustness-episodes and --workers must be positive")
    for name in ("total_timesteps", "steps_per_epoch", "num_envs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive")
    root = root_path(args.root)
    wandb = {"project": args.wandb_project, "entity": args.wandb_entity} if args.track else None
    runs = select_runs(args)
    if not runs:
        raise SystemExit("error: no run left after --algos/--env-ids/--filter")
    states = {r.name: run_state(r, root)[0] for r in runs}
    todo = [r for r in runs if states[r.name] not in ("finished", "mismatch")]
    helps = {}
    needs_help = {r.script for r in todo if states[r.name] == "interrupted"}
    if args.check_flags and not args.dry_run:
        needs_help |= {r.script for r in todo}
    if needs_help:
        helps = script_help(sorted(needs_help))
    resumable = {s: bool(re.search(r"(?<![\w-])--resume(?![\w-])", h)) for s, h in helps.items()}
    if args.check_flags and not args.dry_run:
        bad = {r.name: unknown_flags(r, helps[r.script]) for r in todo}
        bad = {k: v for k, v in bad.items() if v}
        if bad:
            lines = "\n".join(f"  {k}: {' '.join(v)}" for k, v in list(bad.items())[:10])
            raise SystemExit(f"error: {len(bad)} run(s) pass flags their script's --help does not list "
                             f"(an older script?):\n{lines}\n(--no-check-flags runs them anyway)")

    counts = {}
    for run in runs:
        plan = plan_run(run, root, resumable.get(run.script, False), "python", wandb)
        counts[plan["action"]] = counts.get(plan["action"], 0) + 1
        if args.dry_run:
            cmd = "" if plan["command"] is None else "\n    " + shlex.join(plan["command"])
            print(f"[{plan['action']}] {run.name} ({run.cpus} CPU): {plan['why']}{cmd}")
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    print(f"{len(runs)} runs under {root}: {summary}", flush=True)
    if args.dry_run:
        return []
    launchable = [r for r in runs if states[r.name] != "mismatch"]
    results = [{"name": r.name, "status": "refused"} for r in runs if states[r.name] == "mismatch"]
    if all(states[r.name] == "finished" for r in launchable):  # no need to start Ray
        results += [{"name": r.name, "status": "skipped"} for r in launchable]
    else:
        results += launch(launchable, root, resumable, args.workers, args.address, wandb=wandb)
    by_status = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["name"])
    print("done: " + ", ".join(f"{len(v)} {k}" for k, v in by_status.items()))
    for status in ("failed", "blocked", "refused"):
        for name in by_status.get(status, []):
            print(f"  {status}: {name} ({root / name / ('run.json' if status == 'refused' else 'log.txt')})")
    return results


if __name__ == "__main__":
    results = main(tyro.cli(Args))
    if any(r["status"] != "finished" and r["status"] != "skipped" for r in results):
        sys.exit(1)
