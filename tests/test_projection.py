"""PCPO, CUP and FOCOPS (baselines/pcpo.py, cup.py, focops.py): the projection against an
independent solve, the loss terms against their formulas, the cost-lowering effect of each update
when the constraint is violated, and short real runs.

PCPO's reference: the closest point to s_r on the plane b^T s + c = 0 in the metric L is the
solution of the KKT linear system [[L, b], [b^T, 0]] [s; mu] = [L s_r; -c] of the
equality-constrained quadratic program, solved densely with numpy (a different computation from
the script's closed form, which never forms L); a violated step must land there, a feasible one
must be left alone, and no random point of the feasible half-space is closer in that metric.
"""
import csv
import math

import numpy as np
import pytest
import torch

try:  # libtriton (loaded lazily by torch.optim) segfaults if MuJoCo was loaded first: load it now
    import triton  # noqa: F401
except ImportError:
    pass

from conftest import ROOT, load_script

PCPO, CUP, FOCOPS = (ROOT / "baselines" / f"{n}.py" for n in ("pcpo", "cup", "focops"))


def random_spd(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(rng.uniform(0.05, 5.0, n)) @ q.T


@pytest.mark.parametrize("metric", ["kl", "l2"])
def test_pcpo_projection_is_the_closest_point_satisfying_the_linearised_constraint(metric):
    m = load_script(PCPO)
    rng = np.random.default_rng(0)
    violated = feasible = 0
    for _ in range(200):
        n = int(rng.integers(3, 9))
        H = random_spd(rng, n)
        L = H if metric == "kl" else np.eye(n)
        s_r, b, c = rng.normal(size=n), rng.normal(size=n), float(rng.normal())
        t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
        step, info = m.pcpo_projection(t(s_r), t(b), c, t(np.linalg.solve(L, b)))
        s = step.numpy()
        if b @ s_r + c > 0:
            violated += 1
            kkt = np.block([[L, b[:, None]], [b[None, :], np.zeros((1, 1))]])
            ref = np.linalg.solve(kkt, np.concatenate([L @ s_r, [-c]]))[:n]
            np.testing.assert_allclose(s, ref, rtol=1e-8, atol=1e-10)
            assert b @ s + c == pytest.approx(0.0, abs=1e-10)  # equality when it was violated
            assert info["projection_coef"] > 0
            dist = (s - s_r) @ L @ (s - s_r)
            for _ in range(50):  # random feasible points are never closer in the L-metric
                z = s + rng.normal(size=n)
                if b @ z + c > 0:
                    z -= (b @ z + c) / (b @ b) * b * rng.uniform(1.0, 2.0)
                assert (z - s_r) @ L @ (z - s_r) >= dist - 1e-10
        else:
            feasible += 1
            np.testing.assert_array_equal(s, s_r)
            assert info["projection_coef"] == 0
    assert violated >= 50 and feasible >= 50, (violated, feasible)


def tiny_batch(m, seed=0, n=512):
    torch.manual_seed(seed)
    actor = m.Actor(4, 2, (16,))
    obs = torch.randn(n, 4)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    return actor, obs, actions


def test_pcpo_update_with_a_violated_constraint_lowers_the_cost_surrogate_in_both_metrics():
    m = load_script(PCPO)
    for metric in ("kl", "l2"):
        actor, obs, actions = tiny_batch(m)
        cost_adv = torch.randn(512)
        cost_adv -= cost_adv.mean()
        reward_adv = cost_adv + 0.3 * torch.randn(512)  # reward pulls toward cost: the projection must push back
        args = m.Args(projection=metric)
        diag = m.pcpo_update(actor, obs, actions, reward_adv, cost_adv, 0.05, args)
        assert diag["violation"] > 0 and diag["projection_coef"] > 0, diag
        assert diag["accepted"] == 1 and diag["cost_surrogate_change"] < 0 and diag["kl"] <= args.target_kl, diag


def gaussian_kl_literal(m0, s0, m1, s1):
    """KL(N(m0, s0^2) || N(m1, s1^2)) per state, summed over dims, written out by hand."""
    return (np.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5).sum(-1)


def constructed_inputs(seed):
    rng = np.random.default_rng(seed)
    B, A = 64, 3
    arr = lambda *shape, scale=1.0: rng.normal(size=shape) * scale  # noqa: E731
    d = dict(mean=arr(B, A), log_std=arr(B, A, scale=0.3), old_mean=arr(B, A), old_log_std=arr(B, A, scale=0.3),
             logp=arr(B, scale=0.2), old_logp=arr(B, scale=0.2), reward_adv=arr(B), cost_adv=arr(B))
    return d, {k: torch.tensor(v) for k, v in d.items()}


def test_cup_projection_loss_equals_its_formula():
    m = load_script(CUP)
    d, t = constructed_inputs(1)
    nu, gamma, lam = 0.7, 0.99, 0.95
    loss, kl = m.cup_projection_loss(t["mean"], t["log_std"], t["old_mean"], t["old_log_std"], t["logp"], t["old_logp"],
                                     t["cost_adv"], nu, gamma, lam)
    # here old_mean/old_log_std play pi_{k+1/2}: KL(pi_theta || pi_{k+1/2}), the CUP codes' order
    kl_ref = gaussian_kl_literal(d["mean"], np.exp(d["log_std"]), d["old_mean"], np.exp(d["old_log_std"])).mean()
    expected = kl_ref + nu * 5.95 * (np.exp(d["logp"] - d["old_logp"]) * d["cost_adv"]).mean()  # (1-.99*.95)/(1-.99)
    assert float(kl) == pytest.approx(kl_ref, rel=1e-12)
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_ppo_clip_loss_equals_its_formula():
    m = load_script(CUP)
    d, t = constructed_inputs(2)
    ratio = np.exp(d["logp"] - d["old_logp"]) * np.exp(np.linspace(-0.5, 0.5, 64))  # spread past the clip range
    logp = t["old_logp"] + torch.tensor(np.log(ratio))
    adv = d["reward_adv"]
    expected = -np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv).mean()
    assert float(m.ppo_clip_loss(logp, t["old_logp"], t["reward_adv"], 0.2)) == pytest.approx(expected, rel=1e-10)


def test_focops_loss_equals_its_formula_with_the_per_state_kl_mask():
    m = load_script(FOCOPS)
    d, t = constructed_inputs(3)
    nu, lam = 0.8, 1.5
    kl_ref = gaussian_kl_literal(d["mean"], np.exp(d["log_std"]), d["old_mean"], np.exp(d["old_log_std"]))
    delta = float(np.median(kl_ref))  # half of the states are masked out
    ratio = np.exp(d["logp"] - d["old_logp"])
    per_state = kl_ref - ratio * (d["reward_adv"] - nu * d["cost_adv"]) / lam
    expected = (per_state * (kl_ref <= delta)).mean()
    loss, kl = m.focops_loss(t["mean"], t["log_std"], t["old_mean"], t["old_log_std"], t["logp"], t["old_logp"],
                             t["reward_adv"], t["cost_adv"], nu, lam, delta)
    np.testing.assert_allclose(kl.numpy(), kl_ref, rtol=1e-12)
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    # masked states contribute no gradient
    mean = t["mean"].clone().requires_grad_(True)
    loss, _ = m.focops_loss(mean, t["log_std"], t["old_mean"], t["old_log_std"], t["logp"], t["old_logp"],
                            t["reward_adv"], t["cost_adv"], nu, lam, delta)
    loss.backward()
    assert torch.all(mean.grad[torch.tensor(kl_ref > delta)] == 0)


def test_cup_projection_step_lowers_the_cost_surrogate_of_the_improved_policy():
    m = load_script(CUP)
    actor, obs, actions = tiny_batch(m, seed=4)
    cost_adv = torch.randn(512)
    cost_adv -= cost_adv.mean()
    reward_adv = cost_adv + 0.3 * torch.randn(512)  # the improvement step raises cost
    args = m.Args(update_epochs=3, projection_epochs=3, minibatch_size=128)
    opt = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    diag = m.cup_update(actor, opt, obs, actions, reward_adv, cost_adv, nu=2.0, args=args)
    assert diag["cost_surrogate_improved"] > 0
    assert diag["cost_surrogate_final"] < diag["cost_surrogate_improved"], diag


def test_focops_update_with_a_large_multiplier_lowers_the_cost_surrogate():
    m = load_script(FOCOPS)
    actor, obs, actions = tiny_batch(m, seed=5)
    cost_adv = torch.randn(512)
    cost_adv -= cost_adv.mean()  # the cost surrogate of pi_k is 0: any decrease shows
    reward_adv = torch.zeros(512)
    args = m.Args(update_epochs=3, minibatch_size=128)
    opt = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    diag = m.focops_update(actor, opt, obs, actions, reward_adv, cost_adv, nu=args.nu_max, args=args)
    assert diag["cost_surrogate"] < 0 and diag["kl"] > 0, diag


def test_bad_flags_give_one_line_errors():
    for path, bad in ((PCPO, {"cost_limit": -1.0}), (CUP, {"gamma": 1.0}), (FOCOPS, {"nu_init": 3.0})):
        m = load_script(path)
        with pytest.raises(SystemExit) as exc:
            m.validate_args(m.Args(env_id="SafetyHopperVelocity-v1", **bad))
        assert str(exc.value).startswith("error:") and "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["pcpo", "cup", "focops"])
@pytest.mark.parametrize("env_id", ["SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"])
def test_short_real_run_writes_progress_and_a_checkpoint_the_reference_loader_reads(name, env_id, tmp_path):
    m = load_script(ROOT / "baselines" / f"{name}.py")
    args = m.Args(env_id=env_id, total_timesteps=2000, steps_per_epoch=1000, num_envs=2, output_dir=str(tmp_path))
    run_dir = m.main(args)
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    own = {"pcpo": ("violation", "projection_size", "backtracks"), "cup": ("nu", "kl_projection"),
           "focops": ("nu", "masked_fraction")}[name]
    for r in rows:
        assert all(key in r for key in ("global_step", "ep_ret", "ep_cost", "cost_rate", "kl", "sps") + own)
        assert math.isfinite(float(r["kl"]))
    ref = load_script(ROOT / "unsafe_cvar_trpo.py")
    obs_dim, act_dim = (11, 3) if "Hopper" in env_id else (40, 2)
    _, _, meta = ref.load_checkpoint(run_dir / f"{name}.pt", env_id=env_id, obs_dim=obs_dim, act_dim=act_dim)
    assert meta["algo"] == name and meta["global_step"] == 2000
