"""Critic minibatch size against value loss and wall time, on real on-policy batches.

The training scripts regress their reward and cost critics on GAE returns with 512-sample minibatches,
where OmniSafe and SafePO use 64-sample ones (SPEC 6: "larger minibatches are fine when the value loss
reaches a comparable level (measure it and say so)"). This script measures it, per task:

1. Data. The shipped pi_unsafe (unsafe_policies/{env_id}.pt, loaded with unsafe_cvar_trpo.py's
   `load_checkpoint`) acts stochastically, through its own observation normaliser, in
   unsafe_cvar_trpo.py's own `make_vector_env(env_id, 4, "auto")` for `--steps` steps (default 15000,
   the repo's epoch) with the script's rollout conventions: raw observations stored, a truncated
   episode's successor is `info["final_observation"]`, a terminated one bootstraps from 0. A second,
   held-out batch of the same size is collected the same way after resetting the envs with another seed.
2. Targets. A critic normaliser (`RunningMeanStd`) is refreshed with the training batch's observations
   and then held fixed, as the scripts do right after a rollout; it normalises both batches. Reward
   and cost returns are `compute_gae(..., gamma=0.99, lam=0.95)` returns computed with a fresh
   critic's values, as in a script's first epoch (that fresh critic is the initialisation of seed 0).
3. Training. For each of `--seeds` critic initialisations (torch seed `seed + i`), one reward and one
   cost critic `mlp(obs_dim, (64, 64), 1, out_std=1.0)` start from the SAME weights for every
   minibatch size and see the SAME shuffling generator; each is trained with Adam (lr 1e-3) on the
   MSE to its returns for `--critic-epochs` passes of shuffled minibatches, exactly the loop of the
   scripts. Settings are interleaved within each seed, so machine load affects all of them alike.
   `--extra-settings` adds settings MINIBATCHxEPOCHS[@LR] trained the same way, to find what a large
   minibatch needs when 10 epochs at lr 1e-3 fall short (defaults: 512x20@0.003 and 512x30@0.003,
   2-3x the passes with a 3x larger Adam lr, still far fewer steps than 64x10; 512x80 would match
   64x10's gradient steps and then costs more time than 64x10 (measured about 1.8x here): a 512-sample
   step is about 2x, not 8x, dearer than a 64-sample one).
4. Report, per setting (means over seeds): the wall time of training both critics, the number of
   gradient steps per critic, the final full-batch MSE on the training batch and on the held-out
   batch (reward and cost), and each relative to the smallest minibatch size (64 by default, the
   OmniSafe/SafePO setting). The returns' variance is given too: MSE / variance is the fraction of
   the return variance the critic leaves unexplained. A generated sentence per task says whether 512
   is comparable (both held-out MSEs within 1.10x of the reference's) and, if not, which setting is.

The data are those of a script's first epoch (a fresh critic, returns bootstrapped from its values):
later epochs train a critic that carries over, on returns bootstrapped from a trained critic, which
this measurement does not cover.

    python benchmark/critic_minibatch.py --out benchmark/results/critic_minibatch   # the committed table: ~5 min on 2 busy cores
    python benchmark/critic_minibatch.py --env-ids SafetyHopperVelocity-v1 --minibatch-sizes 64 512 --extra-settings --seeds 5

Writes {out}.csv and {out}.md (a header stating the budget and the machine, then the table), by
default under runs/critic_minibatch/, and prints the table. Timings depend on machine load; the losses do not (fixed seeds, one torch thread).
"""
from __future__ import annotations

import csv
import difflib
import importlib.util
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  load triton before MuJoCo: after MuJoCo's EGL (MUJOCO_GL=egl) it segfaults
import tyro

torch.set_num_threads(1)  # as the training scripts do: 2+ threads spin-wait when envs share the cores

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SCRIPT = ROOT / "unsafe_cvar_trpo.py"  # source of make_vector_env, load_checkpoint, mlp, compute_gae, ...
NUM_ENVS = 4  # the repo's default num_envs
VECTOR_MODE = "auto"  # async for navigation tasks, sync for velocity tasks (the scripts' default)
HIDDEN_SIZES = (64, 64)  # the repo's critic shape (SPEC 3)
CRITIC_LR = 1e-3  # Adam lr of every critic in the repo, OmniSafe and SafePO
GAMMA, GAE_LAMBDA = 0.99, 0.95  # the repo's defaults (OmniSafe, SafePO)
HELDOUT_SEED_OFFSET = 10_000  # the held-out batch resets the envs with seed + this
COMPARABLE_RATIO = 1.10  # "comparable": held-out MSE at most 10% above the reference minibatch's
PROBE_MINIBATCH = 512  # the repo's critic minibatch, whose verdict the report spells out


@dataclass(frozen=True)
class Setting:
    """One way of training the critics: minibatch size, passes over the batch, Adam lr."""
    minibatch_size: int
    epochs: int
    lr: float
    label: str


@dataclass
class Args:
    env_ids: list[str] = field(default_factory=lambda: ["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"])
    """Safety-Gymnasium tasks; each needs a shipped pi_unsafe at unsafe_policies/{env_id}.pt"""
    steps: int = 15_000
    """env steps per batch (all 4 envs together); 15000 is the repo's epoch. Two batches are collected: train and held-out"""
    minibatch_sizes: list[int] = field(default_factory=lambda: [64, 128, 512, 1024])
    """critic minibatch sizes to compare; the smallest is the reference of the relative columns (64 = OmniSafe/SafePO)"""
    extra_settings: list[str] = field(default_factory=lambda: ["512x20@0.003", "512x30@0.003"])
    """further settings MINIBATCHxEPOCHS[@LR] measured alike (e.g. 512x80: as many gradient steps as 64x10;
    512x30@0.003: more passes and a 3x larger Adam lr); pass none with --extra-settings (no values)"""
    critic_epochs: int = 10
    """passes over the batch for each critic (the reference setting; the scripts now use 20 passes at lr 3e-3)"""
    seeds: int = 3
    """number of critic initialisations (torch seeds seed, seed+1, ...) that every setting is averaged over"""
    seed: int = 1
    """seed of the rollouts (env resets, policy sampling) and the first critic initialisation"""
    out: str = str(ROOT / "runs" / "critic_minibatch" / "critic_minibatch")
    """output path without suffix: {out}.csv and {out}.md are written (benchmark/results/critic_minibatch: the
    committed table)"""


# ----------------------------------------------------------------------------------------------
# Argument checks and the reference script
# ----------------------------------------------------------------------------------------------
def load_reference():
    """Import unsafe_cvar_trpo.py by path: its env, checkpoint, critic and GAE code is what we measure."""
    name = "critic_minibatch_unsafe_cvar_trpo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REFERENCE_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def parse_setting(text: str) -> Setting:
    """'512x80' or '512x20@0.003' -> Setting; one-line error otherwise."""
    try:
        size_epochs, _, lr = text.partition("@")
        size, epochs = (int(v) for v in size_epochs.lower().split("x"))
        setting = Setting(size, epochs, float(lr) if lr else CRITIC_LR, text)
    except ValueError:
        raise SystemExit(f"error: --extra-settings entry {text!r} is not MINIBATCHxEPOCHS[@LR], e.g. 512x80 or 512x20@0.003")
    if setting.minibatch_size <= 0 or setting.epochs <= 0 or not setting.lr > 0:
        raise SystemExit(f"error: --extra-settings entry {text!r} needs a positive minibatch, epochs and lr")
    return setting


def settings_of(args: Args) -> list[Setting]:
    """The minibatch sizes at --critic-epochs and lr 1e-3 (the reference first), then the extra settings."""
    base = [Setting(mb, args.critic_epochs, CRITIC_LR, str(mb)) for mb in sorted(dict.fromkeys(args.minibatch_sizes))]
    return list(dict.fromkeys(base + [parse_setting(text) for text in args.extra_settings]))


def validate_args(args: Args, trpo) -> None:
    """One-line errors for bad input, raised before anything is collected."""
    for name in ("steps", "critic_epochs", "seeds"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.steps < NUM_ENVS:
        raise SystemExit(f"error: --steps ({args.steps}) must be at least the {NUM_ENVS} envs")
    if not args.minibatch_sizes or min(args.minibatch_sizes) <= 0:
        raise SystemExit(f"error: --minibatch-sizes must be positive integers, got {args.minibatch_sizes}")
    settings_of(args)  # a malformed --extra-settings entry fails now, not after the rollouts
    if not args.env_ids:
        raise SystemExit("error: --env-ids needs at least one task")
    import gymnasium
    import safety_gymnasium  # noqa: F401  (registers the Safety* ids)

    ids = sorted(k for k in gymnasium.envs.registry.keys() if k.startswith("Safety"))
    for env_id in args.env_ids:
        if env_id not in ids:
            close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
            raise SystemExit(f"error: unknown env id {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        if not (ROOT / "unsafe_policies" / f"{env_id}.pt").is_file():
            raise SystemExit(f"error: no pi_unsafe at unsafe_policies/{env_id}.pt; train one with "
                             f"python unsafe_cvar_trpo.py --env-id {env_id} --save-to unsafe_policies/{env_id}.pt")


# ----------------------------------------------------------------------------------------------
# Data: one on-policy batch, the training scripts' rollout loop
# ----------------------------------------------------------------------------------------------
def collect_batch(envs, actor, policy_rms, steps: int, seed: int) -> dict[str, np.ndarray]:
    """`steps` steps (all envs) of the stochastic policy from a fresh reset; [T, num_envs, ...] arrays."""
    num_envs = envs.num_envs
    num_steps = steps // num_envs
    obs_dim = envs.single_observation_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high
    batch = {"obs": np.zeros((num_steps, num_envs, obs_dim), np.float32),
             "next_obs": np.zeros((num_steps, num_envs, obs_dim), np.float32),
             "reward": np.zeros((num_steps, num_envs)), "cost": np.zeros((num_steps, num_envs)),
             "terminated": np.zeros((num_steps, num_envs)), "episode_end": np.zeros((num_steps, num_envs))}
    torch.manual_seed(seed)  # the policy's action noise
    obs, _ = envs.reset(seed=seed)
    for t in range(num_steps):
        batch["obs"][t] = obs
        with torch.no_grad():
            action = actor.distribution(policy_rms.normalize(torch.as_tensor(obs, dtype=torch.float32))).sample().numpy()
        obs, reward, cost, terminated, truncated, info = envs.step(np.clip(action, low, high))
        done = np.logical_or(terminated, truncated)
        batch["reward"][t], batch["cost"][t], batch["terminated"][t], batch["episode_end"][t] = reward, cost, terminated, done
        batch["next_obs"][t] = obs
        for i in np.flatnonzero(done):
            batch["next_obs"][t, i] = info["final_observation"][i]  # true successor for the bootstrap
    return batch


def gae_returns(trpo, batch: dict, critic_rms, reward_critic, cost_critic) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised observations [B, obs_dim] and the reward and cost GAE returns [B] of one batch."""
    num_steps, num_envs, obs_dim = batch["obs"].shape
    norm_obs = critic_rms.normalize(torch.as_tensor(batch["obs"].reshape(-1, obs_dim)))
    norm_next = critic_rms.normalize(torch.as_tensor(batch["next_obs"].reshape(-1, obs_dim)))
    targets = []
    for signal, critic in ((batch["reward"], reward_critic), (batch["cost"], cost_critic)):
        with torch.no_grad():
            values = critic(norm_obs).squeeze(-1).numpy().reshape(num_steps, num_envs)
            next_values = critic(norm_next).squeeze(-1).numpy().reshape(num_steps, num_envs)
        _, returns = trpo.compute_gae(signal, values, next_values, batch["terminated"], batch["episode_end"], GAMMA, GAE_LAMBDA)
        targets.append(torch.as_tensor(returns.reshape(-1), dtype=torch.float32))
    return norm_obs, targets[0], targets[1]


# ----------------------------------------------------------------------------------------------
# Critic training: the scripts' loop, one minibatch size at a time
# ----------------------------------------------------------------------------------------------
def train_critic(critic, obs: torch.Tensor, targets: torch.Tensor, minibatch_size: int, epochs: int,
                 shuffle_seed: int, lr: float = CRITIC_LR) -> tuple[float, int]:
    """Adam on the MSE to the returns over `epochs` shuffled passes; returns (seconds, gradient steps)."""
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(shuffle_seed)
    batch_size, grad_steps = obs.shape[0], 0
    start_time = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(batch_size, generator=generator)
        for start in range(0, batch_size, minibatch_size):
            idx = perm[start:start + minibatch_size]
            loss = (critic(obs[idx]).squeeze(-1) - targets[idx]).pow(2).mean()
            if not torch.isfinite(loss):
                raise SystemExit(f"error: non-finite critic loss with minibatch {minibatch_size}; the returns are not finite")
            opt.zero_grad()
            loss.backward()
            opt.step()
            grad_steps += 1
    return time.perf_counter() - start_time, grad_steps


def full_mse(critic, obs: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        return float((critic(obs).squeeze(-1) - targets).pow(2).mean())


def measure_task(trpo, env_id: str, args: Args) -> list[dict]:
    """Collect the two batches of one task and train every (seed, minibatch size); one row per size."""
    print(f"[critic_minibatch] {env_id}: collecting 2 x {args.steps} steps with unsafe_policies/{env_id}.pt", flush=True)
    envs = trpo.make_vector_env(env_id, NUM_ENVS, VECTOR_MODE)
    try:
        obs_dim = envs.single_observation_space.shape[0]
        act_dim = envs.single_action_space.shape[0]
        actor, policy_rms, _ = trpo.load_checkpoint(ROOT / "unsafe_policies" / f"{env_id}.pt", env_id, obs_dim, act_dim)
        envs.single_action_space.seed(args.seed)
        t0 = time.perf_counter()
        train_batch = collect_batch(envs, actor, policy_rms, args.steps, args.seed)
        heldout_batch = collect_batch(envs, actor, policy_rms, args.steps, args.seed + HELDOUT_SEED_OFFSET)
        collect_s = time.perf_counter() - t0
    finally:
        envs.close()

    # the critic normaliser of a script's first epoch: refreshed with the batch, then fixed
    critic_rms = trpo.RunningMeanStd((obs_dim,))
    critic_rms.update(train_batch["obs"].reshape(-1, obs_dim))
    initial_weights = []  # per seed: (reward critic, cost critic) state dicts, shared by every minibatch size
    for i in range(args.seeds):
        torch.manual_seed(args.seed + i)
        reward_critic = trpo.mlp(obs_dim, HIDDEN_SIZES, 1, out_std=1.0)
        cost_critic = trpo.mlp(obs_dim, HIDDEN_SIZES, 1, out_std=1.0)
        initial_weights.append((reward_critic.state_dict(), cost_critic.state_dict()))
    fresh_reward, fresh_cost = trpo.mlp(obs_dim, HIDDEN_SIZES, 1, 1.0), trpo.mlp(obs_dim, HIDDEN_SIZES, 1, 1.0)
    fresh_reward.load_state_dict(initial_weights[0][0])
    fresh_cost.load_state_dict(initial_weights[0][1])
    train_obs, train_rret, train_cret = gae_returns(trpo, train_batch, critic_rms, fresh_reward, fresh_cost)
    held_obs, held_rret, held_cret = gae_returns(trpo, heldout_batch, critic_rms, fresh_reward, fresh_cost)
    episodes = int(train_batch["episode_end"].sum())
    print(f"[critic_minibatch]   collected in {collect_s:.1f} s; train batch: {episodes} episode ends, "
          f"reward return var {float(train_rret.var()):.2f}, cost return var {float(train_cret.var()):.2f}", flush=True)

    settings = settings_of(args)
    results = {s: [] for s in settings}
    for i, (reward_init, cost_init) in enumerate(initial_weights):
        for setting in settings:  # interleaved within a seed: load drifts hit every setting alike
            measured = {}
            seconds = 0.0
            for kind, init, train_ret, held_ret in (("reward", reward_init, train_rret, held_rret),
                                                    ("cost", cost_init, train_cret, held_cret)):
                critic = trpo.mlp(obs_dim, HIDDEN_SIZES, 1, out_std=1.0)
                critic.load_state_dict(init)
                if i == 0 and setting == settings[0]:
                    measured[f"{kind}_mse_init"] = full_mse(critic, train_obs, train_ret)
                elapsed, grad_steps = train_critic(critic, train_obs, train_ret, setting.minibatch_size, setting.epochs,
                                                   args.seed + i, setting.lr)
                seconds += elapsed
                measured[f"{kind}_mse_train"] = full_mse(critic, train_obs, train_ret)
                measured[f"{kind}_mse_heldout"] = full_mse(critic, held_obs, held_ret)
            results[setting].append({"train_time_s": seconds, "grad_steps": grad_steps, **measured})
            print(f"[critic_minibatch]   seed {i} setting {setting.label:>12}: {grad_steps:5d} steps/critic, {seconds:6.2f} s, "
                  f"held-out MSE reward {measured['reward_mse_heldout']:.3f} cost {measured['cost_mse_heldout']:.3f}", flush=True)

    reference = settings[0].minibatch_size
    init_mse = results[settings[0]][0]
    rows = []
    for setting in settings:
        runs = results[setting]
        row = {"env_id": env_id, "setting": setting.label, "minibatch_size": setting.minibatch_size,
               "critic_epochs": setting.epochs, "critic_lr": setting.lr, "grad_steps_per_critic": runs[0]["grad_steps"]}
        for key in ("train_time_s", "reward_mse_train", "cost_mse_train", "reward_mse_heldout", "cost_mse_heldout"):
            values = [r[key] for r in runs]
            row[key] = float(np.mean(values))
            if key != "train_time_s":
                row[key.replace("_mse_", "_mse_std_")] = float(np.std(values))
        rows.append(row)
    ref = rows[0]  # settings[0]: the smallest --minibatch-sizes entry at --critic-epochs and lr 1e-3
    for row in rows:
        row["reference_minibatch"] = reference
        for key in ("train_time_s", "reward_mse_train", "cost_mse_train", "reward_mse_heldout", "cost_mse_heldout"):
            row[f"{key}_vs_ref"] = row[key] / ref[key] if ref[key] > 0 else float("nan")
        row.update(reward_mse_init=init_mse["reward_mse_init"], cost_mse_init=init_mse["cost_mse_init"],
                   reward_return_var=float(train_rret.var()), cost_return_var=float(train_cret.var()),
                   heldout_reward_return_var=float(held_rret.var()), heldout_cost_return_var=float(held_cret.var()),
                   train_episode_ends=episodes, steps=args.steps, seeds=args.seeds)
    return rows


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def git_commit() -> str:
    """The commit of the measured code (HEAD, 7 characters), +dirty when its tracked files differ from it;
    unknown without git or a repository."""
    out = subprocess.run("git rev-parse --verify -q --short=7 HEAD && git status --porcelain -uno", shell=True, cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    return out[0] + ("+dirty" if out[1:] else "") if out else "unknown"


def machine_facts() -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "git_commit": git_commit(),
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_1min_start": round(os.getloadavg()[0], 2)}


def verdicts(rows: list[dict]) -> list[str]:
    """One generated sentence per task: is the repo's 512 minibatch's held-out loss comparable to the
    reference's, and if not, which measured settings are (and at what time)."""
    lines = []
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        task = [r for r in rows if r["env_id"] == env_id]
        ref = task[0]
        probe = next((r for r in task if r["setting"] == str(PROBE_MINIBATCH)), None)
        if probe is None or probe is ref:
            continue

        def comparable(r):
            return r["reward_mse_heldout_vs_ref"] <= COMPARABLE_RATIO and r["cost_mse_heldout_vs_ref"] <= COMPARABLE_RATIO

        text = (f"{env_id}: minibatch {PROBE_MINIBATCH} ({probe['critic_epochs']} epochs, lr {probe['critic_lr']:g}) trains "
                f"both critics in {probe['train_time_s_vs_ref']:.2f}x the time of minibatch {ref['minibatch_size']}, with "
                f"held-out MSE {probe['reward_mse_heldout_vs_ref']:.2f}x (reward) and {probe['cost_mse_heldout_vs_ref']:.2f}x "
                f"(cost) of minibatch {ref['minibatch_size']}'s: ")
        if comparable(probe):
            text += f"comparable (both within {COMPARABLE_RATIO:.2f}x)."
        else:
            ok = [f"{r['setting']} ({r['train_time_s_vs_ref']:.2f}x the time)" for r in task if comparable(r) and r is not ref]
            text += (f"NOT comparable (above {COMPARABLE_RATIO:.2f}x); comparable settings measured: "
                     + (", ".join(ok) + "." if ok else "none."))
        lines.append(text)
    return lines


def fmt(value: float) -> str:
    if value != value:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown(rows: list[dict], facts: dict, args: Args) -> str:
    lines = ["# Critic minibatch size: value loss against training time", "",
             f"Budget: per task, one training batch and one held-out batch of {args.steps} env steps each "
             f"({NUM_ENVS} envs), collected by the shipped pi_unsafe (unsafe_policies/{{env_id}}.pt) acting stochastically; "
             f"reward and cost critics mlp(obs_dim, {HIDDEN_SIZES}, 1) trained with Adam on their GAE returns "
             f"(gamma {GAMMA}, lambda {GAE_LAMBDA}, values of a fresh critic, as in a script's first epoch), every setting "
             f"from the same initial weights; means over {args.seeds} critic seeds (± std). Setting = minibatch size at "
             f"{args.critic_epochs} epochs and lr {CRITIC_LR:g}, or MINIBATCHxEPOCHS[@LR]. Time = wall time of training "
             f"both critics; MSE = final full-batch mean squared error on the training batch and on the held-out batch; "
             f"'/ref' = relative to the first row of the task; comparable = both held-out ratios <= {COMPARABLE_RATIO:.2f}. "
             "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items())
             + ". Generated by `python benchmark/critic_minibatch.py --out benchmark/results/critic_minibatch`.", ""]
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        r0 = next(r for r in rows if r["env_id"] == env_id)
        lines.append(f"{env_id}: return variance reward {fmt(r0['reward_return_var'])}, cost {fmt(r0['cost_return_var'])} "
                     f"(held-out {fmt(r0['heldout_reward_return_var'])}, {fmt(r0['heldout_cost_return_var'])}); untrained "
                     f"critic MSE reward {fmt(r0['reward_mse_init'])}, cost {fmt(r0['cost_mse_init'])}; "
                     f"{r0['train_episode_ends']} episode ends in the training batch.")
        lines.append("")
    lines += ["| env | setting | grad steps/critic | time (s) | time /ref | reward MSE train | cost MSE train | "
              "reward MSE held-out | cost MSE held-out | reward held-out /ref | cost held-out /ref |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['env_id']} | {r['setting']} | {r['grad_steps_per_critic']} | {r['train_time_s']:.2f} | "
                     f"{r['train_time_s_vs_ref']:.2f} | {fmt(r['reward_mse_train'])} ± {fmt(r['reward_mse_std_train'])} | "
                     f"{fmt(r['cost_mse_train'])} ± {fmt(r['cost_mse_std_train'])} | "
                     f"{fmt(r['reward_mse_heldout'])} ± {fmt(r['reward_mse_std_heldout'])} | "
                     f"{fmt(r['cost_mse_heldout'])} ± {fmt(r['cost_mse_std_heldout'])} | "
                     f"{r['reward_mse_heldout_vs_ref']:.2f} | {r['cost_mse_heldout_vs_ref']:.2f} |")
    found = verdicts(rows)
    if found:
        lines += ["", *found]
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], facts: dict, args: Args) -> tuple[Path, Path]:
    out = Path(args.out)
    if out.suffix in (".csv", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out.with_name(out.name + ".csv"), out.with_name(out.name + ".md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + list(facts))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, **facts})
    md_path.write_text(markdown(rows, facts, args))
    return csv_path, md_path


def main(args: Args) -> tuple[Path, Path]:
    """Measure every task; returns the paths of the CSV and markdown written."""
    trpo = load_reference()
    validate_args(args, trpo)
    torch.set_num_threads(1)
    facts = machine_facts()
    rows = [row for env_id in args.env_ids for row in measure_task(trpo, env_id, args)]
    csv_path, md_path = write_outputs(rows, facts, args)
    print()
    print(markdown(rows, facts, args))
    print(f"wrote {csv_path} and {md_path}")
    return csv_path, md_path


if __name__ == "__main__":
    main(tyro.cli(Args))
