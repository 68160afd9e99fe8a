"""Tests of the Lagrangian baselines: baselines/trpo_lag.py, ppo_lag.py, cppo_pid.py, rcpo.py.

The multiplier updates are driven with scripted episode costs and compared with values computed
here independently; the PPO objective with its formula; the TRPO-Lag step with the KL ball on real
rollout data; and each script runs for real on two Safety-Gymnasium tasks."""
import csv
import math
from dataclasses import replace

import torch._dynamo  # noqa: F401  (before any MuJoCo import: triton after MuJoCo's EGL segfaults)

import numpy as np
import pytest
import torch

from conftest import ROOT, load_script, scripts_with

BASELINES = ROOT / "baselines"
ADAM_LAGRANGE = ["trpo_lag.py", "ppo_lag.py"]
PPO_SCRIPTS = ["ppo_lag.py", "cppo_pid.py"]
ALL_SCRIPTS = ["trpo_lag.py", "ppo_lag.py", "cppo_pid.py", "rcpo.py"]


def script(name):
    return load_script(BASELINES / name)


# ----------------------------------------------------------------------------------------------
# Multiplier updates
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ADAM_LAGRANGE)
def test_adam_multiplier_rises_above_the_limit_falls_below_it_and_never_goes_negative(name):
    m = script(name)
    up = m.Lagrange(cost_limit=25.0, init=0.5, lr=0.035)
    # Adam's first step is exactly lr * sign(gradient): ascent on lambda * (J_c - d)
    assert up.update(100.0) == pytest.approx(0.535, abs=1e-6)
    assert up.update(30.0) > 0.535
    down = m.Lagrange(cost_limit=25.0, init=0.5, lr=0.035)
    assert down.update(0.0) == pytest.approx(0.465, abs=1e-6)
    values = [down.update(0.0) for _ in range(60)]
    assert min(values) >= 0.0 and values[-1] == 0.0  # projected onto lambda >= 0
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert down.update(25.0) == 0.0  # exactly at the limit: no gradient, stays put


def test_rcpo_multiplier_follows_projected_dual_ascent_exactly():
    m = script("rcpo.py")
    lag = m.Lagrange(cost_limit=25.0, init=0.1, lr=5e-4)
    expected = 0.1
    for cost in (100.0, 60.0, 25.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 80.0):
        expected = max(0.0, expected + 5e-4 * (cost - 25.0))  # Tessler et al. eq. (11), written out
        got = lag.update(cost)
        assert got == pytest.approx(expected, abs=1e-12)
        assert got >= 0.0
    assert lag.update(1000.0) > expected  # up when above the limit
    before = lag.value
    assert lag.update(0.0) < before  # down when below


def reference_pid(costs, d, kp, ki, kd, delay, alpha_p, alpha_d, cap):
    """Stooke et al. 2020 Algorithm 2 written out with lists: EMAs start at 0 and the smoothed
    cost `delay` epochs before epoch k is emas[max(0, k - delay)] with emas[0] = 0."""
    integral, p_term, ema, emas, rows = 0.0, 0.0, 0.0, [0.0], []
    for k, cost in enumerate(costs, start=1):
        delta = cost - d
        integral = max(0.0, integral + ki * delta)
        p_term = alpha_p * p_term + (1 - alpha_p) * delta
        ema = alpha_d * ema + (1 - alpha_d) * cost
        emas.append(ema)
        d_term = max(0.0, emas[k] - emas[max(0, k - delay)])
        lam = min(cap, max(0.0, kp * p_term + integral + kd * d_term))
        rows.append((p_term, integral, d_term, lam))
    return rows


@pytest.mark.parametrize("path", scripts_with("PIDLagrangian"))  # cppo_pid.py and strpo.py
def test_pid_first_update_matches_a_hand_worked_example(path):
    m = load_script(path)
    pid = m.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95,
                          delta_d_ema_alpha=0.95, cap=100.0)
    lam = pid.update(45.0)
    # delta = 20: I = 0.2, P = 0.05 * 20 = 1.0, EMA(J_c) = 0.05 * 45 = 2.25, D = 2.25 - 0
    assert (pid.p, pid.i, pid.d) == pytest.approx((1.0, 0.2, 2.25))
    assert lam == pytest.approx(0.1 * 1.0 + 0.2 + 0.01 * 2.25)


@pytest.mark.parametrize("delay,alpha_p,alpha_d", [(10, 0.95, 0.95), (3, 0.5, 0.8), (1, 0.0, 0.0)])
@pytest.mark.parametrize("path", scripts_with("PIDLagrangian"))
def test_pid_terms_match_hand_computed_values_over_a_scripted_cost_sequence(path, delay, alpha_p, alpha_d):
    m = load_script(path)
    # rises above the limit, overshoots, falls below it and rises again: every term gets exercised
    costs = [0.0, 10.0, 40.0, 80.0, 120.0, 150.0, 90.0, 60.0, 30.0, 20.0, 5.0, 0.0, 0.0, 10.0, 35.0,
             70.0, 70.0, 70.0, 30.0, 24.0, 26.0, 0.0, 200.0, 0.0, 25.0] + [5.0] * 15
    gains = dict(kp=0.3, ki=0.02, kd=0.05)
    pid = m.PIDLagrangian(25.0, **gains, d_delay=delay, delta_p_ema_alpha=alpha_p, delta_d_ema_alpha=alpha_d, cap=100.0)
    expected = reference_pid(costs, 25.0, **gains, delay=delay, alpha_p=alpha_p, alpha_d=alpha_d, cap=100.0)
    saw_positive_d = saw_zero_d = False
    for cost, (p_term, integral, d_term, lam) in zip(costs, expected):
        got = pid.update(cost)
        assert got == pytest.approx(lam, abs=1e-12) and pid.value == got
        assert (pid.p, pid.i, pid.d) == pytest.approx((p_term, integral, d_term), abs=1e-12)
        assert got >= 0.0 and pid.i >= 0.0 and pid.d >= 0.0
        saw_positive_d |= d_term > 0
        saw_zero_d |= d_term == 0 and cost > 0
    assert saw_positive_d and saw_zero_d


@pytest.mark.parametrize("path", scripts_with("PIDLagrangian"))
def test_pid_multiplier_is_capped_and_floored(path):
    m = load_script(path)
    pid = m.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95,
                          delta_d_ema_alpha=0.95, cap=100.0)
    values = [pid.update(1e5) for _ in range(30)]
    assert max(values) == 100.0 and values[-1] == 100.0 and pid.i == 100.0  # the cap binds on lambda and on I
    # anti-windup: 400 epochs at cost 80 (I would reach 220 uncapped), then the cost falls to 0
    windup = m.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95,
                             delta_d_ema_alpha=0.95, cap=100.0)
    for _ in range(400):
        windup.update(80.0)
    epochs_at_cap = 0
    while windup.update(0.0) >= 100.0:
        epochs_at_cap += 1
    assert epochs_at_cap < 50, "an integral wound up to 220 would hold lambda at the cap for ~500 epochs"
    low = m.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95,
                          delta_d_ema_alpha=0.95, cap=100.0)
    assert all(low.update(0.0) == 0.0 for _ in range(20))  # below the limit from the start: 0
    # above the limit the multiplier rises, then below it falls back
    rising = [low.update(100.0) for _ in range(5)]
    assert all(b > a for a, b in zip(rising, rising[1:]))
    falling = [low.update(0.0) for _ in range(40)]
    assert falling[-1] < rising[-1] and min(falling) >= 0.0


# ----------------------------------------------------------------------------------------------
# PPO-clip objective
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PPO_SCRIPTS)
def test_ppo_clipped_objective_equals_its_formula(name):
    m = script(name)
    eps = 0.2
    ratios = torch.tensor([0.5, 0.79, 0.8, 0.95, 1.0, 1.1, 1.2, 1.21, 1.5, 3.0], dtype=torch.float64)
    for sign in (1.0, -1.0):
        adv = sign * torch.linspace(0.5, 3.0, len(ratios), dtype=torch.float64)
        logp_old = torch.randn(len(ratios), dtype=torch.float64)
        logp_new = (logp_old + ratios.log()).requires_grad_(True)
        loss = m.ppo_clip_loss(logp_new, logp_old, adv, eps)
        # per sample: A > 0 gains up to ratio 1 + eps; A < 0 is penalised down to ratio 1 - eps
        per_sample = [min(r, 1 + eps) * a if a > 0 else max(r, 1 - eps) * a for r, a in zip(ratios.tolist(), adv.tolist())]
        assert loss.item() == pytest.approx(-np.mean(per_sample), rel=1e-12)
        loss.backward()
        # clipped samples carry no gradient, the others -r A / N (d ratio / d logp = ratio)
        flat = (ratios > 1 + eps) if sign > 0 else (ratios < 1 - eps)
        expected_grad = torch.where(flat, torch.zeros_like(ratios), -ratios * adv / len(ratios))
        # (exactly at a clip boundary the two branches tie and the subgradient is ambiguous: skipped)
        off_boundary = ((ratios - (1 + eps)).abs() > 1e-6) & ((ratios - (1 - eps)).abs() > 1e-6)
        torch.testing.assert_close(logp_new.grad[off_boundary], expected_grad[off_boundary], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Second-order steps on real rollout data
# ----------------------------------------------------------------------------------------------
def collect_rollout(m, steps=2000, num_envs=2, seed=0):
    """Real SafetyHopperVelocity-v1 data with the script's own Actor and normaliser."""
    envs = m.make_vector_env("SafetyHopperVelocity-v1", num_envs, "sync")
    torch.manual_seed(seed)
    actor = m.Actor(envs.single_observation_space.shape[0], envs.single_action_space.shape[0])
    rms = m.RunningMeanStd(envs.single_observation_space.shape)
    obs, _ = envs.reset(seed=seed)
    T = steps // num_envs
    obs_buf, act_buf = [], []
    rew, cost, term, ends = (np.zeros((T, num_envs)) for _ in range(4))
    for t in range(T):
        obs_buf.append(obs)
        with torch.no_grad():
            action = actor.distribution(rms.normalize(torch.as_tensor(obs, dtype=torch.float32))).sample().numpy()
        act_buf.append(action)
        obs, rew[t], cost[t], term[t], trunc, _ = envs.step(np.clip(action, -1, 1))
        ends[t] = np.logical_or(term[t], trunc)
    envs.close()
    raw = np.asarray(obs_buf, np.float32).reshape(-1, obs.shape[-1])
    rms.update(raw)
    zeros = np.zeros_like(rew)  # untrained critics: Monte-Carlo-like GAE advantages
    reward_adv, _ = m.compute_gae(rew, zeros, zeros, term, ends, 0.99, 0.95)
    cost_adv, _ = m.compute_gae(cost, zeros, zeros, term, ends, 0.99, 0.95)
    return (actor, rms.normalize(torch.as_tensor(raw)), torch.as_tensor(np.asarray(act_buf).reshape(raw.shape[0], -1)),
            torch.as_tensor(reward_adv.reshape(-1), dtype=torch.float32), torch.as_tensor(cost_adv.reshape(-1), dtype=torch.float32))


def measured_kl(old_mean, old_log_std, mean, log_std):
    """mean_s KL(N_old || N_new), summed over action dims, written out here."""
    var0, var1 = (2 * old_log_std).exp(), (2 * log_std).exp()
    return (log_std - old_log_std + (var0 + (old_mean - mean) ** 2) / (2 * var1) - 0.5).sum(-1).mean().item()


@pytest.mark.parametrize("target_kl", [0.01, 0.001])
def test_trpo_lag_accepted_step_stays_inside_the_kl_ball_on_real_rollout_data(target_kl):
    m = script("trpo_lag.py")
    actor, norm_obs, actions, reward_adv, cost_adv = collect_rollout(m)
    assert cost_adv.abs().sum() > 0  # the hopper does pay cost in these steps
    joint_adv = m.lagrangian_advantage(reward_adv, cost_adv, 0.5)
    with torch.no_grad():
        old_mean, old_log_std = actor(norm_obs)
        old_logp = actor.distribution(norm_obs).log_prob(actions).sum(-1)
    theta_old = m.get_flat_params(actor)
    diag = m.trpo_step(actor, norm_obs, actions, joint_adv, m.Args(target_kl=target_kl))
    with torch.no_grad():
        mean, log_std = actor(norm_obs)
        new_logp = actor.distribution(norm_obs).log_prob(actions).sum(-1)
    kl = measured_kl(old_mean, old_log_std, mean, log_std)
    assert diag["accepted"] == 1
    assert 0.0 < kl <= target_kl and kl == pytest.approx(diag["kl"], rel=1e-4)
    surrogate_change = float(((new_logp - old_logp).exp() * joint_adv).mean() - joint_adv.mean())
    assert surrogate_change > 0 and surrogate_change == pytest.approx(diag["surrogate_improvement"], rel=1e-3, abs=1e-7)
    assert not torch.equal(m.get_flat_params(actor), theta_old)


def test_lagrangian_advantage_standardises_reward_and_centres_cost():
    m = script("trpo_lag.py")
    rng = np.random.default_rng(5)
    reward_adv = torch.as_tensor(rng.normal(3.0, 7.0, 500))
    cost_adv = torch.as_tensor(rng.normal(2.0, 4.0, 500))
    lam = 0.7
    expected = ((reward_adv - reward_adv.mean()) / (reward_adv.std() + 1e-8) - lam * (cost_adv - cost_adv.mean())) / (1 + lam)
    for name in ("trpo_lag.py", "ppo_lag.py", "cppo_pid.py"):
        torch.testing.assert_close(script(name).lagrangian_advantage(reward_adv, cost_adv, lam), expected)
    torch.testing.assert_close(m.lagrangian_advantage(reward_adv, cost_adv, 0.0),
                               (reward_adv - reward_adv.mean()) / (reward_adv.std() + 1e-8))


def test_rcpo_takes_the_full_natural_gradient_step_without_line_search():
    m = script("rcpo.py")
    actor, norm_obs, actions, reward_adv, cost_adv = collect_rollout(m, seed=1)
    adv = reward_adv - 0.5 * cost_adv
    adv = (adv - adv.mean()) / adv.std()
    before = m.Actor(norm_obs.shape[1], actions.shape[1])
    before.load_state_dict(actor.state_dict())
    args = m.Args(target_kl=0.01)
    theta_old = m.get_flat_params(actor)
    diag = m.npg_step(actor, norm_obs, actions, adv, replace(args, fisher_subsample=1))  # H on every state, as checked below
    step = m.get_flat_params(actor) - theta_old
    # the step is the whole KL-radius step: 0.5 s^T (H + damping I) s = delta at theta_k
    quad = 0.5 * float(step @ m.fisher_vector_product(before, norm_obs, step, args.cg_damping))
    assert quad == pytest.approx(args.target_kl, rel=1e-3)
    assert float(step.norm()) == pytest.approx(diag["step_norm"], rel=1e-5)
    with torch.no_grad():
        old_mean, old_log_std = before(norm_obs)
        mean, log_std = actor(norm_obs)
    assert measured_kl(old_mean, old_log_std, mean, log_std) == pytest.approx(diag["kl"], rel=1e-4)


# ----------------------------------------------------------------------------------------------
# Short real runs
# ----------------------------------------------------------------------------------------------
COMMON_COLUMNS = ["global_step", "epoch", "ep_ret", "ep_cost", "ep_len", "episodes", "cost_rate",
                  "lagrange_multiplier", "kl", "reward_value_loss", "cost_value_loss", "sps", "time_elapsed"]
OWN_COLUMNS = {"trpo_lag.py": ["accepted", "backtracks", "surrogate_improvement", "cg_residual"],
               "ppo_lag.py": ["policy_epochs", "early_stopped", "policy_loss", "clip_fraction"],
               "cppo_pid.py": ["pid_p", "pid_i", "pid_d", "policy_epochs", "early_stopped"],
               "rcpo.py": ["step_size", "quadratic_kl", "surrogate_improvement", "cg_residual"]}
ENVS = {"SafetyHopperVelocity-v1": (11, 3), "SafetyCarCircle1-v0": (40, 2)}


@pytest.mark.parametrize("env_id", list(ENVS))
@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_short_real_run_writes_progress_and_a_checkpoint_every_script_reads(name, env_id, tmp_path):
    m = script(name)
    reference = load_script(ROOT / "unsafe_cvar_trpo.py")
    args = m.Args(env_id=env_id, total_timesteps=2000, steps_per_epoch=1000, num_envs=2, output_dir=str(tmp_path),
                  cost_limit=5.0)
    run_dir = m.main(args)
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [int(r["global_step"]) for r in rows] == [1000, 2000]
    for column in COMMON_COLUMNS + OWN_COLUMNS[name]:
        assert column in rows[0], column
    for r in rows:
        assert float(r["lagrange_multiplier"]) >= 0.0
        assert math.isfinite(float(r["kl"])) and math.isfinite(float(r["reward_value_loss"]))
        assert int(r["episodes"]) > 0  # Hopper falls, CarCircle episodes last exactly 500 steps
    ckpt = run_dir / f"{args.exp_name}.pt"
    obs_dim, act_dim = ENVS[env_id]
    actor2, rms2, meta2 = reference.load_checkpoint(ckpt, env_id=env_id, obs_dim=obs_dim, act_dim=act_dim)
    meta = torch.load(ckpt, weights_only=False)  # and the script's own Actor and normaliser read it alike
    actor, rms = m.Actor(obs_dim, act_dim, tuple(meta["hidden_sizes"])), m.RunningMeanStd((obs_dim,))
    actor.load_state_dict(meta["actor_state_dict"])
    rms.load_state_dict(meta["obs_rms"])
    assert meta["algo"] == name[:-3] and meta["global_step"] == 2000 and meta2["env_id"] == env_id
    raw = torch.as_tensor(rms.mean + np.sqrt(rms.var) * np.random.default_rng(0).normal(size=(64, obs_dim)),
                          dtype=torch.float32)
    with torch.no_grad():
        a1, _ = actor(rms.normalize(raw))
        a2, _ = actor2(rms2.normalize(raw))
    assert torch.equal(a1, a2) and torch.isfinite(a1).all()
