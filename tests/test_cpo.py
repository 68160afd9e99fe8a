"""CPO (baselines/cpo.py): the analytic dual solution of the QCQP against an independent solve,
in every case of the paper's appendix, and short real runs.

The independent reference never touches the dual. With H = L L^T (Cholesky) and y = L^T s the
problem  max g^T s  s.t. 1/2 s^T H s <= delta, b^T s + c <= 0  becomes a linear objective
gt^T y (gt = L^-1 g) over the Euclidean ball |y| <= R = sqrt(2 delta) cut by the half-space
bt^T y + c <= 0 (bt = L^-1 b). Plain geometry then gives the optimum:
  - if c - R |bt| > 0 no point of the ball is feasible; the recovery reference is the
    min-cost point of the ball, y = -R bt / |bt|;
  - else if the ball's maximiser y = R gt / |gt| is feasible, it is the optimum;
  - else the half-space constraint is active (for a convex set, an optimum with the constraint
    slack would be a local, hence global, optimum of the ball alone), and on the plane the
    feasible set is a ball of centre y0 = -c bt / |bt|^2 and radius sqrt(R^2 - |y0|^2), on which
    the linear objective is maximised along the projection of gt onto the plane.
This is trustworthy because it is a different derivation (primal geometry, no multipliers, no
case analysis on lambda intervals) and because every reference point is additionally certified
by the KKT conditions, which are sufficient for a convex problem: primal feasibility,
g = lambda H s + nu b with lambda, nu >= 0 found by least squares with ~0 residual, and
complementary slackness. The recovery reference is certified the same way for min b^T s.
"""
import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

try:  # libtriton (loaded lazily by torch.optim) segfaults if MuJoCo was loaded first: load it now
    import triton  # noqa: F401
except ImportError:
    pass

from conftest import ROOT, dense_kl_hessian, dense_surrogate_gradient, load_script, tiny_actor_batch

CPO = ROOT / "baselines" / "cpo.py"


def random_spd(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(rng.uniform(0.05, 5.0, n)) @ q.T


def reference_step(H, g, b, c, delta):
    """Primal geometric solve in the H-metric (module docstring). Returns (s, feasible)."""
    L = np.linalg.cholesky(H)
    gt, bt = np.linalg.solve(L, g), np.linalg.solve(L, b)
    R = math.sqrt(2 * delta)
    nb = np.linalg.norm(bt)
    if nb == 0:
        y = R * gt / np.linalg.norm(gt)
        return np.linalg.solve(L.T, y), True
    if c - R * nb > 0:
        y = -R * bt / nb
        return np.linalg.solve(L.T, y), False
    y = R * gt / np.linalg.norm(gt)
    if bt @ y + c > 0:
        y0 = -c * bt / nb**2
        rho = math.sqrt(max(R**2 - y0 @ y0, 0.0))
        p = gt - (gt @ bt) / nb**2 * bt
        y = y0 + rho * p / np.linalg.norm(p)
    return np.linalg.solve(L.T, y), True


def assert_kkt(H, g, b, c, delta, s, feasible, tol=1e-7):
    """KKT certificate of optimality of s (sufficient: the problem is convex)."""
    kl_gap = 0.5 * s @ H @ s - delta
    if not feasible:  # min b^T s s.t. 1/2 s^T H s <= delta: -b = lambda H s, lambda > 0, boundary
        lam = np.linalg.lstsq((H @ s)[:, None], -b, rcond=None)[0][0]
        assert lam > 0 and np.allclose(lam * H @ s, -b, atol=tol * (1 + np.abs(b).max()))
        assert abs(kl_gap) < tol
        return
    cost_gap = b @ s + c
    assert kl_gap < tol and cost_gap < tol * (1 + abs(c))
    M = np.stack([H @ s, b], 1)
    (lam, nu), *_ = np.linalg.lstsq(M, g, rcond=None)
    if abs(cost_gap) > 1e-6 * (1 + abs(c)):  # constraint slack: nu must be 0
        lam, nu = np.linalg.lstsq(M[:, :1], g, rcond=None)[0][0], 0.0
    assert lam >= -tol and nu >= -tol
    np.testing.assert_allclose(lam * H @ s + nu * b, g, atol=tol * (1 + np.abs(g).max()))
    assert abs(lam * kl_gap) < tol * (1 + lam)


def test_cpo_step_equals_independent_qcqp_optimum_in_every_case():
    m = load_script(CPO)
    rng = np.random.default_rng(0)
    counts = {k: 0 for k in range(5)}
    nu_positive, nu_zero = 0, 0
    for trial in range(400):
        n = int(rng.integers(3, 9))
        H = random_spd(rng, n)
        g, b = rng.normal(size=n), rng.normal(size=n)
        delta = float(rng.uniform(0.005, 0.05))
        target = trial % 5
        if target == 4:
            b = np.zeros(n)  # no cost gradient: with c < 0 the constraint is void, the TRPO step is optimal
            c = -abs(float(rng.normal()))
        else:
            edge = math.sqrt(2 * delta * b @ np.linalg.solve(H, b))  # c at which the plane touches the ball
            if target == 3:
                c = -edge * rng.uniform(1.05, 3.0)
            elif target == 2:
                c = -edge * rng.uniform(0.02, 0.98)
            elif target == 1:
                c = edge * rng.uniform(0.02, 0.98)
            else:
                c = edge * rng.uniform(1.05, 3.0)
        t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
        step, info = m.cpo_step_direction(t(g), t(b), c, delta, t(np.linalg.solve(H, g)), t(np.linalg.solve(H, b)))
        assert info["case"] == target, (trial, info)
        counts[info["case"]] += 1
        ref, feasible = reference_step(H, g, b, c, delta)
        assert feasible == (info["case"] != 0)
        assert_kkt(H, g, b, c, delta, ref, feasible)
        np.testing.assert_allclose(step.numpy(), ref, rtol=1e-7, atol=1e-9 * (1 + np.abs(ref).max()))
        if info["case"] in (1, 2):
            nu_positive += info["nu_star"] > 0
            nu_zero += info["nu_star"] == 0
    assert all(v >= 40 for v in counts.values()), counts
    # both intervals of the two-multiplier case (lambda_a with nu* > 0, lambda_b with nu* = 0) occur
    assert nu_positive >= 20 and nu_zero >= 10, (nu_positive, nu_zero)


def test_recovery_step_only_reduces_cost_and_lands_on_the_trust_region_boundary():
    m = load_script(CPO)
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 6
        H = random_spd(rng, n)
        g, b = rng.normal(size=n), rng.normal(size=n)
        Hinv_b = np.linalg.solve(H, b)
        c = 2.0 * math.sqrt(2 * 0.01 * b @ Hinv_b)
        t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
        step, info = m.cpo_step_direction(t(g), t(b), c, 0.01, t(np.linalg.solve(H, g)), t(Hinv_b))
        s = step.numpy()
        assert info["case"] == 0
        assert b @ s < 0 and 0.5 * s @ H @ s == pytest.approx(0.01, rel=1e-9)
        # no other point of the trust region has a lower linearised cost
        for _ in range(200):
            z = rng.normal(size=n)
            z *= math.sqrt(2 * 0.01 / (z @ H @ z)) * rng.uniform(0, 1)
            assert b @ z >= b @ s - 1e-12


def tiny_batch(m, seed=0):
    torch.manual_seed(seed)
    actor = m.Actor(4, 2, (16,))
    obs = torch.randn(256, 4)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    reward_adv, cost_adv = torch.randn(256), torch.randn(256)
    return actor, obs, actions, reward_adv, cost_adv - cost_adv.mean()


def test_cpo_update_in_recovery_lowers_the_cost_surrogate_inside_the_kl_ball():
    m = load_script(CPO)
    actor, obs, actions, reward_adv, cost_adv = tiny_batch(m)
    args = m.Args()
    diag = m.cpo_update(actor, obs, actions, reward_adv, cost_adv, 10.0, args)
    assert diag["cpo_case"] == 0 and diag["accepted"] == 1
    assert diag["cost_surrogate_change"] < 0 and 0 < diag["kl"] <= args.target_kl


def test_cpo_update_far_inside_the_constraint_is_a_trpo_step_that_improves_reward():
    m = load_script(CPO)
    actor, obs, actions, reward_adv, cost_adv = tiny_batch(m, seed=1)
    args = m.Args()
    diag = m.cpo_update(actor, obs, actions, reward_adv, cost_adv, -10.0, args)
    assert diag["cpo_case"] == 3 and diag["accepted"] == 1 and diag["nu_star"] == 0
    assert diag["surrogate_improvement"] > 0 and 0 < diag["kl"] <= args.target_kl


@pytest.mark.parametrize("env_id", ["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"])
def test_short_real_run_writes_progress_and_a_checkpoint_the_reference_loader_reads(env_id, tmp_path):
    m = load_script(CPO)
    args = m.Args(env_id=env_id, total_timesteps=2000, steps_per_epoch=1000, num_envs=2, output_dir=str(tmp_path))
    run_dir = m.main(args)
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert int(r["cpo_case"]) in range(5) and float(r["kl"]) <= args.target_kl
        for key in ("global_step", "ep_ret", "ep_cost", "cost_rate", "lambda_star", "nu_star", "backtracks", "sps"):
            assert key in r
    ref = load_script(ROOT / "unsafe_cvar_trpo.py")
    obs_dim, act_dim = (11, 3) if "Hopper" in env_id else (40, 2)
    actor, obs_rms, meta = ref.load_checkpoint(run_dir / "cpo.pt", env_id=env_id, obs_dim=obs_dim, act_dim=act_dim)
    assert meta["algo"] == "cpo" and meta["global_step"] == 2000


# ----------------------------------------------------------------------------------------------
# cpo_update as a whole, on a tiny actor whose Fisher matrix is formed densely
# ----------------------------------------------------------------------------------------------
def dense_problem(m, seed=0, n=128, aligned_cost=False):
    """A tiny actor (obs 2, act 1, hidden (4,): 18 parameters) in float64, a batch, and the
    QCQP's data computed without cpo.py's helpers: g and b by autograd of the surrogates written
    out here, H = the dense Hessian of the mean Gaussian KL (closed form written out here) plus
    the update's damping."""
    actor, obs, actions = tiny_actor_batch(m, seed, n)
    reward_adv = torch.randn(n, dtype=torch.float64)
    cost_adv = reward_adv.clone() if aligned_cost else torch.randn(n, dtype=torch.float64)
    cost_adv = cost_adv - cost_adv.mean()

    theta0 = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()
    g = dense_surrogate_gradient(actor, obs, actions, reward_adv)
    b = dense_surrogate_gradient(actor, obs, actions, cost_adv)

    args = m.Args(cg_iters=60)  # CG on 18 unknowns: enough iterations to be exact up to round-off
    H = dense_kl_hessian(actor, obs).numpy() + args.cg_damping * np.eye(theta0.numel())
    return actor, obs, actions, reward_adv, cost_adv, g.numpy(), b.numpy(), H, args


@pytest.mark.parametrize("target_case", [0, 1, 2, 3])
def test_cpo_update_step_before_line_search_equals_independent_qcqp_solve_with_dense_fisher(target_case):
    m = load_script(CPO)
    actor, obs, actions, reward_adv, cost_adv, g, b, H, args = dense_problem(m, seed=target_case)
    edge = math.sqrt(2 * args.target_kl * b @ np.linalg.solve(H, b))  # |c| at which the plane touches the ball
    c = {0: 2.0, 1: 0.5, 2: -0.5, 3: -2.0}[target_case] * edge
    diag = m.cpo_update(actor, obs, actions, reward_adv, cost_adv, c, replace(args, fisher_subsample=1))  # H on every state, as the dense H
    assert diag["cpo_case"] == target_case
    ref, feasible = reference_step(H, g, b, c, args.target_kl)
    assert feasible == (target_case != 0)
    assert_kkt(H, g, b, c, args.target_kl, ref, feasible, tol=1e-6)
    # CG stops at residual norm 1e-5 (conjugate_gradient's tolerance): agreement to 1e-3 of the
    # step's length, where a wrong metric, sign or multiplier is off by O(1)
    err = np.linalg.norm(diag["step"].numpy() - ref) / np.linalg.norm(ref)
    assert err < 1e-3, err


def test_cpo_update_accepts_a_case_1_step_that_lowers_reward():
    """Cost advantage = reward advantage (b = g): every point with b^T s + c <= 0, c > 0, lowers
    the reward surrogate, so the exact CPO step trades reward for cost. The line search must
    take it (as Achiam's code and OmniSafe do), not keep theta_k."""
    m = load_script(CPO)
    actor, obs, actions, reward_adv, cost_adv, g, b, H, args = dense_problem(m, seed=5, aligned_cost=True)
    edge = math.sqrt(2 * args.target_kl * b @ np.linalg.solve(H, b))
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()
    diag = m.cpo_update(actor, obs, actions, reward_adv, cost_adv, 0.5 * edge, replace(args, fisher_subsample=1))
    assert diag["cpo_case"] == 1
    assert g @ diag["step"].numpy() < 0  # the QCQP optimum itself lowers the linearised reward
    assert diag["accepted"] == 1 and diag["surrogate_improvement"] < 0
    assert diag["cost_surrogate_change"] < 0 and 0 < diag["kl"] <= args.target_kl
    assert not torch.equal(torch.nn.utils.parameters_to_vector(actor.parameters()), theta_k)


def test_constraint_plane_tangent_to_the_trust_region_gives_the_touching_point():
    """B = 2 delta - c^2/s = 0 with c > 0 (exactly, in binary floating point): the only feasible
    point is -(c/s) H^-1 b; no division by B = 0."""
    m = load_script(CPO)
    H = np.eye(2)
    g, b = np.array([1.0, -0.25]), np.array([0.5, 0.5])  # s = b^T H^-1 b = 0.5
    delta, c = 2.0**-6, 0.125  # c^2 / s = 2^-5 = 2 delta
    assert c * c / 0.5 - 2 * delta == 0
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    step, info = m.cpo_step_direction(t(g), t(b), c, delta, t(g), t(b))
    s = step.numpy()
    ref, feasible = reference_step(H, g, b, c, delta)
    assert feasible and info["case"] == 1
    np.testing.assert_allclose(s, ref, atol=1e-15)
    assert 0.5 * s @ s == pytest.approx(delta) and b @ s + c == pytest.approx(0.0, abs=1e-15)
