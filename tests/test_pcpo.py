"""PCPO (baselines/pcpo.py): `pcpo_update` as a whole on a tiny actor whose Fisher matrix is
formed densely, against an independent solve of the paper's two steps.

The reference never calls pcpo.py's math: g and b come from autograd of the surrogates written
out here, H is the dense Hessian of the closed-form Gaussian KL (plus the update's damping), the
reward step is sqrt(2 delta / g^T H^-1 g) H^-1 g (paper eq. 3) by a dense solve, and the
projection (eq. 4), min_s 1/2 (s - s_r)^T L (s - s_r) s.t. b^T s + c <= 0, is solved from its KKT
system [[L, b], [b^T, 0]] [s; mu] = [L s_r; -c] (constraint active) with L = H (KL) or I (L2).
The instances are built so that the reward step violates the constraint (the projection is
active) and H is far from a multiple of the identity, so that a reward step along g instead of
H^-1 g, or an identity metric in KL mode, moves the step by a large fraction of its length.
"""
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

PCPO = ROOT / "baselines" / "pcpo.py"


def dense_problem(m, seed=0, n=128, projection="kl"):
    """Tiny actor (obs 2, act 1, hidden (4,): 18 parameters) in float64, a batch, g, b and the
    dense damped Fisher matrix H computed without pcpo.py's helpers."""
    actor, obs, actions = tiny_actor_batch(m, seed, n)
    reward_adv = torch.randn(n, dtype=torch.float64)
    cost_adv = torch.randn(n, dtype=torch.float64)
    cost_adv = cost_adv - cost_adv.mean()

    theta0 = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()
    g = dense_surrogate_gradient(actor, obs, actions, reward_adv)
    b = dense_surrogate_gradient(actor, obs, actions, cost_adv)

    args = m.Args(cg_iters=60, projection=projection)  # CG on 18 unknowns: enough iterations to converge
    H = dense_kl_hessian(actor, obs).numpy() + args.cg_damping * np.eye(theta0.numel())
    return actor, obs, actions, reward_adv, cost_adv, g.numpy(), b.numpy(), H, args


def reference_pcpo_step(H, g, b, c, delta, metric):
    """Paper eq. 3 then eq. 4 by dense linear algebra; the projection from its KKT system."""
    Hinv_g = np.linalg.solve(H, g)
    s_r = math.sqrt(2 * delta / (g @ Hinv_g)) * Hinv_g
    if b @ s_r + c <= 0:
        return s_r
    L = H if metric == "kl" else np.eye(len(g))
    n = len(g)
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n], kkt[:n, n], kkt[n, :n] = L, b, b
    sol = np.linalg.solve(kkt, np.concatenate([L @ s_r, [-c]]))
    assert sol[n] > 0  # the multiplier of the active constraint
    return sol[:n]


@pytest.mark.parametrize("metric", ["kl", "l2"])
def test_pcpo_update_step_equals_dense_reward_step_and_projection(metric):
    m = load_script(PCPO)
    actor, obs, actions, reward_adv, cost_adv, g, b, H, args = dense_problem(m, seed=3, projection=metric)
    Hinv_g = np.linalg.solve(H, g)
    s_r = math.sqrt(2 * args.target_kl / (g @ Hinv_g)) * Hinv_g
    # the reward step violates the linearised constraint by sqrt(2 delta b^T H^-1 b): the projection
    # moves the step about as far as the trust region's radius, so the metric matters
    c = -(b @ s_r) + math.sqrt(2 * args.target_kl * b @ np.linalg.solve(H, b))
    ref = reference_pcpo_step(H, g, b, c, args.target_kl, metric)
    assert b @ ref + c == pytest.approx(0.0, abs=1e-12)  # projected onto the plane
    diag = m.pcpo_update(actor, obs, actions, reward_adv, cost_adv, c, replace(args, fisher_subsample=1))  # H on every state, as the dense H
    step = diag["step"].numpy()
    # CG stops at residual norm 1e-5: agreement to 1e-3 of the step's length
    err = np.linalg.norm(step - ref) / np.linalg.norm(ref)
    assert err < 1e-3, err
    assert diag["projection_coef"] > 0 and diag["violation"] == pytest.approx(b @ s_r + c, rel=1e-3)
    assert diag["kl"] <= args.target_kl

    # the test separates the right answer from the two plausible mistakes by a wide margin
    g_step = math.sqrt(2 * args.target_kl / (g @ H @ g)) * g  # a reward step along g, scaled to the KL ball
    wrong_direction = g_step if b @ g_step + c <= 0 else _project(g_step, b, c, H if metric == "kl" else np.eye(len(g)))
    assert np.linalg.norm(wrong_direction - ref) / np.linalg.norm(ref) > 0.1
    if metric == "kl":
        identity = _project(s_r, b, c, np.eye(len(g)))
        assert np.linalg.norm(identity - ref) / np.linalg.norm(ref) > 0.1


def _project(s_r, b, c, L):
    Linv_b = np.linalg.solve(L, b)
    return s_r - max(0.0, (b @ s_r + c) / (b @ Linv_b)) * Linv_b


def test_pcpo_update_takes_a_step_at_c_zero():
    """c = 0 (J_c exactly at the limit): the projected step lies on the plane b^T s = 0 and its
    measured cost-surrogate change is second order. The line search must still find a step
    (within one standard error of the cost surrogate), not reject every backtrack."""
    m = load_script(PCPO)
    accepted = 0
    for seed in range(4):
        actor, obs, actions, reward_adv, cost_adv, g, b, H, args = dense_problem(m, seed=10 + seed)
        diag = m.pcpo_update(actor, obs, actions, reward_adv, cost_adv, 0.0, replace(args, fisher_subsample=1))
        assert diag["kl"] <= args.target_kl
        assert diag["cost_surrogate_change"] <= diag["cost_tolerance"]
        accepted += diag["accepted"]
    assert accepted == 4
