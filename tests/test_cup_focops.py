"""CUP and FOCOPS (baselines/cup.py, focops.py): each update, run as the training loop runs it,
must land on the known optimum of a tiny problem, and CUP's multiplier must follow its rule.

The tiny problem. S one-hot states, a 1-D action, a Gaussian actor pi_k(.|s) = N(mu_k(s), sigma^2)
(state-independent sigma, as every actor here). The batch holds, for every state, the N actions
mu_k(s) + sigma z_i with z_i the (i + 1/2)/N quantiles of N(0, 1): a noiseless stand-in for
samples of pi_k. The advantages are linear in the action, A(s, a) = k_s (a - mu_k(s)), so that
for any Gaussian pi_theta = N(mu, s_theta^2) the importance-sampled surrogate the updates estimate
is exact in closed form:

    E_{a ~ pi_k}[ pi_theta(a|s) / pi_k(a|s) * A(s, a) ] = E_{a ~ pi_theta}[ A(s, a) ] = k_s (mu - mu_k(s)).

FOCOPS (Zhang et al. 2020, Theorem 1): the optimal non-parametric policy is
pi*(a|s) ∝ pi_k(a|s) exp((A^r - nu A^c)(s, a) / lambda). With A^r - nu A^c = k_s (a - mu_k) the
exponent is linear in a; completing the square,
    -(a - mu_k)^2 / (2 sigma^2) + k_s (a - mu_k) / lambda
        = -(a - mu_k - sigma^2 k_s / lambda)^2 / (2 sigma^2) + const,
so pi* = N(mu_k + sigma^2 k_s / lambda, sigma^2): a Gaussian again, mean shifted by
sigma^2 k_s / lambda, same sigma. FOCOPS's loss E_s[KL(pi_theta || pi_k) - E_{pi_theta}[A]/lambda]
equals E_s[KL(pi_theta || pi*)] minus a constant (log of the normaliser), so its minimiser over
the Gaussian actor is pi* itself, reachable here because the shift stays inside the per-state KL
bound (KL(pi* || pi_k) = (shift / sigma)^2 / 2 <= 0.0113 < delta = 0.02).

CUP (Yang et al. 2022), projection step: with a zero reward advantage the improvement step does not
move (PPO-clip's gradient is 0), so pi_{k+1/2} = pi_k, and the projection minimises
    KL(pi_theta || pi_k) + nu c E_{pi_theta}[A^c],    c = (1 - gamma lambda_GAE) / (1 - gamma) = 5.95,
per state, with A^c = k_s (a - mu_k):
    log(sigma / s_theta) + (s_theta^2 + (mu - mu_k)^2) / (2 sigma^2) - 1/2 + nu c k_s (mu - mu_k).
d/dmu = 0 gives mu* = mu_k - sigma^2 nu c k_s; d/ds_theta = 0 gives s_theta = sigma (the cost term
does not depend on s_theta). The known minimiser: mean shifted by -sigma^2 nu c k_s, std unchanged.

In both tests the slopes k_s are derived from chosen shifts (in units of sigma) and the update must
reproduce the shifts to 0.01 sigma; a wrong sign of nu, a dropped temperature lambda or a dropped
coefficient c each moves some state's mean by more than 0.05 sigma, and CUP's KL taken the other way
round, KL(pi_k || pi_theta), widens the std (checked to 0.004 in log-std).
"""
import math

import numpy as np
import pytest
import torch

try:  # libtriton (loaded lazily by torch.optim) segfaults if MuJoCo was loaded first: load it now
    import triton  # noqa: F401
except ImportError:
    pass

from conftest import ROOT, load_script

CUP, FOCOPS = (ROOT / "baselines" / f"{n}.py" for n in ("cup", "focops"))
STATES, QUANTILES = 4, 256
SHIFT_TOLERANCE = 0.01  # in units of sigma


def quantile_batch(m, seed):
    """A fresh actor, one-hot observations of STATES states and, per state, the QUANTILES
    quantile actions of pi_k. Returns actor, obs, actions, mu_k per sample, sigma, log_std_k."""
    torch.manual_seed(seed)
    actor = m.Actor(STATES, 1, (16,))
    obs = torch.eye(STATES).repeat_interleave(QUANTILES, 0)
    with torch.no_grad():
        mu_k, log_std_k = (x.clone() for x in actor(obs))
    sigma = float(log_std_k[0, 0].exp())
    q = (torch.arange(QUANTILES, dtype=torch.float64) + 0.5) / QUANTILES
    z = torch.distributions.Normal(0.0, 1.0).icdf(q).float().repeat(STATES)
    actions = mu_k + sigma * z[:, None]
    return actor, obs, actions, mu_k, sigma, float(log_std_k[0, 0])


def mean_shift_in_sigmas(actor, mu_k, sigma):
    with torch.no_grad():
        mean, log_std = actor(torch.eye(STATES))
    return ((mean[:, 0] - mu_k[::QUANTILES, 0]) / sigma).numpy(), float(log_std[0, 0].detach())


def test_focops_update_reaches_the_optimal_nonparametric_policy_of_a_tiny_gaussian_problem():
    m = load_script(FOCOPS)
    actor, obs, actions, mu_k, sigma, log_std_k = quantile_batch(m, seed=0)
    lam, nu = 1.5, 0.7
    target = np.array([0.15, -0.12, 0.06, 0.0])  # (mu* - mu_k) / sigma per state
    cost_slope = np.array([0.0, 0.2, -0.1, 0.3]) / sigma
    # shift sigma = sigma^2 (k_r - nu k_c) / lambda  =>  k_r = lambda shift / sigma + nu k_c; the last state's
    # reward gain is exactly cancelled by its nu-weighted cost, so pi* leaves it where it is
    reward_slope = lam * target / sigma + nu * cost_slope
    offset = (actions - mu_k)[:, 0]
    reward_adv = torch.tensor(reward_slope, dtype=torch.float32).repeat_interleave(QUANTILES) * offset
    cost_adv = torch.tensor(cost_slope, dtype=torch.float32).repeat_interleave(QUANTILES) * offset
    # full-batch steps, enough passes to converge; a larger Adam step than a run's so that it takes < 1 s
    args = m.Args(update_epochs=150, minibatch_size=STATES * QUANTILES, focops_lam=lam)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    diag = m.focops_update(actor, opt, obs, actions, reward_adv, cost_adv, nu, args)
    shift, log_std = mean_shift_in_sigmas(actor, mu_k, sigma)
    np.testing.assert_allclose(shift, target, atol=SHIFT_TOLERANCE)
    assert log_std == pytest.approx(log_std_k, abs=0.01)  # pi* keeps sigma
    assert diag["masked_fraction"] == 0 and diag["kl"] == pytest.approx((target**2 / 2).mean(), rel=0.05), diag


def test_cup_projection_reaches_the_known_minimiser_of_kl_plus_weighted_cost_on_a_tiny_gaussian_problem():
    m = load_script(CUP)
    actor, obs, actions, mu_k, sigma, log_std_k = quantile_batch(m, seed=1)
    nu = 0.8
    args = m.Args(update_epochs=1, projection_epochs=150, minibatch_size=STATES * QUANTILES)
    coef = (1 - args.gamma * args.gae_lambda) / (1 - args.gamma)
    assert coef == pytest.approx(5.95)
    target = np.array([-0.19, 0.19, 0.0, -0.10])  # (mu* - mu_k) / sigma per state
    cost_slope = -target / (sigma * nu * coef)  # shift sigma = -sigma^2 nu c k_c
    offset = (actions - mu_k)[:, 0]
    cost_adv = torch.tensor(cost_slope, dtype=torch.float32).repeat_interleave(QUANTILES) * offset
    reward_adv = torch.zeros_like(cost_adv)  # the improvement step stays at pi_k
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    diag = m.cup_update(actor, opt, obs, actions, reward_adv, cost_adv, nu, args)
    assert diag["kl_improve"] == 0.0 and diag["cost_surrogate_improved"] == pytest.approx(0.0, abs=1e-6)
    shift, log_std = mean_shift_in_sigmas(actor, mu_k, sigma)
    np.testing.assert_allclose(shift, target, atol=SHIFT_TOLERANCE)
    # sigma stays: with the KL the other way round, KL(pi_k || pi_theta), the minimiser's shared std would
    # be sqrt(sigma^2 + mean_s (mu* - mu_k)^2), log-std + 0.010 here
    assert log_std == pytest.approx(log_std_k, abs=0.004)
    # the cost surrogate at the minimiser: mean_s k_s (mu* - mu_k) = -mean_s sigma^2 nu c k_s^2
    expected_cost = float(np.mean(cost_slope * target * sigma))
    assert diag["cost_surrogate_final"] == pytest.approx(expected_cost, rel=0.05), diag


def test_cup_multiplier_rises_while_cost_exceeds_the_limit_and_its_cap_is_reached_within_a_run():
    """nu follows the authors' rule nu <- clip(nu + 0.01 (J_c - d), 0, 2). At J_c - d = 45 (an early
    CUP epoch on SafetyHopperVelocity-v1) it rises by 0.45 every epoch and reaches the cap in 5
    epochs, well inside the 30 epochs of a 450k-step run; the rule it replaced (steps of 0.035 per
    epoch at any violation, Adam) needed 57 violating epochs. Below the limit nu falls, never below 0."""
    m = load_script(CUP)
    args = m.Args()
    assert (args.nu_init, args.nu_lr, args.nu_max) == (0.0, 0.01, 2.0)  # the authors' main.py defaults
    nu, history = args.nu_init, []
    for _ in range(30):
        nu = m.update_nu(nu, args.cost_limit + 45.0, args.cost_limit, args.nu_lr, args.nu_max)
        history.append(nu)
    rising = history[: history.index(args.nu_max)]
    assert len(rising) == 4 and all(b - a == pytest.approx(0.45) for a, b in zip([0.0] + rising, rising))
    assert history[4:] == [args.nu_max] * 26  # capped, not run away
    # small violations still move it, in proportion
    assert m.update_nu(0.5, args.cost_limit + 2.0, args.cost_limit, args.nu_lr, args.nu_max) == pytest.approx(0.52)
    # under the limit it falls and is projected onto nu >= 0
    nu = 1.0
    for _ in range(10):
        previous, nu = nu, m.update_nu(nu, args.cost_limit - 20.0, args.cost_limit, args.nu_lr, args.nu_max)
        assert nu < previous or nu == 0.0
    assert nu == 0.0


def test_cup_rejects_an_initial_multiplier_above_its_cap():
    m = load_script(CUP)
    with pytest.raises(SystemExit) as exc:
        m.validate_args(m.Args(env_id="SafetyHopperVelocity-v1", nu_init=3.0))
    assert str(exc.value).startswith("error:") and "\n" not in str(exc.value)
