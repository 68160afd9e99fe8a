"""sTRPO: Safe Trust Region Policy Optimization (the main job of this repository).

Paper: Rahman, Shefin, Gupta, Alqahtani, "Safe, Trust Region Policy Optimization for Constrained
Reinforcement Learning", sections 4.2-4.3, eq. (5)-(10), Theorem 1. TRPO whose step stays inside the
KL ball around pi_k *and* moves away from a fixed pi_unsafe trained to maximise cost
(unsafe_cvar_trpo.py): the update lives in an annulus of policy space. Per epoch:

  1. reward and cost GAEs (two critics), each z-scored over the batch                    (eq. 6)
  2. a PID Lagrange multiplier lambda_cost from the epoch's mean episode cost vs the limit
  3. joint advantage  A~joint = A~r - lambda_cost * A~c                                   (eq. 6)
  4. g = grad of the joint surrogate, H = Fisher (only through H v),
     phi = grad mean_s KL(pi_unsafe || pi_theta), all at theta_k                          (eq. 7)
  5. the exact optimum of  max g^T x  s.t.  1/2 x^T H x <= delta1,  phi^T x >= b        (eq. 8)
     x = H^-1 (g + lambda2 phi) / lambda1 with the KKT multipliers in closed form         (eq. 9)
  6. line search on measured KL(pi_k || pi) <= delta1 and a measured rise of KL(pi_unsafe || pi)
     of at least b/2 (Theorem 1); none passes: aim at a larger margin and solve again
  7. eq. 8 infeasible or nothing accepted: the recovery step along H^-1 phi (--fallback)  (eq. 10)
  8. critics regressed on their GAE returns.

Why each reading of the paper was chosen, with the measurements behind it: docs/algorithms/strpo.md;
the modes compared on real runs: docs/strpo_modes.md.

Usage:
    python strpo.py --env-id SafetyCarCircle1-v0
    python strpo.py --env-id SafetyHopperVelocity-v1 --delta1 0.01 --delta2 1e-4
    python strpo.py --env-id SafetyHopperVelocity-v1 --lambda2-mode fixed --lambda2 1 --fallback reverse  # the literal reading
    python strpo.py --env-id SafetyCarGoal1-v0 --unsafe-policy-path my_unsafe.pt --exclusion-target absolute --epsilon-excl 1.0
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
from collections import deque
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
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
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
    """episode cost budget d that the PID multiplier steers the mean episode cost to"""

    # sTRPO (the reasons behind each reading: docs/algorithms/strpo.md)
    unsafe_policy_path: Optional[str] = None
    """checkpoint of pi_unsafe (any algorithm's checkpoint); default unsafe_policies/{env_id}.pt"""
    delta1: float = 1e-2
    """trust-region radius: mean KL(pi_k || pi_new) <= delta1 (eq. 8-9)"""
    delta2: float = 1e-4
    """exclusion margin of --exclusion-target step: phi^T (theta - theta_k) >= delta2 (eq. 8; appendix C.1's best)"""
    exclusion_target: Literal["step", "absolute"] = "step"
    """step = move away from pi_unsafe by delta2 each update (eq. 8); absolute = keep KL(pi_unsafe || pi) > epsilon_excl (F_k)"""
    epsilon_excl: float = 1.0
    """radius (mean KL, nats) of the unsafe ball of --exclusion-target absolute (Theorem 3)"""
    lambda2_mode: Literal["kkt", "fixed"] = "kkt"
    """lambda2 of eq. 9's H^-1 (g + lambda2 phi): kkt = eq. 8's exact KKT multiplier; fixed = --lambda2 (appendix C.3)"""
    lambda2: float = 1.0
    """the weight of --lambda2-mode fixed (appendix C.3 sweeps 0.01 and 1.0)"""
    exclusion_grad: Literal["exact", "importance"] = "exact"
    """phi of eq. 7: exact = autograd of the closed-form Gaussian KL; importance = the paper's estimator"""
    fallback: Literal["exclusion", "none", "reverse"] = "exclusion"
    """eq. 8 infeasible or no step accepted: exclusion = the recovery step along H^-1 phi (KL to pi_unsafe must not fall);
    none = keep theta_k; reverse = theta_k - alpha G, eq. 10 read literally (it can move toward pi_unsafe)"""
    no_exclusion: bool = False
    """ablation: lambda2 = 0 and no exclusion constraint (TRPO on the joint advantage)"""
    no_joint_advantage: bool = False
    """ablation: drive the step with the reward advantage only (no cost term in eq. 6)"""
    pid_kp: float = 0.1
    """proportional gain of the PID Lagrange multiplier (Stooke et al. 2020)"""
    pid_ki: float = 0.01
    """integral gain of the PID Lagrange multiplier"""
    pid_kd: float = 0.01
    """derivative gain of the PID Lagrange multiplier"""
    pid_d_delay: int = 10
    """epochs over which the derivative term compares the smoothed cost"""
    pid_ema: float = 0.95
    """EMA smoothing factor of the P and the D term (the same for both)"""
    lambda_cost_max: float = 100.0
    """cap of the multiplier lambda_cost"""
    gamma: float = 0.99
    """discount factor (reward and cost)"""
    gae_lambda: float = 0.95
    """GAE lambda (reward and cost)"""
    cg_iters: int = 15
    """conjugate-gradient iterations for each of H^-1 g and H^-1 phi"""
    cg_damping: float = 0.1
    """damping added to the Fisher-vector product (H + damping * I)"""
    fisher_subsample: int = 4
    """Fisher-vector products use every k-th state of the batch (1 = all; OpenAI Baselines' TRPO uses 5)"""
    backtrack_iters: int = 15
    """maximum backtracking steps of the line search"""
    backtrack_coeff: float = 0.8
    """step shrink factor per backtracking step"""
    critic_lr: float = 3e-3
    """Adam learning rate of the reward and cost critics"""
    critic_epochs: int = 20
    """passes over the epoch's data for the critics"""
    critic_minibatch_size: int = 512
    """critic minibatch size"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer sizes of actor and critics (tanh)"""


ADV_STD_FLOOR = 0.05  # sigma_min of eq. (6)'s z-scoring (appendix A's joint-advantage lemma); per-step units, see zscore
MARGIN_AIM = 1.01  # the QCQP aims at 1.01 b, a little inside the exclusion constraint, so CG error cannot break it
MARGIN_FRACTION = 0.5  # line search: the measured exclusion margin must reach half the required margin b (Theorem 1)
MARGIN_SEARCH = (1 / 64, 1 / 16, 1 / 4, 1 / 2)  # no step passed: aim at b + f (max margin - b) for these f in turn
SURROGATE_SLACK = 0.5  # active exclusion: the surrogate change may fall short of its linear prediction by 50%
QCQP_EPS = 1e-12  # quadratic forms below this are treated as zero (g = 0, phi = 0 or g parallel to phi)


def strpo_step(actor: Actor, norm_obs: torch.Tensor, actions: torch.Tensor, joint_adv: torch.Tensor,
               unsafe_mean: Optional[torch.Tensor], unsafe_log_std: Optional[torch.Tensor], args: Args) -> tuple[torch.Tensor, dict]:
    """One sTRPO update from theta_k (steps 4-7 of the docstring): the new flat parameters and the diagnostics that
    make Theorem 1 observable; the actor is left at theta_k. unsafe_mean, unsafe_log_std: pi_unsafe's outputs on the
    batch states (None only with --no-exclusion). The ablations (--no-exclusion, --lambda2-mode fixed, --fallback
    none/reverse) branch off in ablation_step and fallback_step: the default path is eq. 8-9 alone."""
    exclusion = not args.no_exclusion
    kkt = exclusion and args.lambda2_mode == "kkt"  # the default: eq. 8 solved exactly; else an ablation's step
    if exclusion and unsafe_mean is None:
        raise ValueError("the exclusion step needs pi_unsafe's outputs")
    probe = StepProbe(actor, norm_obs, actions, joint_adv, unsafe_mean, unsafe_log_std)
    fisher_obs = norm_obs[::args.fisher_subsample]  # H is a mean over states: a subsample estimates it

    def Hvp(v: torch.Tensor) -> torch.Tensor:
        return fisher_vector_product(actor, fisher_obs, v, args.cg_damping)

    # eq. (7): g and phi at theta_k; H only through H v
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(probe.surrogate(), list(actor.parameters()))])
    phi = (exclusion_gradient(actor, norm_obs, actions, unsafe_mean, unsafe_log_std, args.exclusion_grad)
           if exclusion else torch.zeros_like(g))
    if not (torch.isfinite(g).all() and torch.isfinite(phi).all()):
        raise FloatingPointError("non-finite gradient g or exclusion gradient phi")
    # eq. (9): H^-1 g and H^-1 phi by two CG solves; q = g'H^-1 g, r = phi'H^-1 g, s = phi'H^-1 phi from the true
    # gradients against the CG solutions, so the solved step's phi^T x is exactly the margin aimed at
    x_g, res_g = conjugate_gradient(Hvp, g, args.cg_iters)
    x_phi, res_phi = conjugate_gradient(Hvp, phi, args.cg_iters) if exclusion else (torch.zeros_like(g), 0.0)
    q = float(g @ x_g) if exclusion else float(x_g @ Hvp(x_g))  # TRPO's step length without the exclusion
    r, s = float(phi @ x_g), float(phi @ x_phi)
    b = (args.delta2 if args.exclusion_target == "step" else args.epsilon_excl - probe.kl_unsafe_before) if exclusion else -math.inf
    max_margin = math.sqrt(2 * args.delta1 * max(s, 0.0))  # the largest phi^T x in the KL ball (along H^-1 phi)

    # eq. (8)'s optimum x = a_g H^-1 g + a_phi H^-1 phi, aimed a little inside the exclusion constraint
    b_aim = b + abs(b) * (MARGIN_AIM - 1) if kkt else b
    case, a_g, a_phi = solve_exclusion_qcqp(q, r, s, b_aim, args.delta1) if kkt else ablation_step(q, r, s, args)
    full_step = a_g * x_g + a_phi * x_phi
    predicted_margin, predicted_gain = float(phi @ full_step), float(g @ full_step)  # linear model of eq. 8
    if not torch.isfinite(full_step).all():
        raise FloatingPointError("non-finite search direction")

    # line search on measured quantities; none passes: aim at b + f (max margin - b) and solve eq. 8 again (eq. 9's
    # "adjust lambda2 by line search"): the curvature of KL(pi_unsafe || pi) can outweigh a margin as small as delta2
    required = MARGIN_FRACTION * b if b > 0 else b
    accepted, backtracks, theta_new, fallback_taken, aim_used = False, 0, probe.theta_k, "", b_aim
    aims = [b_aim] + ([b_aim + (max_margin - b_aim) * f for f in MARGIN_SEARCH if b_aim < max_margin] if kkt else [])
    step_case, step, ag, ap = case, full_step, a_g, a_phi
    for aim in aims:
        if aim != b_aim:
            step_case, ag, ap = solve_exclusion_qcqp(q, r, s, aim, args.delta1)
            step = ag * x_g + ap * x_phi
        if step_case == "infeasible":
            continue
        j = line_search(probe, step, float(g @ step), step_case == "active", required, args)
        if j is None:
            backtracks = args.backtrack_iters
            continue
        accepted, backtracks, theta_new, aim_used = True, j, probe.theta_k + args.backtrack_coeff**j * step, aim
        a_g, a_phi = ag, ap  # the accepted step's coefficients (lambda2_used below)
        break
    lambda2_used = a_phi / a_g if a_g > 0 else (math.inf if a_phi > 0 else 0.0)
    if not accepted:  # eq. 8 infeasible or nothing accepted
        theta_new, fallback_taken = fallback_step(probe, full_step, x_g, x_phi, (q, r, s, case), args)

    # diagnostics at the returned parameters; the actor is put back to theta_k
    kl_new, surr_new, kl_unsafe_after = probe.evaluate(theta_new)
    set_flat_params(actor, probe.theta_k)
    if not torch.isfinite(theta_new).all():
        raise FloatingPointError("non-finite parameters after the step")
    return theta_new, {
        "kl": kl_new, "excl_margin": float(phi @ (theta_new - probe.theta_k)),
        "measured_excl_margin": kl_unsafe_after - probe.kl_unsafe_before, "required_excl_margin": b,
        "max_excl_margin": max_margin, "predicted_excl_margin": predicted_margin,
        "kl_unsafe_before": probe.kl_unsafe_before, "kl_unsafe_after": kl_unsafe_after, "qcqp_case": case,
        "excl_aim": aim_used, "lambda2_used": lambda2_used, "step_coef_g": a_g, "step_coef_phi": a_phi,
        "q": q, "r": r, "s": s, "feasible": int(case != "infeasible"), "accepted": int(accepted),
        "backtracks": backtracks, "fallback": fallback_taken, "surrogate_change": surr_new - probe.surr_old,
        "predicted_surrogate_change": predicted_gain, "cg_residual_g": res_g, "cg_residual_phi": res_phi,
        "phi_norm": float(phi.norm())}


def exclusion_gradient(actor: Actor, norm_obs: torch.Tensor, actions: torch.Tensor, unsafe_mean: torch.Tensor,
                       unsafe_log_std: torch.Tensor, mode: str) -> torch.Tensor:
    """phi of eq. (7): the gradient at theta_k of mean_s KL(pi_unsafe(.|s) || pi_theta(.|s)). exact: autograd of
    the closed-form Gaussian KL; importance: the paper's -mean[(pi_unsafe(a|s) / pi_k(a|s)) grad log pi_theta(a|s)]
    over the batch (s, a), since grad KL(pi_u || pi_theta) = -E_{a~pi_u}[grad log pi_theta(a|s)]."""
    if mode == "exact":
        mean, log_std = actor(norm_obs)
        objective = gaussian_kl(unsafe_mean, unsafe_log_std, mean, log_std).mean()
    else:
        logp = actor.distribution(norm_obs).log_prob(actions).sum(-1)
        unsafe_logp = torch.distributions.Normal(unsafe_mean, unsafe_log_std.exp()).log_prob(actions).sum(-1)
        objective = -(torch.exp(unsafe_logp - logp.detach()) * logp).mean()
    return torch.cat([x.reshape(-1) for x in torch.autograd.grad(objective, list(actor.parameters()))])


def solve_exclusion_qcqp(q: float, r: float, s: float, b: float, delta1: float) -> tuple[str, float, float]:
    """Eq. (8), max_x g^T x s.t. 1/2 x^T H x <= delta1 and phi^T x >= b, in closed form from q = g^T H^-1 g,
    r = g^T H^-1 phi, s = phi^T H^-1 phi: (case, a_g, a_phi) with the optimum x* = a_g H^-1 g + a_phi H^-1 phi, i.e.
    x* = H^-1 (g + lambda2* phi) / lambda1* of eq. (9). The KKT derivation of each case, which makes this CPO's dual
    with the cost gradient replaced by -phi: docs/algorithms/strpo.md; tests/test_strpo.py checks it against an
    independent geometric solve."""
    if s <= QCQP_EPS:  # phi = 0: no direction can raise the margin
        return ("infeasible", 0.0, 0.0) if b > 0 else ("inactive", math.sqrt(2 * delta1 / max(q, QCQP_EPS)), 0.0)
    if b > 0 and b * b >= 2 * delta1 * s:  # b beyond sqrt(2 delta1 s), the largest phi^T x in the KL ball
        return "infeasible", 0.0, 0.0
    if q > QCQP_EPS and r * math.sqrt(2 * delta1 / q) >= b:  # TRPO's step keeps the margin: lambda2* = 0
        return "inactive", math.sqrt(2 * delta1 / q), 0.0
    if q * s - r * r <= QCQP_EPS * q * s or q <= QCQP_EPS:  # g = 0 or antiparallel to phi: x = (b / s) H^-1 phi
        return "active", 0.0, b / s
    lambda1 = math.sqrt((q * s - r * r) / (2 * delta1 * s - b * b))  # both constraints tight
    lambda2 = max(0.0, (lambda1 * b - r) / s)
    return "active", 1.0 / lambda1, lambda2 / lambda1


def ablation_step(q: float, r: float, s: float, args: Args) -> tuple[str, float, float]:
    """(case, a_g, a_phi) of the ablations' step x = a_g H^-1 g + a_phi H^-1 phi: --no-exclusion is TRPO's
    sqrt(2 delta1 / q) H^-1 g; --lambda2-mode fixed is eq. 9 with the constant lambda2 of appendix C.3,
    H^-1 (g + lambda2 phi) scaled to the KL ball."""
    if args.no_exclusion:
        return "no_exclusion", math.sqrt(2 * args.delta1 / max(q, QCQP_EPS)), 0.0
    gHg = q + 2 * args.lambda2 * r + args.lambda2**2 * s
    alpha = math.sqrt(2 * args.delta1 / max(gHg, QCQP_EPS))
    return "fixed", alpha, alpha * args.lambda2


class StepProbe:
    """pi_k's outputs on the batch, and the measured quantities of a candidate theta: mean KL(pi_k || pi_theta),
    the joint surrogate mean(ratio * A~joint) (eq. 5) and mean KL(pi_unsafe || pi_theta)."""

    def __init__(self, actor: Actor, norm_obs: torch.Tensor, actions: torch.Tensor, joint_adv: torch.Tensor,
                 unsafe_mean: Optional[torch.Tensor], unsafe_log_std: Optional[torch.Tensor]):
        self.actor, self.norm_obs, self.actions, self.joint_adv = actor, norm_obs, actions, joint_adv
        self.unsafe_mean, self.unsafe_log_std = unsafe_mean, unsafe_log_std
        self.theta_k = get_flat_params(actor)
        with torch.no_grad():
            self.old_mean, self.old_log_std = actor(norm_obs)
            self.old_logp = torch.distributions.Normal(self.old_mean, self.old_log_std.exp()).log_prob(actions).sum(-1)
            self.kl_unsafe_before = self.kl_to_unsafe(self.old_mean, self.old_log_std)
            self.surr_old = float(self.surrogate())

    def kl_to_unsafe(self, mean: torch.Tensor, log_std: torch.Tensor) -> float:
        if self.unsafe_mean is None:
            return float("nan")
        return float(gaussian_kl(self.unsafe_mean, self.unsafe_log_std, mean, log_std).mean())

    def surrogate(self) -> torch.Tensor:
        logp = self.actor.distribution(self.norm_obs).log_prob(self.actions).sum(-1)
        return (torch.exp(logp - self.old_logp) * self.joint_adv).mean()

    def evaluate(self, theta: torch.Tensor) -> tuple[float, float, float]:
        """measured mean KL(pi_k || pi_theta), joint surrogate, mean KL(pi_unsafe || pi_theta); the actor is left at theta"""
        set_flat_params(self.actor, theta)
        with torch.no_grad():
            mean, log_std = self.actor(self.norm_obs)
            kl = float(gaussian_kl(self.old_mean, self.old_log_std, mean, log_std).mean())
            return kl, float(self.surrogate()), self.kl_to_unsafe(mean, log_std)


def line_search(probe: StepProbe, step: torch.Tensor, gain: float, active: bool, required: float, args: Args) -> Optional[int]:
    """The first backtrack j whose point theta_k + coeff^j step keeps, measured: KL(pi_k || pi) <= delta1; a rise
    of KL(pi_unsafe || pi) of at least `required`; a surrogate that improves (exclusion inactive: TRPO, and
    CPO's feasible case) or, where the exclusion is active, that falls short of its linear prediction
    coeff^j * gain by at most SURROGATE_SLACK. None when no backtrack passes."""
    for j in range(args.backtrack_iters):
        frac = args.backtrack_coeff**j
        kl, surr, kl_unsafe = probe.evaluate(probe.theta_k + frac * step)
        surr_ok = surr - probe.surr_old >= frac * gain - SURROGATE_SLACK * abs(frac * gain) if active else surr > probe.surr_old
        excl_ok = args.no_exclusion or kl_unsafe - probe.kl_unsafe_before >= required
        if math.isfinite(kl) and math.isfinite(surr) and kl <= args.delta1 and surr_ok and excl_ok:
            return j
    return None


def fallback_step(probe: StepProbe, full_step: torch.Tensor, x_g: torch.Tensor, x_phi: torch.Tensor,
                  qrs_case: tuple, args: Args) -> tuple[torch.Tensor, str]:
    """Eq. 8 infeasible or no step accepted: (theta, fallback taken). --fallback exclusion: the recovery step
    sqrt(2 delta1 / s) H^-1 phi, the largest phi^T x in the KL ball, whose measured KL to pi_unsafe must not
    fall. --fallback reverse: eq. (10) read literally, theta_k - alpha G (KL line search only), which moves
    toward pi_unsafe whenever G kept the margin; when eq. 8 was infeasible, G = H^-1 (g + lambda2 phi).
    --fallback none, and --no-exclusion (TRPO), keep theta_k."""
    q, r, s, case = qrs_case
    if args.no_exclusion or args.fallback == "none":
        return probe.theta_k, "none"
    if args.fallback == "exclusion":
        step = math.sqrt(2 * args.delta1 / max(s, QCQP_EPS)) * x_phi
    elif case != "infeasible":
        step = -full_step
    else:
        direction = x_g + args.lambda2 * x_phi
        step = -math.sqrt(2 * args.delta1 / max(q + 2 * args.lambda2 * r + args.lambda2**2 * s, QCQP_EPS)) * direction
    for j in range(args.backtrack_iters):
        kl, _, kl_unsafe = probe.evaluate(probe.theta_k + args.backtrack_coeff**j * step)
        if math.isfinite(kl) and kl <= args.delta1 and (args.fallback == "reverse" or kl_unsafe - probe.kl_unsafe_before >= 0):
            return probe.theta_k + args.backtrack_coeff**j * step, args.fallback
    return probe.theta_k, f"{args.fallback}_rejected"


class PIDLagrangian:
    """The PID Lagrange multiplier of Stooke, Achiam, Abbeel (2020, algorithm 2) with OmniSafe's details, updated once
    per epoch from the epoch's mean episode cost J_c, with error e = J_c - d:
        I <- clip(I + K_I e, 0, cap);   P <- EMA(e);   D = max(0, EMA(J_c) - EMA(J_c) `d_delay` updates ago)
        lambda = min(cap, max(0, K_P P + I + K_D D))
    The integral is kept below the cap (anti-windup: docs/algorithms/strpo.md). The last terms stay in p, i, d."""

    def __init__(self, cost_limit: float, kp: float, ki: float, kd: float, d_delay: int,
                 delta_p_ema_alpha: float, delta_d_ema_alpha: float, cap: float):
        self.cost_limit, self.kp, self.ki, self.kd = cost_limit, kp, ki, kd
        self.delta_p_ema_alpha, self.delta_d_ema_alpha, self.cap = delta_p_ema_alpha, delta_d_ema_alpha, cap
        self.p = 0.0  # EMA of delta = J_c - d
        self.i = 0.0  # integral of K_I * delta, kept in [0, cap] (anti-windup)
        self.d = 0.0  # max(0, rise of the smoothed cost over d_delay epochs)
        self.cost_ema = 0.0
        self.cost_ema_history: deque[float] = deque([0.0], maxlen=d_delay)  # the last d_delay smoothed costs, the oldest first
        self.value = 0.0

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(vars(self)):
            raise ValueError(f"PIDLagrangian state has keys {sorted(state)}, expected {sorted(vars(self))}")
        vars(self).update(state)

    def update(self, ep_cost: float) -> float:
        """One PID step from this epoch's mean episode cost J_c; returns the new lambda."""
        if not math.isfinite(ep_cost):
            raise FloatingPointError(f"non-finite episode cost {ep_cost} for the multiplier")
        delta = ep_cost - self.cost_limit
        self.i = min(self.cap, max(0.0, self.i + self.ki * delta))
        self.p = self.delta_p_ema_alpha * self.p + (1.0 - self.delta_p_ema_alpha) * delta
        self.cost_ema = self.delta_d_ema_alpha * self.cost_ema + (1.0 - self.delta_d_ema_alpha) * ep_cost
        self.d = max(0.0, self.cost_ema - self.cost_ema_history[0])
        self.value = min(self.cap, max(0.0, self.kp * self.p + self.i + self.kd * self.d))
        self.cost_ema_history.append(self.cost_ema)
        return self.value


def joint_advantage(reward_adv: torch.Tensor, cost_adv: torch.Tensor, lambda_cost: float, use_cost: bool = True) -> torch.Tensor:
    """A~joint = A~r - lambda_cost * A~c, each stream z-scored over the batch (eq. 6); A~r alone without the cost term
    (--no-joint-advantage)."""
    reward_z = zscore(reward_adv)
    return reward_z - lambda_cost * zscore(cost_adv) if use_cost else reward_z


def zscore(x: torch.Tensor) -> torch.Tensor:
    """Batch z-scoring of an advantage stream (eq. 6), the std floored at ADV_STD_FLOOR (appendix A's sigma_min): a
    stream of next to no signal (a batch with almost no cost) stays small instead of being blown up to unit variance."""
    return (x - x.mean()) / x.std().clamp_min(ADV_STD_FLOOR)


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
    require(args.no_exclusion or unsafe_policy_path(args).is_file(), f"no pi_unsafe at {unsafe_policy_path(args)}; train one with "
            f"`python unsafe_cvar_trpo.py --env-id {args.env_id} --save-to {unsafe_policy_path(args)}` or pass --unsafe-policy-path")
    require(args.delta1 > 0 and min(args.delta2, args.lambda2, args.epsilon_excl) >= 0,
            f"need --delta1 > 0 and --delta2, --lambda2, --epsilon-excl >= 0 (got {args.delta1}, {args.delta2}, {args.lambda2}, {args.epsilon_excl})")
    require(0 < args.gamma <= 1 and 0 <= args.gae_lambda <= 1 and 0 < args.backtrack_coeff < 1 and 0 <= args.pid_ema < 1,
            "need 0 < --gamma <= 1, 0 <= --gae-lambda <= 1, 0 < --backtrack-coeff < 1, 0 <= --pid-ema < 1")
    require(min(args.pid_kp, args.pid_ki, args.pid_kd, args.lambda_cost_max, args.cost_limit) >= 0,
            "PID gains, --lambda-cost-max and --cost-limit must be non-negative")


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


def unsafe_policy_path(args: Args) -> Path:
    """--unsafe-policy-path, or the shipped pi_unsafe of the task (next to this file, from any working folder)."""
    return Path(args.unsafe_policy_path or Path(__file__).resolve().parent / "unsafe_policies" / f"{args.env_id}.pt")


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


def load_checkpoint(path: str | Path, env_id: Optional[str] = None, obs_dim: Optional[int] = None,
                    act_dim: Optional[int] = None) -> tuple[Actor, RunningMeanStd, dict]:
    """Any checkpoint of the common format; one-line errors for a bad file (another env id, same dimensions: a warning)."""
    require(Path(path).is_file(), f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any unpickling failure means the file is not a checkpoint
        raise SystemExit(f"error: {path} is not a readable checkpoint ({type(exc).__name__}); re-train or re-download it")
    keys = ("format_version", "algo", "env_id", "obs_dim", "act_dim", "hidden_sizes", "actor_state_dict", "obs_rms")
    require(isinstance(ckpt, dict) and all(k in ckpt for k in keys) and ckpt["format_version"] == CHECKPOINT_FORMAT_VERSION,
            f"{path} is not a checkpoint of this repository (format {CHECKPOINT_FORMAT_VERSION}: {', '.join(keys)})")
    require(obs_dim in (None, ckpt["obs_dim"]) and act_dim in (None, ckpt["act_dim"]),
            f"{path} was trained on {ckpt['env_id']} (obs {ckpt['obs_dim']}, act {ckpt['act_dim']}); this env has obs {obs_dim}, act {act_dim}")
    if env_id is not None and ckpt["env_id"] != env_id:
        print(f"warning: {path} was trained on {ckpt['env_id']}, used here on {env_id} (same dimensions)")
    actor, obs_rms = Actor(ckpt["obs_dim"], ckpt["act_dim"], tuple(ckpt["hidden_sizes"])), RunningMeanStd((ckpt["obs_dim"],))
    actor.load_state_dict(ckpt["actor_state_dict"])
    obs_rms.load_state_dict(ckpt["obs_rms"])
    return actor, obs_rms, ckpt


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
    """Train sTRPO, or continue a run with --resume; returns the run folder."""
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
        raise SystemExit(f"error: {exc}; no checkpoint written. Try a smaller --delta1 or --critic-lr, or another --seed")
    finally:
        stop.restore()
        envs.close()  # also writes the video of an episode still being recorded
    return run_dir


def train(args: Args, run_dir: Path, envs, resume: Optional[dict], stop: GracefulStop) -> None:
    """The training loop of main: from scratch, or from the resume checkpoint `resume`."""
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    # agent, critics, the fixed pi_unsafe and the PID multiplier
    obs_rms = RunningMeanStd((obs_dim,))
    actor = Actor(obs_dim, act_dim, args.hidden_sizes)
    reward_critic = mlp(obs_dim, args.hidden_sizes, 1, out_std=1.0)
    cost_critic = mlp(obs_dim, args.hidden_sizes, 1, out_std=1.0)
    critic_opt = torch.optim.Adam([*reward_critic.parameters(), *cost_critic.parameters()], lr=args.critic_lr, fused=True)  # fused: 20% faster on CPU
    unsafe_actor = unsafe_rms = None
    if not args.no_exclusion or unsafe_policy_path(args).is_file():  # the ablation still logs KL to pi_unsafe
        unsafe_actor, unsafe_rms, unsafe_meta = load_checkpoint(unsafe_policy_path(args), args.env_id, obs_dim, act_dim)
        unsafe_actor.requires_grad_(False)
        print(f"pi_unsafe: {unsafe_policy_path(args)} ({unsafe_meta['algo']}, {unsafe_meta['global_step']} steps)")
    pid = PIDLagrangian(args.cost_limit, args.pid_kp, args.pid_ki, args.pid_kd, args.pid_d_delay, args.pid_ema,
                        args.pid_ema, args.lambda_cost_max)

    # one epoch's experience, in arrays allocated once
    num_steps = args.steps_per_epoch // args.num_envs
    batch_size = num_steps * args.num_envs
    num_epochs = args.total_timesteps // batch_size
    roll = Rollout(envs, num_steps)

    # the loop's state; --resume restores it, and every object of `stateful`, from the last checkpoint
    stateful = {"actor": actor, "reward_critic": reward_critic, "cost_critic": cost_critic, "critic_opt": critic_opt,
                "obs_rms": obs_rms, "pid": pid}
    done, global_step, total_cost, lambda_cost, elapsed = restore(resume, stateful, roll, epoch=0, global_step=0,
                                                                  total_cost=0.0, lambda_cost=0.0, elapsed=0.0)
    obs = roll.reset(args.seed, resumed=resume is not None)
    log = open_log(run_dir, args, done, num_epochs, elapsed)

    for epoch in range(done + 1, num_epochs + 1):
        obs = roll.collect(actor, obs_rms, obs)  # ---------------- rollout with pi_k ----------------
        global_step += batch_size
        total_cost += float(roll.cost.sum())

        # ---------------- 1. reward and cost GAE (z-scored in joint_advantage, eq. 6) ----------------
        obs_rms.update(roll.obs.reshape(-1, obs_dim))  # normaliser refreshed once, then fixed for the update
        b_obs = obs_rms.normalize(torch.as_tensor(roll.obs.reshape(-1, obs_dim)))
        b_next_obs = obs_rms.normalize(torch.as_tensor(roll.next_obs.reshape(-1, obs_dim)))
        b_act = torch.as_tensor(roll.act.reshape(-1, act_dim))
        reward_adv, reward_ret = roll.gae(roll.rew, reward_critic, b_obs, b_next_obs, args.gamma, args.gae_lambda)
        cost_adv, cost_ret = roll.gae(roll.cost, cost_critic, b_obs, b_next_obs, args.gamma, args.gae_lambda)

        # ---------------- 2-3. PID multiplier and joint advantage (eq. 6) ----------------
        if roll.finished_cost:
            lambda_cost = pid.update(float(np.mean(roll.finished_cost)))
        joint_adv = joint_advantage(torch.as_tensor(reward_adv.reshape(-1), dtype=torch.float32),
                                    torch.as_tensor(cost_adv.reshape(-1), dtype=torch.float32),
                                    lambda_cost, use_cost=not args.no_joint_advantage)

        # ---------------- 4-7. the safe trust-region step (eq. 7-10) ----------------
        unsafe_mean = unsafe_log_std = None
        if unsafe_actor is not None:  # pi_unsafe on the raw observations through its own normaliser
            with torch.no_grad():
                unsafe_mean, unsafe_log_std = unsafe_actor(unsafe_rms.normalize(torch.as_tensor(roll.obs.reshape(-1, obs_dim))))
        theta_new, diag = strpo_step(actor, b_obs, b_act, joint_adv, unsafe_mean, unsafe_log_std, args)
        set_flat_params(actor, theta_new)

        # ---------------- 8. critics on their GAE returns ----------------
        targets = [torch.as_tensor(ret.reshape(-1), dtype=torch.float32) for ret in (reward_ret, cost_ret)]
        reward_value_loss, cost_value_loss = fit_critics([reward_critic, cost_critic], critic_opt, b_obs, targets,
                                                         args.critic_epochs, args.critic_minibatch_size)

        # ---------------- logging ----------------
        row = {"global_step": global_step, "epoch": epoch, **roll.episode_stats(),
               "cost_rate": total_cost / global_step, "lambda_cost": lambda_cost, "pid_p": pid.p, "pid_i": pid.i,
               "pid_d": pid.d, **diag, "fallback_fired": int(bool(diag["fallback"])),
               "reward_value_loss": reward_value_loss, "cost_value_loss": cost_value_loss}
        log_epoch(log, row, f"lam {lambda_cost:6.3f} lam2 {diag['lambda2_used']:7.3g} | kl {diag['kl']:.5f} {diag['qcqp_case'][:6]} "
                            f"KLu {diag['kl_unsafe_before']:.3f}->{diag['kl_unsafe_after']:.3f} bt {diag['backtracks']:2d} {diag['fallback'] or '-'}")
        end_epoch(log, epoch, stop, stateful, roll, global_step=global_step, total_cost=total_cost, lambda_cost=lambda_cost)

    finish(log, envs, actor, obs_rms, "strpo", global_step)


if __name__ == "__main__":
    main(tyro.cli(Args))
