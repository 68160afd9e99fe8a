"""RCPO: Reward Constrained Policy Optimization, with a natural-policy-gradient actor.

Paper: Tessler, Mankowitz, Mannor, "Reward Constrained Policy Optimization" (ICLR 2019),
Algorithm 1 and eq. (8)-(11): the constraint enters as the penalised reward
r_hat = r - lambda * c (eq. 8), and critic, policy and multiplier move on three timescales
(fastest to slowest). Once per epoch:

1. Multiplier: one plain projected step lambda <- max(0, lambda + lagrangian_lr * (J_c - d))
   (eq. 11), J_c the mean cost of the episodes that finished this epoch (none: lambda is kept).
2. Penalised advantage: GAE of r - lambda * c with V_lambda = V_r - lambda * V_c (separate
   critics), standardised as a whole (no (1 + lambda) division: it would change eq. 8's trade-off).
3. Policy: one natural policy gradient step (Kakade 2001), x = H^-1 g by conjugate gradient,
   theta <- theta_k + sqrt(2 delta / x^T H x) x; no line search (that would make it TRPO).
4. Critics: reward and cost critics regressed on their own GAE returns.

Why these readings (against OmniSafe's RCPO) and where the defaults come from: docs/algorithms/rcpo.md.

Usage:
    python baselines/rcpo.py --env-id SafetyCarCircle1-v0
    python baselines/rcpo.py --env-id SafetyHopperVelocity-v1 --lagrangian-lr 1e-3
"""
from __future__ import annotations

import csv
import difflib
import json
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, Optional

import farama_notifications
import numpy as np
import torch
import torch.nn as nn
import tyro

farama_notifications.notifications.pop("gymnasium_robotics", None)  # gymnasium-robotics' Adroit notice: not these tasks
if os.environ.get("MUJOCO_GL") == "egl":  # MuJoCo loads EGL when imported; libtriton, which torch's optimisers
    import torch._dynamo  # noqa: F401  # load lazily, segfaults when loaded after it: load it first


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of random, numpy, torch, the envs and their action spaces"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True` and deterministic torch algorithms"""
    track: bool = False
    """if toggled, log to Weights and Biases (works offline with WANDB_MODE=offline)"""
    wandb_project_name: str = "strpo"
    """the wandb project name"""
    wandb_entity: Optional[str] = None
    """the wandb entity (team); None uses your default"""
    capture_video: bool = False
    """if toggled, record every 50th episode of env 0 (0 included) to runs/{run_name}/videos/ (and wandb with --track)"""
    output_dir: str = "runs"
    """folder under which runs/{run_name}/ (progress.csv, config.json, checkpoint) is written"""
    resume: Optional[str] = None
    """continue the run in this folder (e.g. runs/{run_name}) from its last checkpoint and saved arguments (others ignored)"""
    checkpoint_every: int = 1
    """write the run folder's resume.pt every k epochs and at the last epoch (a write takes a few ms)"""

    # environment
    env_id: str = "SafetyCarCircle1-v0"
    """the Safety-Gymnasium task id"""
    total_timesteps: int = 1_000_000
    """total environment steps of training (all envs together)"""
    num_envs: int = 4
    """number of parallel environments"""
    vector_mode: Literal["auto", "sync", "async"] = "auto"
    """vector env kind; auto = async (subprocesses) for navigation tasks, sync for velocity tasks"""
    steps_per_epoch: int = 15_000
    """environment steps per epoch (all envs together); one policy update per epoch (paper 5.2)"""
    cost_limit: float = 25.0
    """episode cost budget d of the constraint J_c <= d"""

    # algorithm
    lagrangian_multiplier_init: float = 0.001
    """initial Lagrange multiplier lambda (OmniSafe)"""
    lagrangian_lr: float = 5e-4
    """step eta of lambda <- max(0, lambda + eta (J_c - d)) (eq. 11); small, so lambda is the slowest timescale"""
    gamma: float = 0.99
    """discount factor (reward and cost)"""
    gae_lambda: float = 0.95
    """GAE lambda (reward and cost)"""
    target_kl: float = 0.01
    """KL radius delta of the fixed natural-gradient step (quadratic model of the mean KL)"""
    cg_iters: int = 15
    """conjugate-gradient iterations for H^-1 g"""
    cg_damping: float = 0.1
    """damping added to the Fisher-vector product (H + damping * I)"""
    fisher_subsample: int = 4
    """Fisher-vector products use every k-th state of the batch (1 = all; OpenAI Baselines' TRPO uses 5)"""
    critic_lr: float = 3e-3
    """Adam learning rate of the reward and cost critics"""
    critic_epochs: int = 20
    """passes over the epoch's data for the critics"""
    critic_minibatch_size: int = 512
    """critic minibatch size"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer sizes of actor and critics (tanh)"""


class Lagrange:
    """lambda of the penalised reward r - lambda c, by the projected dual ascent of Tessler et al.
    eq. (11): lambda <- max(0, lambda + lr * (J_c - d)), one plain step per epoch."""

    def __init__(self, cost_limit: float, init: float, lr: float):
        self.cost_limit, self.lr = cost_limit, lr
        self.value = max(0.0, float(init))

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])

    def update(self, ep_cost: float) -> float:
        """One dual step from this epoch's mean episode cost J_c; returns the new lambda."""
        if not math.isfinite(ep_cost):
            raise FloatingPointError(f"non-finite episode cost {ep_cost} for the multiplier")
        self.value = max(0.0, self.value + self.lr * (ep_cost - self.cost_limit))
        return self.value


def npg_step(actor: Actor, norm_obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor, args: Args) -> dict:
    """One natural policy gradient step in place, with the fixed KL-radius step size and no line
    search; returns its diagnostics (the measured KL is logged, not enforced). delta: the KL radius
    of the quadratic model; H = the Fisher matrix, damped by cg_damping, on every fisher_subsample-th
    state; x = H^-1 g by cg_iters conjugate-gradient iterations."""
    delta, cg_iters, cg_damping, fisher_subsample = (
        args.target_kl, args.cg_iters, args.cg_damping, args.fisher_subsample)
    with torch.no_grad():
        old_mean, old_log_std = actor(norm_obs)
        old_logp = torch.distributions.Normal(old_mean, old_log_std.exp()).log_prob(actions).sum(-1)

    def surrogate() -> torch.Tensor:
        logp = actor.distribution(norm_obs).log_prob(actions).sum(-1)
        return (torch.exp(logp - old_logp) * adv).mean()

    params = list(actor.parameters())
    surr_old = surrogate()
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(surr_old, params)])
    if not torch.isfinite(g).all():
        raise FloatingPointError("non-finite policy gradient")
    fisher_obs = norm_obs[::fisher_subsample]  # H is a mean over states: a subsample estimates it
    x, cg_residual = conjugate_gradient(
        lambda v: fisher_vector_product(actor, fisher_obs, v, cg_damping), g, cg_iters)
    xHx = torch.dot(x, fisher_vector_product(actor, fisher_obs, x, cg_damping))
    # the quadratic model of the KL, 0.5 * s^T H s, equals delta for s = sqrt(2 delta / x^T H x) x
    step_size = torch.sqrt(2 * delta / (xHx + 1e-12))
    full_step = step_size * x
    if not torch.isfinite(full_step).all():
        raise FloatingPointError("non-finite natural-gradient step")
    surr_old = surr_old.detach()
    set_flat_params(actor, get_flat_params(actor) + full_step)
    with torch.no_grad():
        kl = float(mean_kl(actor, norm_obs, old_mean, old_log_std))
        surr_new = float(surrogate())
    if not (math.isfinite(kl) and math.isfinite(surr_new)):
        raise FloatingPointError("non-finite KL or surrogate after the natural-gradient step")
    return {"kl": kl, "quadratic_kl": float(0.5 * step_size**2 * xHx), "step_size": float(step_size),
            "surrogate_improvement": surr_new - float(surr_old), "expected_improvement": float(g @ full_step),
            "step_norm": float(full_step.norm()), "cg_residual": cg_residual}


# --- Shared math: GAE, conjugate gradient, Fisher-vector product, flat parameters, critics ---
def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
                episode_end: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE over a [T, num_envs] block; next_values[t] = V of the true successor (the final observation of a truncated
    episode), 0 after a termination; the recursion stops at every episode end. Returns (advantages, returns)."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    carry = np.zeros(rewards.shape[1:], np.float64)
    for t in reversed(range(T)):
        carry = deltas[t] + gamma * lam * (1.0 - episode_end[t]) * carry
        adv[t] = carry
    return adv, adv + values


def conjugate_gradient(Avp, b: torch.Tensor, iters: int, residual_tol: float = 1e-10) -> tuple[torch.Tensor, float]:
    """Solve A x = b for symmetric positive-definite A given only x -> A x. Returns (x, ||b - A x||)."""
    x, r, p = torch.zeros_like(b), b.clone(), b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr <= residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / torch.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, float(torch.sqrt(rr))


def gaussian_kl(mean0, log_std0, mean1, log_std1) -> torch.Tensor:
    """KL(N0 || N1) per state, summed over action dims."""
    var0, var1 = (2 * log_std0).exp(), (2 * log_std1).exp()
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1).pow(2)) / (2 * var1) - 0.5).sum(-1)


def mean_kl(actor: Actor, norm_obs: torch.Tensor, old_mean: torch.Tensor, old_log_std: torch.Tensor) -> torch.Tensor:
    """mean_s KL(pi_old(.|s) || pi_theta(.|s)) with pi_old given by its (detached) outputs."""
    mean, log_std = actor(norm_obs)
    return gaussian_kl(old_mean, old_log_std, mean, log_std).mean()


def fisher_vector_product(actor: Actor, norm_obs: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    """(H + damping I) v with H = Hessian of the mean KL(pi_k || pi_theta) at theta = theta_k,
    by double backpropagation (Pearlmutter); H is never formed."""
    params = list(actor.parameters())
    with torch.no_grad():
        old_mean, old_log_std = actor(norm_obs)
    kl = mean_kl(actor, norm_obs, old_mean, old_log_std)
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    hvp = torch.autograd.grad(flat_grad @ v, params)
    return torch.cat([h.reshape(-1) for h in hvp]) + damping * v


def get_flat_params(module: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    """Each parameter gets its slice of `flat` in a storage of its own: views into `flat` (vector_to_parameters) round
    small matmuls differently (a resumed run would differ); an in-place copy would change tensors read from the old."""
    offset = 0
    for p in module.parameters():
        p.data = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def fit_critics(critics: list[nn.Module], optimizer: torch.optim.Optimizer, norm_obs: torch.Tensor,
                targets: list[torch.Tensor], epochs: int, minibatch_size: int) -> list[float]:
    """Regress each critic V(s) on its GAE returns: per shuffled minibatch one step on the sum of their MSE losses
    (disjoint parameters: each gets its own Adam step). Returns each one's mean loss; a non-finite loss raises."""
    loss_sums, steps = torch.zeros(len(critics)), 0
    for _ in range(epochs):
        perm = torch.randperm(norm_obs.shape[0])
        for start in range(0, norm_obs.shape[0], minibatch_size):
            idx = perm[start:start + minibatch_size]
            losses = torch.stack([(critic(norm_obs[idx]).squeeze(-1) - target[idx]).pow(2).mean()
                                  for critic, target in zip(critics, targets)])
            if not torch.isfinite(losses).all():
                raise FloatingPointError("non-finite critic loss")
            optimizer.zero_grad()
            losses.sum().backward()
            optimizer.step()
            loss_sums += losses.detach()
            steps += 1
    return (loss_sums / steps).tolist()


# --- Model: observation normaliser, Gaussian actor, critics ---
OBS_CLIP = 10.0  # normalised observations are clipped to [-10, 10]
LOG_STD_INIT = -0.5  # initial policy std exp(-0.5) ~ 0.6 on a [-1, 1] action box


class RunningMeanStd:
    """Running mean/variance over observations, merged batch by batch (Chan et al. parallel
    algorithm), so the result equals numpy's mean/var over all data seen."""
    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4):
        self.mean, self.var, self.count = np.zeros(shape, np.float64), np.ones(shape, np.float64), epsilon
        self._refresh()

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64).reshape(-1, *self.mean.shape)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var, self.count = m2 / total, total
        self._refresh()

    def _refresh(self) -> None:
        self._mean_t = torch.as_tensor(self.mean, dtype=torch.float32)
        self._std_t = torch.as_tensor(np.sqrt(self.var + 1e-8), dtype=torch.float32)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp((obs - self._mean_t) / self._std_t, -OBS_CLIP, OBS_CLIP)

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var = np.asarray(state["mean"], np.float64).copy(), np.asarray(state["var"], np.float64).copy()
        self.count = float(state["count"])
        self._refresh()


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(in_dim: int, hidden_sizes: tuple[int, ...], out_dim: int, out_std: float) -> nn.Sequential:
    layers, last = [], in_dim
    for h in hidden_sizes:
        layers += [layer_init(nn.Linear(last, h)), nn.Tanh()]
        last = h
    layers.append(layer_init(nn.Linear(last, out_dim), std=out_std))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Gaussian policy: tanh MLP mean, state-independent log-std (the common checkpoint format)."""
    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden_sizes, act_dim, out_std=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), LOG_STD_INIT))

    def forward(self, norm_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean_net(norm_obs), self.log_std.expand(norm_obs.shape[0], -1)

    def distribution(self, norm_obs: torch.Tensor) -> torch.distributions.Normal:
        mean, log_std = self(norm_obs)
        return torch.distributions.Normal(mean, log_std.exp())


# --- Rollout and environments ---
NAVIGATION_TASKS = ("Goal", "Button", "Push", "Circle", "Race", "FormulaOne")


class Rollout:
    """One epoch of every env's experience (raw observations, SPEC 3) in arrays (steps, envs, ...) allocated once.
    Episode sums carry over epochs; `episode` numbers each env's running episode (what a resumed run restarts)."""
    def __init__(self, envs, num_steps: int):
        n, obs_dim, act_dim = envs.num_envs, envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        self.envs, self.num_steps = envs, num_steps
        self.low, self.high = envs.single_action_space.low, envs.single_action_space.high
        self.obs = np.zeros((num_steps, n, obs_dim), np.float32)
        self.next_obs = np.zeros((num_steps, n, obs_dim), np.float32)  # s' of each step, also when the episode ended
        self.act = np.zeros((num_steps, n, act_dim), np.float32)  # unclipped samples
        self.rew, self.cost = np.zeros((num_steps, n)), np.zeros((num_steps, n))
        self.term = np.zeros((num_steps, n))  # terminated: no bootstrap from s'
        self.end = np.zeros((num_steps, n))  # terminated or truncated: GAE stops here
        self.ep_ret, self.ep_cost, self.ep_len, self.episode = np.zeros(n), np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.finished_ret, self.finished_cost, self.finished_len = [], [], []

    def reset(self, seed: int, resumed: bool) -> np.ndarray:
        """Reset every env at its episode number (0, or a resumed run's); returns the first observations."""
        if resumed:
            # a navigation task's first reset reads its accelerometer differently from every later reset with the
            # same seed (measured on CarCircle1): one extra reset makes a restarted episode start as it did
            self.envs.reset(seed=seed)
        return self.envs.reset(seed=seed, options={"episode": self.episode.tolist()})[0]

    def collect(self, actor: Actor, obs_rms: RunningMeanStd, obs: np.ndarray) -> np.ndarray:
        """num_steps steps from `obs` with pi(.|s); returns the observation to continue from."""
        self.finished_ret, self.finished_cost, self.finished_len = [], [], []
        for t in range(self.num_steps):
            self.obs[t] = obs
            with torch.inference_mode():  # pi(.|s) of every env in one call, without a Normal (~100 us/step cheaper)
                mean = actor.mean_net(obs_rms.normalize(torch.as_tensor(obs, dtype=torch.float32)))
                self.act[t] = action = (mean + actor.log_std.exp() * torch.randn_like(mean)).numpy()
            obs, reward, cost, terminated, truncated, info = self.envs.step(np.clip(action, self.low, self.high))
            done = np.logical_or(terminated, truncated)
            self.rew[t], self.cost[t], self.term[t], self.end[t], self.next_obs[t] = reward, cost, terminated, done, obs
            self.ep_ret += reward
            self.ep_cost += cost
            self.ep_len += 1
            for i in np.flatnonzero(done):
                self.next_obs[t, i] = info["final_observation"][i]  # true successor for the bootstrap
                self.finished_ret.append(self.ep_ret[i])
                self.finished_cost.append(self.ep_cost[i])
                self.finished_len.append(self.ep_len[i])
            self.ep_ret[done], self.ep_cost[done], self.ep_len[done] = 0.0, 0.0, 0
            self.episode += done  # the autoreset started each done env's next episode
        return obs

    def gae(self, rewards: np.ndarray, critic: nn.Module, norm_obs: torch.Tensor, norm_next_obs: torch.Tensor,
            gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """GAE(gamma, lambda) advantages and returns of `rewards` (rew or cost) under `critic` on the normalised s, s'."""
        with torch.no_grad():
            values = critic(norm_obs).numpy().reshape(rewards.shape)
            next_values = critic(norm_next_obs).numpy().reshape(rewards.shape)
        return compute_gae(rewards, values, next_values, self.term, self.end, gamma, lam)

    def episode_stats(self) -> dict:
        """progress.csv's means over the episodes that finished this epoch (nan when none did)."""
        mean = lambda x: float(np.mean(x)) if x else float("nan")  # noqa: E731
        return {"ep_ret": mean(self.finished_ret), "ep_cost": mean(self.finished_cost),
                "ep_len": mean(self.finished_len), "episodes": len(self.finished_ret)}


def make_vector_env(env_id: str, num_envs: int, vector_mode: str, capture_video: bool = False,
                    video_dir: Optional[Path] = None):
    """Safety-Gymnasium vector env (async pays for slow navigation tasks, sync for velocity); env 0 may record videos."""
    from safety_gymnasium.vector import SafetyAsyncVectorEnv, SafetySyncVectorEnv
    use_async = vector_mode == "async" or (vector_mode == "auto" and is_navigation_task(env_id) and num_envs > 1)
    fns = [make_env(env_id, i, capture_video, video_dir) for i in range(num_envs)]
    return SafetyAsyncVectorEnv(fns) if use_async else SafetySyncVectorEnv(fns)


def make_env(env_id: str, idx: int = 0, capture_video: bool = False, video_dir: Optional[Path] = None):
    def thunk():
        import gymnasium
        import safety_gymnasium
        if multiprocessing.parent_process() is not None:  # an async worker: Ctrl-C and SIGTERM are the main process's
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not (capture_video and idx == 0):
            return seed_each_episode(without_skybox(safety_gymnasium.make(env_id)), idx)
        # navigation: the fixed overview camera; velocity: the default camera, which tracks the robot
        camera = {"camera_name": "fixedfar"} if is_navigation_task(env_id) else {}
        env = safety_gymnasium.make(env_id, render_mode="rgb_array", width=VIDEO_SIZE, height=VIDEO_SIZE, **camera)
        # gymnasium 0.28's recorder closes the env after each video, after which a velocity task's renderer
        # draws black frames: that close is ignored. RecordVideo speaks gymnasium's 5-tuple step (cost in info).
        keep_open = type("KeepRendererOpen", (gymnasium.Wrapper,), {"close": lambda self: None})
        record = lambda e: gymnasium.wrappers.RecordVideo(  # noqa: E731
            e, str(video_dir), episode_trigger=lambda episode: episode % VIDEO_EVERY == 0, disable_logger=True)
        return seed_each_episode(safety_gymnasium.wrappers.with_gymnasium_wrappers(env, keep_open, record), idx)

    return thunk


def seed_each_episode(env, idx: int):
    """Episode k of env idx starts from a seed drawn from (reset seed, k): a resumed run restarts its envs
    at the saved episode numbers (reset(seed, options={"episode": [k per env]})) and sees the same starts."""
    import gymnasium

    class SeedEachEpisode(gymnasium.Wrapper):
        def reset(self, *, seed=None, options=None):
            options = dict(options or {})
            first_episodes = options.pop("episode", None)
            if seed is not None:
                self.base_seed, self.episode = seed, 0 if first_episodes is None else int(first_episodes[idx])
            else:  # the vector env's autoreset: the next episode
                self.episode += 1
            episode_seed = int(np.random.SeedSequence([self.base_seed, self.episode]).generate_state(1)[0])
            return self.env.reset(seed=episode_seed, options=options or None)

    return SeedEachEpisode(env)


def is_navigation_task(env_id: str) -> bool:
    return "Velocity" not in env_id and any(t in env_id for t in NAVIGATION_TASKS)


# --- Plumbing: argument checks, env speed-up, video, checkpoints, resuming, signals, logging ---
CHECKPOINT_FORMAT_VERSION = 1
RESUME_FILE = "resume.pt"  # in the run folder: everything --resume needs to continue the run
RESUME_FORMAT_VERSION = 1
VIDEO_EVERY = 50  # --capture-video records episodes 0, 50, 100, ... of env 0
VIDEO_SIZE = 256  # width and height in pixels of recorded frames
TORCH_THREADS = 1  # 64x64 networks: one thread is as fast, and 2+ threads spin-wait badly when envs share the cores


def validate_args(args: Args) -> None:
    """One-line errors for bad input, raised before anything is built."""
    check_common_args(args)
    require(args.lagrangian_lr > 0, f"--lagrangian-lr must be positive, got {args.lagrangian_lr}")
    require(min(args.cost_limit, args.lagrangian_multiplier_init) >= 0, "--cost-limit and --lagrangian-multiplier-init must be non-negative")
    require(args.target_kl > 0 and 0 < args.gamma <= 1 and 0 <= args.gae_lambda <= 1, "need --target-kl > 0, 0 < --gamma <= 1, 0 <= --gae-lambda <= 1")


def check_common_args(args: Args) -> None:
    """Checks every script shares: renderer, env id, finite floats, positive ints, a step per env, an epoch."""
    if args.capture_video:  # first: a bad MUJOCO_GL can break `import mujoco` itself
        check_renderer()
    from safety_gymnasium.utils.registration import safe_registry  # the ids safety_gymnasium.make accepts
    close = ", ".join(difflib.get_close_matches(args.env_id, safe_registry, n=3, cutoff=0.6)) or "a task of safety_gymnasium"
    require(args.env_id in safe_registry, f"unknown env id '{args.env_id}'. Did you mean: {close}?")
    for f in fields(args):
        value, flag = getattr(args, f.name), "--" + f.name.replace("_", "-")
        require(f.type != "float" or math.isfinite(value), f"{flag} must be a finite number, got {value}")
        require(f.type != "int" or f.name == "seed" or value > 0, f"{flag} must be positive, got {value}")
    require(args.num_envs <= args.steps_per_epoch <= args.total_timesteps, f"--total-timesteps ({args.total_timesteps}) must be "
            f"at least --steps-per-epoch ({args.steps_per_epoch}), and that at least --num-envs ({args.num_envs})")
    require(min(args.hidden_sizes, default=0) > 0, f"--hidden-sizes must be positive integers, got {args.hidden_sizes}")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"error: {message}")


def check_renderer() -> None:
    """Probe the off-screen renderer in a child (no display or OSMesa aborts the process that tries); triton first."""
    import torch._dynamo  # noqa: F401
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless and unset: EGL is the renderer that works without a display
    probe = "import mujoco; mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>')).render()"  # one off-screen frame
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1][:150]
    require(result.returncode == 0, f"cannot record video with MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')} ({reason}); "
            "set MUJOCO_GL=egl (headless) or run with a display")


def without_skybox(env):
    """Navigation resets without the skybox texture (unseen unless rendered): 3-4x faster, same episodes."""
    import gymnasium
    import mujoco
    import safety_gymnasium.world as world
    if not hasattr(env.unwrapped, "task") or env.unwrapped.render_mode is not None or env.unwrapped.task.observe_vision:
        return env  # rendering, vision and velocity envs come back unchanged
    skybox = re.compile(r'<texture\b[^>]*\btype="skybox"[^>]*?(?:/>|>\s*</texture>)')
    model = SimpleNamespace(from_xml_string=lambda xml, *a, **kw: mujoco.MjModel.from_xml_string(skybox.sub("", xml), *a, **kw))
    patched = SimpleNamespace(**{**vars(mujoco), "MjModel": model})  # safety_gymnasium.world's `mujoco` during one reset

    class WithoutSkybox(gymnasium.Wrapper):
        def reset(self, **kwargs):  # this env's resets only: other envs of the process keep theirs
            world.mujoco = patched
            try:
                return self.env.reset(**kwargs)
            finally:
                world.mujoco = mujoco

    return WithoutSkybox(env)


def log_new_videos(log: SimpleNamespace, global_step: int, key: str = "videos/episodes") -> None:
    """--track: upload to wandb every mp4 that RecordVideo (--capture-video) finished since the last call."""
    new = sorted(set((log.run_dir / "videos").glob("*.mp4")) - log.videos, key=lambda p: p.stat().st_mtime)
    if log.args.track and new:
        log.videos.update(new)
        wandb = sys.modules["wandb"]
        wandb.log({key: [wandb.Video(str(p), caption=p.stem, format="mp4") for p in new]}, step=global_step)


def save_checkpoint(path: str | Path, actor: Actor, obs_rms: RunningMeanStd, env_id: str, algo: str,
                    args: Args, global_step: int) -> None:
    """The policy in the common checkpoint format (SPEC 3) that every script and tool reads; never a NaN."""
    state = {k: v.detach().clone() for k, v in actor.state_dict().items()}
    require(all(torch.isfinite(v).all() for v in state.values()), f"refusing to save a non-finite policy to {path}")
    atomic_save({"format_version": CHECKPOINT_FORMAT_VERSION, "algo": algo, "env_id": env_id,
                 "obs_dim": int(obs_rms.mean.shape[0]), "act_dim": int(actor.log_std.shape[0]),
                 "hidden_sizes": list(args.hidden_sizes), "activation": "tanh", "actor_state_dict": state,
                 "obs_rms": obs_rms.state_dict(), "args": asdict(args), "global_step": int(global_step)}, Path(path))


def atomic_save(obj, path: Path) -> None:
    """torch.save through a temporary file and a rename: a kill during the write leaves the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_resume(cli: Args) -> tuple[Args, dict]:
    """The saved arguments (other flags are ignored: a run is one experiment) and resume.pt of --resume's run."""
    path = Path(cli.resume) / RESUME_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # missing, or not a file torch can read
        raise SystemExit(f"error: nothing to resume in {cli.resume}: no readable {RESUME_FILE} ({type(exc).__name__})")
    require(isinstance(state, dict) and state.get("resume_format") == RESUME_FORMAT_VERSION,
            f"{path} is not a resume checkpoint of this version of the repository; start the run again")
    require(state.get("script") == Path(__file__).name, f"{path} belongs to a {state.get('script')} run; resume it with that script")
    require(set(state["args"]) <= {f.name for f in fields(Args)}, f"{cli.resume} was started by another version of {Path(__file__).name}")
    saved = Args(**{**state["args"], "resume": cli.resume})
    ignored = [f"--{f.name.replace('_', '-')}" for f in fields(Args)
               if getattr(cli, f.name) not in (getattr(Args(), f.name), getattr(saved, f.name))]
    if ignored:
        print(f"warning: --resume continues with the run's saved arguments; ignored: {' '.join(ignored)}")
    return saved, state


def start_run(args: Args) -> tuple[Args, Optional[dict], Optional[Path]]:
    """(args, resume checkpoint, run folder: None when the resumed run is finished); config.json; wandb."""
    args, resume = load_resume(args) if args.resume else (args, None)
    if resume and resume["finished"] and (Path(args.resume) / f"{args.exp_name}.pt").is_file():
        print(f"{args.resume}: the run is finished ({resume['epoch']} epochs); nothing to resume")
        return args, resume, None  # (killed after its last epoch but before the final checkpoint: train writes it)
    validate_args(args)
    run_dir = Path(args.resume or Path(args.output_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        commit, *changes = subprocess.run("git rev-parse --verify -q HEAD && git status --porcelain -uno", shell=True,  # no git: null
                                          cwd=Path(__file__).parent, capture_output=True, text=True).stdout.splitlines() or [None]
        (run_dir / "config.json").write_text(json.dumps({**asdict(args), "git_commit": commit, "git_dirty": commit and bool(changes)}, indent=2))
    if args.track:
        import wandb
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args), name=run_dir.name,
                   save_code=True, dir=str(run_dir), id=resume and resume["wandb_id"], resume=resume and "allow")
    return args, resume, run_dir


def restore(resume: Optional[dict], modules: dict, roll: Rollout, **counters) -> list:
    """The loop's `counters`; with --resume, the saved ones, every module, the RNG states and episode numbers."""
    if not resume:
        return list(counters.values())
    try:
        for name, module in modules.items():
            module.load_state_dict(resume["modules"][name])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"error: {RESUME_FILE} was written by another version of {Path(__file__).name} ({type(exc).__name__}); start again")
    random.setstate(resume["rng"]["python"])
    np.random.set_state(resume["rng"]["numpy"])
    torch.set_rng_state(resume["rng"]["torch"])
    roll.episode = resume["episode"]
    print(f"resuming at epoch {resume['epoch'] + 1}: episodes under way when the run stopped are started afresh")
    return [resume[k] for k in counters]


def open_log(run_dir: Path, args: Args, done: int, num_epochs: int, elapsed: float) -> SimpleNamespace:
    """progress.csv (line-buffered) cut to the `done` epochs of the checkpoint (later ones run again), the run's clock."""
    path, batch = run_dir / "progress.csv", args.steps_per_epoch // args.num_envs * args.num_envs
    if done:  # one truncate call: a kill leaves the file whole or cut
        rows = path.read_bytes().splitlines(keepends=True)[:done + 1]
        require(len(rows) == done + 1, f"{path} has {len(rows) - 1} rows, its checkpoint {done}; start the run again")
        os.truncate(path, sum(map(len, rows)))
    print(f"run {run_dir.name}: {num_epochs} epochs x {batch} steps")
    now = time.time()
    return SimpleNamespace(run_dir=run_dir, args=args, csv_file=open(path, "a" if done else "w", newline="", buffering=1), writer=None,
                           first=done + 1, num_epochs=num_epochs, batch=batch, epoch_start=now, start_time=now - elapsed, videos=set())


class GracefulStop:
    """SIGINT (Ctrl-C), SIGTERM: finish the epoch and its checkpoint, then exit; a second one stops at once."""
    def __init__(self):
        self.signum, in_main_thread = 0, threading.current_thread() is threading.main_thread()
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}

    def handle(self, signum, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this epoch's checkpoint (send it again to stop at once)", flush=True)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def log_epoch(log: SimpleNamespace, row: dict, show: str) -> None:
    """The epoch's row (timed) to progress.csv and wandb, new videos to wandb, a console line ending in `show`."""
    now = time.time()
    row.update(sps=int(log.batch / (now - log.epoch_start)), time_elapsed=round(now - log.start_time, 2))
    if log.writer is None:  # the columns of the first row (a resumed run's file has the same header)
        log.writer = csv.DictWriter(log.csv_file, fieldnames=list(row))
        if log.first == 1:
            log.writer.writeheader()
    log.writer.writerow(row)
    if log.args.track:
        sys.modules["wandb"].log({f"charts/{k}": v for k, v in row.items() if isinstance(v, (int, float))}, step=row["global_step"])
    log_new_videos(log, row["global_step"])
    left = (now - log.start_time) / row["epoch"] * (log.num_epochs - row["epoch"])
    print(f"epoch {row['epoch']:4d} step {row['global_step']:8d} | sps {row['sps']:5d} | ep_ret {row['ep_ret']:8.2f} ep_cost "
          f"{row['ep_cost']:7.2f} | {show} | {timedelta(seconds=int(now - log.start_time))} ~{timedelta(seconds=int(left))} left", flush=True)


def end_epoch(log: SimpleNamespace, epoch: int, stop: GracefulStop, modules: dict, roll: Rollout, **counters) -> None:
    """resume.pt (every module's state, never a NaN network; RNG states; counters) every checkpoint_every epochs, at
    the last and on a stop signal, after which the run exits. An episode under way restarts afresh as the next one."""
    args, last, path = log.args, epoch == log.num_epochs, log.run_dir / RESUME_FILE
    if epoch % args.checkpoint_every == 0 or last or stop.signum:
        states = {name: module.state_dict() for name, module in modules.items()}
        for name, state in states.items():
            require(all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v)), f"refusing to save a non-finite {name} to {path}")
        atomic_save({"resume_format": RESUME_FORMAT_VERSION, "script": Path(__file__).name, "modules": states, "args": asdict(args),
                     "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
                     "epoch": epoch, "finished": last, "episode": roll.episode + (roll.ep_len > 0), "elapsed": time.time() - log.start_time,
                     "wandb_id": args.track and sys.modules["wandb"].run.id or None, **counters}, path)
    if stop.signum and not last:
        if args.track:
            sys.modules["wandb"].finish()
        print(f"stopped after this epoch; continue with: python {os.path.relpath(__file__)} --resume {log.run_dir}", flush=True)
        raise SystemExit(128 + stop.signum)
    log.epoch_start = time.time()


def finish(log: SimpleNamespace, envs, actor: Actor, obs_rms: RunningMeanStd, algo: str, global_step: int) -> None:
    """Close the envs (which writes the last video, uploaded with --track) and save the policy."""
    envs.close()  # also writes the video of an episode still being recorded
    log_new_videos(log, global_step, key="videos/last_episode")  # its own key: this step's episodes may be logged already
    log.csv_file.close()
    save_checkpoint(log.run_dir / f"{log.args.exp_name}.pt", actor, obs_rms, log.args.env_id, algo, log.args, global_step)
    print(f"saved {log.run_dir / f'{log.args.exp_name}.pt'}")
    if log.args.track:
        sys.modules["wandb"].finish()


def main(args: Args) -> Path:
    """Train RCPO, or continue a run with --resume; returns the run folder."""
    args, resume, run_dir = start_run(args)
    if run_dir is None:
        return Path(args.resume)

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(TORCH_THREADS)

    # envs (--capture-video: env 0 records into runs/{run_name}/videos/); every exit closes them
    envs = make_vector_env(args.env_id, args.num_envs, args.vector_mode, args.capture_video, run_dir / "videos")
    envs.single_action_space.seed(args.seed)
    stop = GracefulStop()
    try:
        train(args, run_dir, envs, resume, stop)
    except FloatingPointError as exc:  # a non-finite update: this epoch is not saved
        raise SystemExit(f"error: {exc}; no checkpoint written. Try a smaller --target-kl or --critic-lr, or another --seed")
    finally:
        stop.restore()
        envs.close()  # also writes the video of an episode still being recorded
    return run_dir


def train(args: Args, run_dir: Path, envs, resume: Optional[dict], stop: GracefulStop) -> None:
    """The training loop of main: from scratch, or from the resume checkpoint `resume`."""
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    # agent: policy, separate reward and cost critics, multiplier
    obs_rms = RunningMeanStd((obs_dim,))
    actor = Actor(obs_dim, act_dim, args.hidden_sizes)
    reward_critic = mlp(obs_dim, args.hidden_sizes, 1, out_std=1.0)
    cost_critic = mlp(obs_dim, args.hidden_sizes, 1, out_std=1.0)
    critic_opt = torch.optim.Adam([*reward_critic.parameters(), *cost_critic.parameters()], lr=args.critic_lr, fused=True)  # fused: 20% faster on CPU
    lagrange = Lagrange(args.cost_limit, args.lagrangian_multiplier_init, args.lagrangian_lr)

    # one epoch's experience, in arrays allocated once
    num_steps = args.steps_per_epoch // args.num_envs
    batch_size = num_steps * args.num_envs
    num_epochs = args.total_timesteps // batch_size
    roll = Rollout(envs, num_steps)

    # the loop's state; --resume restores it, and every object of `stateful`, from the last checkpoint
    stateful = {"actor": actor, "reward_critic": reward_critic, "cost_critic": cost_critic, "critic_opt": critic_opt,
                "obs_rms": obs_rms, "lagrange": lagrange}
    done, global_step, total_cost, elapsed = restore(resume, stateful, roll, epoch=0, global_step=0, total_cost=0.0, elapsed=0.0)
    obs = roll.reset(args.seed, resumed=resume is not None)
    log = open_log(run_dir, args, done, num_epochs, elapsed)

    for epoch in range(done + 1, num_epochs + 1):
        obs = roll.collect(actor, obs_rms, obs)  # ---------------- rollout with pi_k ----------------
        global_step += batch_size
        total_cost += float(roll.cost.sum())

        # ---------------- 1. multiplier: one projected dual ascent step on J_c - d (eq. 11) ----------------
        # J_c = mean cost of the episodes that finished this epoch; none finished keeps lambda
        if roll.finished_cost:
            lagrange.update(float(np.mean(roll.finished_cost)))
        lagrange_multiplier = lagrange.value

        # ---------------- 2. penalised advantage (normaliser refreshed, then fixed for the update) ----------------
        obs_rms.update(roll.obs.reshape(-1, obs_dim))
        b_obs = obs_rms.normalize(torch.as_tensor(roll.obs.reshape(-1, obs_dim)))
        b_next_obs = obs_rms.normalize(torch.as_tensor(roll.next_obs.reshape(-1, obs_dim)))
        b_act = torch.as_tensor(roll.act.reshape(-1, act_dim))
        with torch.no_grad():
            reward_values = reward_critic(b_obs).squeeze(-1).numpy().reshape(num_steps, args.num_envs)
            reward_next_values = reward_critic(b_next_obs).squeeze(-1).numpy().reshape(num_steps, args.num_envs)
            cost_values = cost_critic(b_obs).squeeze(-1).numpy().reshape(num_steps, args.num_envs)
            cost_next_values = cost_critic(b_next_obs).squeeze(-1).numpy().reshape(num_steps, args.num_envs)
        _, reward_ret = compute_gae(roll.rew, reward_values, reward_next_values, roll.term, roll.end,
                                    args.gamma, args.gae_lambda)
        _, cost_ret = compute_gae(roll.cost, cost_values, cost_next_values, roll.term, roll.end,
                                  args.gamma, args.gae_lambda)
        # penalised reward r - lambda c (eq. 8) with the penalised critic V_r - lambda V_c
        penalised_adv, _ = compute_gae(roll.rew - lagrange_multiplier * roll.cost,
                                       reward_values - lagrange_multiplier * cost_values,
                                       reward_next_values - lagrange_multiplier * cost_next_values,
                                       roll.term, roll.end, args.gamma, args.gae_lambda)
        penalised_adv = torch.as_tensor(penalised_adv.reshape(-1), dtype=torch.float32)
        penalised_adv = (penalised_adv - penalised_adv.mean()) / (penalised_adv.std() + 1e-8)

        # ---------------- 3. policy: natural gradient step on the penalised reward ----------------
        diag = npg_step(actor, b_obs, b_act, penalised_adv, args)

        # ---------------- 4. critics on their GAE returns ----------------
        targets = [torch.as_tensor(ret.reshape(-1), dtype=torch.float32) for ret in (reward_ret, cost_ret)]
        reward_value_loss, cost_value_loss = fit_critics([reward_critic, cost_critic], critic_opt, b_obs, targets,
                                                         args.critic_epochs, args.critic_minibatch_size)

        # ---------------- logging ----------------
        row = {"global_step": global_step, "epoch": epoch, **roll.episode_stats(),
               "cost_rate": total_cost / global_step, "lagrange_multiplier": lagrange_multiplier, **diag,
               "reward_value_loss": reward_value_loss, "cost_value_loss": cost_value_loss}
        log_epoch(log, row, f"lambda {lagrange_multiplier:.4f} | kl {diag['kl']:.5f} step {diag['step_size']:.4f}")
        end_epoch(log, epoch, stop, stateful, roll, global_step=global_step, total_cost=total_cost)

    finish(log, envs, actor, obs_rms, "rcpo", global_step)


if __name__ == "__main__":
    main(tyro.cli(Args))
