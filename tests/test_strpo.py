"""strpo.py: the step against an independent solve of eq. (8) (random instances and a tiny actor
with a dense Fisher), Theorem 1 with measured constraints on real batches of the four paper tasks,
the exclusion gradient, the fallbacks, the PID multiplier, the ablations, and short real runs."""
import csv
import math

import numpy as np
import pytest
import torch

from conftest import ROOT, dense_kl_hessian, load_script

s = load_script(ROOT / "strpo.py")
u = load_script(ROOT / "unsafe_cvar_trpo.py")
theorem1 = load_script(ROOT / "benchmark" / "theorem1_report.py")
PAPER_TASKS = ["SafetyCarCircle1-v0", "SafetyCarGoal1-v0", "SafetyAntVelocity-v1", "SafetyHopperVelocity-v1"]
HOPPER_UNSAFE = ROOT / "unsafe_policies" / "SafetyHopperVelocity-v1.pt"


def strpo_step(actor, obs, act, adv, unsafe_mean, unsafe_log_std, exclusion=True, **flags):
    """s.strpo_step with the flags of strpo.py's Args (their defaults otherwise)."""
    return s.strpo_step(actor, obs, act, adv, unsafe_mean, unsafe_log_std, s.Args(no_exclusion=not exclusion, **flags))


def real_batch(env_id="SafetyHopperVelocity-v1", steps=1500, seed=0):
    """A real on-policy batch: states, actions, a joint advantage from real rewards and costs, and
    the shipped pi_unsafe's outputs on those states."""
    import safety_gymnasium

    env = safety_gymnasium.make(env_id)
    obs, _ = env.reset(seed=seed)
    torch.manual_seed(seed)
    actor = s.Actor(env.observation_space.shape[0], env.action_space.shape[0])
    rms = s.RunningMeanStd(env.observation_space.shape)
    obs_l, act_l, rew_l, cost_l, end_l = [], [], [], [], []
    for _ in range(steps):
        with torch.no_grad():
            a = actor.distribution(rms.normalize(torch.as_tensor(obs[None], dtype=torch.float32))).sample()[0].numpy()
        obs_l.append(obs); act_l.append(a)
        obs, r, c, term, trunc, _ = env.step(np.clip(a, -1, 1))
        rew_l.append(r); cost_l.append(c); end_l.append(term or trunc)
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    raw = torch.as_tensor(np.array(obs_l, np.float32))
    rms.update(raw.numpy())

    def to_go(x):  # discounted sum to the episode's end
        out, acc = np.zeros(len(x)), 0.0
        for t in reversed(range(len(x))):
            acc = x[t] + 0.99 * acc * (1.0 - end_l[t])
            out[t] = acc
        return torch.as_tensor(out, dtype=torch.float32)

    joint = s.joint_advantage(to_go(np.array(rew_l)), to_go(np.array(cost_l)), lambda_cost=0.5)
    unsafe_path = ROOT / "unsafe_policies" / f"{env_id}.pt"  # the shipped pi_unsafe of that task
    unsafe_actor, unsafe_rms, _ = s.load_checkpoint(unsafe_path, env_id, raw.shape[1], len(act_l[0]))
    with torch.no_grad():
        unsafe_mean, unsafe_log_std = unsafe_actor(unsafe_rms.normalize(raw))
    return actor, rms.normalize(raw), torch.as_tensor(np.array(act_l, np.float32)), joint, unsafe_mean, unsafe_log_std


def independent_phi(actor, norm_obs, unsafe_mean, unsafe_log_std):
    """grad of mean KL(pi_unsafe || pi_theta), written out here from the Gaussian KL formula."""
    actor.zero_grad()
    mean, log_std = actor(norm_obs)
    var_u = (2 * unsafe_log_std).exp()
    kl = (log_std - unsafe_log_std + (var_u + (unsafe_mean - mean) ** 2) / (2 * (2 * log_std).exp()) - 0.5).sum(-1).mean()
    grads = torch.autograd.grad(kl, list(actor.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


def measured_kl_to(actor, norm_obs, theta, ref_mean, ref_log_std):
    """mean KL(pi_ref || pi_theta) on the batch states, the Gaussian KL written out here; the actor's
    parameters are restored afterwards."""
    theta_now = s.get_flat_params(actor)
    s.set_flat_params(actor, theta)
    with torch.no_grad():
        m, l = actor(norm_obs)
    s.set_flat_params(actor, theta_now)
    return ((l - ref_log_std) + ((2 * ref_log_std).exp() + (ref_mean - m) ** 2) / (2 * (2 * l).exp()) - 0.5).sum(-1).mean().item()


def measured_kl(actor, norm_obs, theta_old, theta_new):
    """mean KL(pi_old || pi_new)"""
    theta_now = s.get_flat_params(actor)
    s.set_flat_params(actor, theta_old)
    with torch.no_grad():
        m0, l0 = actor(norm_obs)
    s.set_flat_params(actor, theta_now)
    return measured_kl_to(actor, norm_obs, theta_new, m0, l0)


def reference_qcqp(H, g, phi, b, delta1):
    """eq. (8) solved by plain geometry, never touching a multiplier: with H = L L^T and y = L^T x,
    max g^T x s.t. 1/2 x^T H x <= delta1, phi^T x >= b is a linear objective gt^T y (gt = L^-1 g)
    over the ball |y| <= R = sqrt(2 delta1) cut by the half-space pt^T y >= b (pt = L^-1 phi).
    - R |pt| <= b: the half-space misses the ball (infeasible);
    - the ball's maximiser R gt / |gt| lies in the half-space: it is the optimum (inactive);
    - else the plane is active (a convex problem's optimum with the constraint slack would be the
      ball's own maximiser): on the plane the feasible set is a disc of centre y0 = b pt / |pt|^2
      and radius sqrt(R^2 - |y0|^2), and the linear objective is maximised along the projection of
      gt onto the plane (active).
    Returns (case, x)."""
    L = np.linalg.cholesky(H)
    gt, pt = np.linalg.solve(L, g), np.linalg.solve(L, phi)
    R, npt = math.sqrt(2 * delta1), np.linalg.norm(pt)
    if R * npt <= b:
        return "infeasible", None
    y = R * gt / np.linalg.norm(gt)
    if pt @ y >= b:
        return "inactive", np.linalg.solve(L.T, y)
    y0 = b * pt / npt**2
    proj = gt - (gt @ pt) / npt**2 * pt
    y = y0 + math.sqrt(R**2 - y0 @ y0) * proj / np.linalg.norm(proj)
    return "active", np.linalg.solve(L.T, y)


def random_spd(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(rng.uniform(0.05, 5.0, n)) @ q.T


def test_qcqp_solution_equals_an_independent_geometric_solve_in_every_case():
    """600 random instances of eq. (8) (dimension 2-9) whose margin b is drawn across the whole range,
    from far below the plain step's margin (inactive, b < 0 included, the absolute reading's far-away
    case) past the largest margin the KL ball allows (infeasible). The closed form of the code must
    give the same case and the same step as the geometric solve, to 1e-6 relative."""
    rng = np.random.default_rng(0)
    cases = {"inactive": 0, "active": 0, "infeasible": 0}
    negative_b_active = 0
    for _ in range(600):
        n = int(rng.integers(2, 10))
        H, g, phi = random_spd(rng, n), rng.normal(size=n), rng.normal(size=n)
        delta1 = float(rng.choice([1e-3, 1e-2, 0.05]))
        Hinv_g, Hinv_phi = np.linalg.solve(H, g), np.linalg.solve(H, phi)
        q, r, sq = g @ Hinv_g, g @ Hinv_phi, phi @ Hinv_phi
        max_margin = math.sqrt(2 * delta1 * sq)
        b = float(rng.uniform(-1.2, 1.4)) * max_margin
        case, a_g, a_phi = s.solve_exclusion_qcqp(q, r, sq, b, delta1)
        ref_case, ref_x = reference_qcqp(H, g, phi, b, delta1)
        assert case == ref_case, (case, ref_case, b, max_margin)
        cases[case] += 1
        if case == "infeasible":
            continue
        x = a_g * Hinv_g + a_phi * Hinv_phi
        np.testing.assert_allclose(x, ref_x, rtol=1e-6, atol=1e-9 * np.abs(ref_x).max())
        assert 0.5 * x @ H @ x == pytest.approx(delta1, rel=1e-9)  # the KL constraint is tight in both cases
        assert phi @ x >= b - 1e-9 * max_margin
        if case == "active":
            assert phi @ x == pytest.approx(b, rel=1e-7, abs=1e-12) and a_phi / a_g >= 0  # lambda2* >= 0, tight
            negative_b_active += b < 0
    assert min(cases.values()) >= 60, cases
    assert negative_b_active >= 5  # b < 0 can still cut the ball


def tiny_problem(seed):
    """A tiny actor (2 obs, 1 action, 3 hidden units) on random states, actions drawn from it, a
    random joint advantage and a random pi_unsafe, and its exact Fisher matrix, written out here
    from the Gaussian KL (torch.func) with the step's damping 0.1 added."""
    torch.manual_seed(seed)
    actor = s.Actor(2, 1, (3,)).double()
    obs = torch.randn(64, 2, dtype=torch.float64)
    with torch.no_grad():
        act = actor.distribution(obs).sample()
        um = torch.randn(64, 1, dtype=torch.float64)
        uls = torch.full((64, 1), -0.2, dtype=torch.float64)
    adv = torch.randn(64, dtype=torch.float64)
    H = dense_kl_hessian(actor, obs).numpy() + 0.1 * np.eye(sum(p.numel() for p in actor.parameters()))
    return actor, obs, act, adv, um, uls, H


@pytest.mark.parametrize("seed", range(6))
def test_the_step_the_code_takes_is_the_qcqp_optimum_on_a_tiny_actor_with_a_dense_fisher(seed):
    """strpo_step end to end (CG, q/r/s, the closed form, the line search): for margins b that make the
    exclusion constraint inactive, active and infeasible, the step taken is a backtracking multiple
    0.8^j of the independent geometric optimum of eq. (8) with the dense Fisher and the exact g and
    phi (b aimed 1% inside, as the code does), and an infeasible b takes the recovery step along
    H^-1 phi. CG runs to convergence here (20 iterations > 17 parameters)."""
    actor, obs, act, adv, um, uls, H = tiny_problem(seed)
    theta_k = s.get_flat_params(actor)
    logp = actor.distribution(obs).log_prob(act).sum(-1)
    g = torch.autograd.grad((torch.exp(logp - logp.detach()) * adv).mean(), list(actor.parameters()))
    g = torch.cat([x.reshape(-1) for x in g]).numpy()
    phi = independent_phi(actor, obs, um, uls).numpy()
    delta1 = 0.01
    max_margin = math.sqrt(2 * delta1 * phi @ np.linalg.solve(H, phi))
    seen = set()
    with torch.no_grad():
        kl_unsafe_k = float(s.gaussian_kl(um, uls, *actor(obs)).mean())
    for fraction in (-1.05, -0.5, 0.0, 0.3, 0.6, 0.9, 1.5):  # -1.05: inactive for sure; 1.5: infeasible
        b = fraction * max_margin
        theta_new, diag = strpo_step(actor, obs, act, adv, um, uls, delta1=delta1, delta2=b if b >= 0 else 0.0,
                                     exclusion_target="step" if b >= 0 else "absolute",
                                     epsilon_excl=b + kl_unsafe_k if b < 0 else 1.0,
                                     cg_iters=20, fisher_subsample=1)
        case, _ = reference_qcqp(H, g, phi, b + abs(b) * 0.01, delta1)
        assert diag["qcqp_case"] == case
        if case != "infeasible":  # the step at the margin it aimed at: b (1% inside) or a raised aim
            assert diag["excl_aim"] >= b + abs(b) * 0.01 - 1e-15
            _, ref_x = reference_qcqp(H, g, phi, diag["excl_aim"], delta1)
        seen.add(case)
        step = (theta_new - theta_k).numpy()
        if case == "infeasible":
            assert diag["fallback"] in ("exclusion", "exclusion_rejected")
            recovery = np.linalg.solve(H, phi)
            if diag["fallback"] == "exclusion":
                assert step @ recovery / (np.linalg.norm(step) * np.linalg.norm(recovery)) > 1 - 1e-6
            continue
        if diag["accepted"]:
            np.testing.assert_allclose(step, 0.8 ** diag["backtracks"] * ref_x, rtol=1e-5, atol=1e-7)
        # before the line search: the coefficients on H^-1 g and H^-1 phi give the reference step
        x = diag["step_coef_g"] * np.linalg.solve(H, g) + diag["step_coef_phi"] * np.linalg.solve(H, phi)
        np.testing.assert_allclose(x, ref_x, rtol=1e-5, atol=1e-7)
    assert seen == {"inactive", "active", "infeasible"}, seen


def test_exact_and_importance_exclusion_gradients_agree_as_samples_grow():
    """The paper's importance-weighted estimator of phi converges to the closed-form gradient: on
    real states, with M actions drawn from pi_k per state, the cosine similarity rises to ~1 and
    the relative error falls as M grows. pi_unsafe here is a perturbed copy of pi_k, so the
    importance weights have finite variance (for a far-away pi_unsafe they do not)."""
    actor, obs, _, _, _, _ = real_batch(steps=300)
    torch.manual_seed(0)
    with torch.no_grad():
        mean_k, log_std_k = actor(obs)
    unsafe_mean = mean_k + 0.3 * torch.randn_like(mean_k)
    unsafe_log_std = log_std_k - 0.1
    exact = s.exclusion_gradient(actor, obs, None, unsafe_mean, unsafe_log_std, "exact")
    torch.testing.assert_close(exact, independent_phi(actor, obs, unsafe_mean, unsafe_log_std))
    errors, cosines = [], []
    for M in (1, 16, 256, 2048):
        obs_rep = obs.repeat(M, 1)
        with torch.no_grad():
            acts = actor.distribution(obs_rep).sample()
        est = s.exclusion_gradient(actor, obs_rep, acts, unsafe_mean.repeat(M, 1), unsafe_log_std.repeat(M, 1), "importance")
        errors.append(float((est - exact).norm() / exact.norm()))
        cosines.append(float(est @ exact / (est.norm() * exact.norm())))
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[3] < errors[0] / 10  # Monte Carlo: the error shrinks like 1/sqrt(M)
    assert cosines[3] > 0.98 and errors[3] < 0.2, (cosines, errors)


STEP = dict(delta1=0.01, delta2=1e-4)  # the defaults of strpo.py


@pytest.mark.parametrize("env_id", PAPER_TASKS)
def test_on_real_batches_accepted_steps_keep_both_measured_constraints_and_nothing_moves_toward_pi_unsafe(env_id):
    """Real batches of each paper task (two seeds, the task's shipped pi_unsafe), the default step:
    every accepted step has measured KL(pi_k || pi_new) <= delta1 and raises the measured
    KL(pi_unsafe || pi) by at least half of delta2 (both recomputed here, not read from the
    diagnostics); a fallback never lowers it; the default never takes the reverse step. The same
    batch with a margin no step can reach must take the exclusion fallback, which also moves away."""
    for seed in (0, 1):
        actor, obs, act, joint, um, uls = real_batch(env_id, steps=1000, seed=seed)
        theta_k = s.get_flat_params(actor)
        theta_new, diag = strpo_step(actor, obs, act, joint, um, uls, **STEP)
        assert torch.equal(s.get_flat_params(actor), theta_k), "strpo_step must leave the actor at theta_k"
        assert "reverse" not in diag["fallback"]
        gain = measured_kl_to(actor, obs, theta_new, um, uls) - measured_kl_to(actor, obs, theta_k, um, uls)
        assert gain >= 0
        if diag["accepted"]:
            assert 0 < measured_kl(actor, obs, theta_k, theta_new) <= STEP["delta1"]
            assert gain >= 0.5 * STEP["delta2"]
        far = 1.5 * diag["max_excl_margin"]
        theta_fb, diag_fb = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, delta2=far)
        assert diag_fb["qcqp_case"] == "infeasible" and diag_fb["fallback"].startswith("exclusion")
        gain_fb = measured_kl_to(actor, obs, theta_fb, um, uls) - measured_kl_to(actor, obs, theta_k, um, uls)
        assert gain_fb >= 0 and measured_kl(actor, obs, theta_k, theta_fb) <= 0.01
        if diag_fb["fallback"] == "exclusion":
            assert gain_fb > 0


def test_the_default_step_is_accepted_on_hopper_where_the_literal_fixed_weight_is_not():
    """The failure that motivated the KKT multiplier: on real Hopper batches at lambda2 = 1 (fixed) phi
    dominates the direction, the joint surrogate falls along it, and the paper's line search rejects
    the step; the KKT step is accepted, improves the surrogate and moves away from pi_unsafe."""
    kkt_accepted = fixed_accepted = 0
    for seed in (0, 1, 2):
        actor, obs, act, joint, um, uls = real_batch("SafetyHopperVelocity-v1", steps=1500, seed=seed)
        _, kkt = strpo_step(actor, obs, act, joint, um, uls, **STEP)
        _, fixed = strpo_step(actor, obs, act, joint, um, uls, **STEP, lambda2_mode="fixed", lambda2=1.0, fallback="none")
        kkt_accepted += kkt["accepted"]
        fixed_accepted += fixed["accepted"]
        if kkt["accepted"]:
            assert kkt["surrogate_change"] > 0 or kkt["qcqp_case"] == "active"
            assert kkt["kl_unsafe_after"] > kkt["kl_unsafe_before"]
            assert kkt["lambda2_used"] < 1.0  # far below the fixed weight that made phi dominate
    assert kkt_accepted == 3 and fixed_accepted == 0, (kkt_accepted, fixed_accepted)


def test_a_misestimated_phi_cannot_get_a_step_accepted_that_moves_toward_pi_unsafe(monkeypatch):
    """The line search checks the *measured* KL to pi_unsafe, not the linear prediction phi^T s. With
    phi replaced by random directions (a badly estimated exclusion gradient) the linear model is
    wrong about half of the time; no accepted step and no fallback may lower the measured
    KL(pi_unsafe || pi). Without the measured check (or with phi's sign flipped) this fails."""
    actor, obs, act, joint, um, uls = real_batch("SafetyHopperVelocity-v1", steps=1000, seed=5)
    theta_k = s.get_flat_params(actor)
    before = measured_kl_to(actor, obs, theta_k, um, uls)
    gen = torch.Generator().manual_seed(0)
    true_phi = s.exclusion_gradient(actor, obs, act, um, uls, "exact")
    monkeypatch.setattr(s, "exclusion_gradient", lambda *a, **k: torch.randn(true_phi.shape, generator=gen) * true_phi.norm())
    accepted = moved = 0
    for _ in range(12):
        theta_new, diag = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, delta2=0.01)
        gain = measured_kl_to(actor, obs, theta_new, um, uls) - before
        accepted += diag["accepted"]
        moved += bool(torch.any(theta_new != theta_k))
        assert gain >= 0, diag
        if diag["accepted"]:
            assert gain >= 0.5 * 0.01
    assert moved >= 3  # the check lets good steps through, it does not just freeze the policy


def test_fallbacks_when_phi_is_zero_and_the_reverse_option_is_eq_10_read_literally():
    """pi_unsafe == pi_k makes phi = 0: any positive margin is infeasible. exclusion (default) has no
    direction to move in and keeps theta_k; none keeps theta_k; reverse (kept as the literal eq. 10)
    takes theta_k - alpha G inside the KL ball, which lowers the joint surrogate."""
    actor, obs, act, joint, _, _ = real_batch(seed=1)
    with torch.no_grad():
        um, uls = actor(obs)
    theta_k = s.get_flat_params(actor)
    for fallback in ("exclusion", "none", "reverse"):
        theta_new, diag = strpo_step(actor, obs, act, joint, um, uls, **STEP, fallback=fallback)
        assert diag["qcqp_case"] == "infeasible" and diag["accepted"] == 0 and diag["phi_norm"] < 1e-6
        if fallback == "reverse":
            assert diag["fallback"] == "reverse" and float((theta_new - theta_k).norm()) > 0
            assert measured_kl(actor, obs, theta_k, theta_new) <= STEP["delta1"]
            assert diag["surrogate_change"] < 0
        else:
            assert float((theta_new - theta_k).norm()) < 1e-6 and diag["kl_unsafe_after"] >= diag["kl_unsafe_before"]


def test_absolute_exclusion_target_is_inactive_far_from_pi_unsafe_and_active_near_it():
    """--exclusion-target absolute keeps KL(pi_unsafe || pi) > epsilon_excl: with epsilon_excl far below
    the current KL the constraint is slack (lambda2* = 0, a plain TRPO step on the joint advantage);
    just above the current KL it binds and the accepted step reaches the ball's edge (measured)."""
    actor, obs, act, joint, um, uls = real_batch("SafetyCarCircle1-v0", steps=1000, seed=3)
    theta_k = s.get_flat_params(actor)
    kl_k = measured_kl_to(actor, obs, theta_k, um, uls)
    _, slack = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, exclusion_target="absolute", epsilon_excl=0.5 * kl_k)
    assert slack["qcqp_case"] == "inactive" and slack["lambda2_used"] == 0 and slack["required_excl_margin"] < 0
    _, trpo = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, exclusion=False)
    assert slack["surrogate_change"] == pytest.approx(trpo["surrogate_change"], rel=1e-6)
    target = kl_k + 0.5 * slack["max_excl_margin"]
    theta_new, near = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, exclusion_target="absolute", epsilon_excl=target)
    assert near["qcqp_case"] == "active" and near["lambda2_used"] > 0
    if near["accepted"]:
        assert measured_kl_to(actor, obs, theta_new, um, uls) >= kl_k + 0.5 * (target - kl_k)


def test_pid_multiplier_rises_over_the_limit_falls_under_it_and_cannot_wind_up():
    pid = s.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95, delta_d_ema_alpha=0.95, cap=100.0)
    lams = [pid.update(80.0) for _ in range(40)]
    assert all(l >= 0 for l in lams) and lams[-1] > lams[0] > 0
    assert all(b >= a - 1e-12 for a, b in zip(lams, lams[1:])), "a steady violation must not lower lambda"
    falling = [pid.update(0.0) for _ in range(300)]
    assert falling[-1] < lams[-1] and falling[-1] == 0.0 and all(l >= 0 for l in falling)
    # hand-computed first steps from zero state
    pid2 = s.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=2, delta_p_ema_alpha=0.95, delta_d_ema_alpha=0.95, cap=100.0)
    l1 = pid2.update(45.0)  # e = 20: I = 0.2, P = 1.0, cost_ema = 2.25, D = 2.25 - 0
    assert l1 == pytest.approx(0.1 * 1.0 + 0.2 + 0.01 * 2.25)
    # wind-up: a huge violation saturates the integral at the cap, not beyond it
    pid3 = s.PIDLagrangian(25.0, kp=0.1, ki=0.01, kd=0.01, d_delay=10, delta_p_ema_alpha=0.95, delta_d_ema_alpha=0.95, cap=100.0)
    for _ in range(200):
        lam = pid3.update(1e6)
        assert pid3.i <= 100.0 and lam <= 100.0
    steps_to_recover = 0
    while pid3.update(0.0) >= 100.0:
        steps_to_recover += 1
    assert steps_to_recover < 200, "a capped integral recovers; a wound-up one (1e4 here) would not"


def test_no_exclusion_reduces_to_trpo_on_the_joint_advantage():
    actor, obs, act, joint, um, uls = real_batch(seed=4)
    theta_k = s.get_flat_params(actor)
    theta_new, diag = strpo_step(actor, obs, act, joint, um, uls, delta1=0.01, exclusion=False)
    assert diag["lambda2_used"] == 0 and diag["phi_norm"] == 0
    diag_trpo = u.trpo_step(actor, obs, act, joint, u.Args(target_kl=0.01))  # unsafe_cvar_trpo's plain TRPO step (defaults as strpo.py's)
    torch.testing.assert_close(theta_new, s.get_flat_params(actor), rtol=1e-5, atol=1e-7)
    assert diag["backtracks"] == diag_trpo["backtracks"]
    s.set_flat_params(actor, theta_k)


def test_joint_advantage_z_scores_each_stream_and_the_ablation_drops_the_cost_term():
    g = torch.Generator().manual_seed(0)
    r = 5 + 3 * torch.randn(1000, generator=g)
    c = -2 + 0.1 * torch.randn(1000, generator=g)
    rz, cz = (r - r.mean()) / r.std(), (c - c.mean()) / c.std()
    torch.testing.assert_close(s.joint_advantage(r, c, 0.7), rz - 0.7 * cz, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.joint_advantage(r, c, 0.7, use_cost=False), rz, rtol=1e-5, atol=1e-5)


def test_z_scoring_does_not_blow_up_a_stream_with_next_to_no_signal():
    """sigma is floored (the sigma_min of the paper's joint-advantage lemma): a cost stream of critic
    noise (std 1e-3, no costly step) stays tiny instead of being scaled to unit variance; a real
    signal is z-scored as before."""
    g = torch.Generator().manual_seed(1)
    noise = 1e-3 * torch.randn(5000, generator=g)
    assert float(s.zscore(noise).std()) == pytest.approx(1e-3 / s.ADV_STD_FLOOR, rel=0.05)
    signal = 0.3 * torch.randn(5000, generator=g)
    assert float(s.zscore(signal).std()) == pytest.approx(1.0, rel=1e-5)
    assert float(s.zscore(signal).mean()) == pytest.approx(0.0, abs=1e-6)


def test_missing_or_mismatched_unsafe_policy_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        s.main(s.Args(env_id="SafetyPointGoal1-v0", total_timesteps=1000, steps_per_epoch=1000, output_dir=str(tmp_path)))
    assert "unsafe_cvar_trpo.py --env-id SafetyPointGoal1-v0" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(SystemExit) as exc:  # a Hopper pi_unsafe (obs 11, act 3) on CarCircle1 (obs 40, act 2)
        s.main(s.Args(env_id="SafetyCarCircle1-v0", unsafe_policy_path=str(HOPPER_UNSAFE), num_envs=1,
                      total_timesteps=1000, steps_per_epoch=1000, output_dir=str(tmp_path)))
    assert "this env has obs 40, act 2" in str(exc.value)


@pytest.mark.parametrize("env_id", PAPER_TASKS)
def test_short_real_run_on_each_paper_task_writes_theorem_1_columns_and_a_loadable_checkpoint(tmp_path, env_id):
    args = s.Args(env_id=env_id, total_timesteps=2000, steps_per_epoch=1000, num_envs=2, output_dir=str(tmp_path))
    run_dir = s.main(args)
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for col in ("kl", "excl_margin", "measured_excl_margin", "kl_unsafe_before", "kl_unsafe_after", "lambda_cost",
                "lambda2_used", "qcqp_case", "backtracks", "fallback", "surrogate_change", "cg_residual_g",
                "cg_residual_phi", "ep_cost", "cost_rate"):
        assert col in rows[0], col
    for r in rows:  # the default never moves toward pi_unsafe; accepted steps keep both measured constraints
        assert float(r["kl_unsafe_after"]) >= float(r["kl_unsafe_before"]) and "reverse" not in r["fallback"]
        if r["accepted"] == "1":
            assert float(r["kl"]) <= args.delta1 and float(r["measured_excl_margin"]) >= 0.5 * args.delta2
    report = theorem1.report(run_dir / "progress.csv")  # benchmark/theorem1_report.py reads the same columns
    assert report["violations"] == 0 and report["toward_unsafe"] == 0 and report["epochs"] == 2
    import safety_gymnasium

    env = safety_gymnasium.make(env_id)
    _, _, meta = u.load_checkpoint(run_dir / "strpo.pt", env_id, env.observation_space.shape[0], env.action_space.shape[0])
    assert meta["algo"] == "strpo" and meta["global_step"] == 2000
