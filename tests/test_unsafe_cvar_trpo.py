"""unsafe_cvar_trpo.py: the quantile critic, the TRPO step on real data, short real runs,
reproducibility and input errors."""
import csv

import numpy as np
import pytest
import torch

from conftest import ROOT, load_script

m = load_script(ROOT / "unsafe_cvar_trpo.py")


def test_quantile_critic_recovers_quantiles_and_upper_tail_cvar():
    """Two states with known cost-to-go distributions: a normal N(5, 2^2) and an exponential with
    mean 3. Trained on samples with the quantile-Huber loss, the critic's quantiles must match the
    true quantiles at tau_i = (2i - 1) / 2N, and its CVaR_0.25 the true upper-tail mean."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_q, alpha = 32, 0.25
    critic = m.QuantileCritic(2, n_q, (64, 64))
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for _ in range(2500):
        normal = torch.as_tensor(rng.normal(5.0, 2.0, size=(256, 1)), dtype=torch.float32)
        expo = torch.as_tensor(rng.exponential(3.0, size=(256, 1)), dtype=torch.float32)
        obs = torch.cat([states[0].expand(256, 2), states[1].expand(256, 2)])
        loss = m.quantile_huber_loss(critic(obs), torch.cat([normal, expo]), critic.taus, kappa=0.1)
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        q = torch.sort(critic(states), dim=-1).values.numpy()
        cvar = m.cvar_from_quantiles(critic(states), alpha).numpy()
    taus = critic.taus.numpy()
    from statistics import NormalDist
    true_normal = np.array([NormalDist(5.0, 2.0).inv_cdf(t) for t in taus])
    true_expo = -3.0 * np.log(1 - taus)
    np.testing.assert_allclose(q[0], true_normal, atol=0.35)  # within 0.175 std of the N(5, 4)
    np.testing.assert_allclose(q[1], true_expo, atol=0.45)
    # true CVaR_0.25 (upper tail): normal: mu + sigma * pdf(z)/alpha; exponential: q_0.75 + mean
    z = NormalDist().inv_cdf(1 - alpha)
    true_cvar = [5.0 + 2.0 * NormalDist().pdf(z) / alpha, 3.0 * np.log(1 / alpha) + 3.0]
    np.testing.assert_allclose(cvar, true_cvar, rtol=0.06)


def _real_rollout(env_id, steps, seed=0):
    import safety_gymnasium

    env = safety_gymnasium.make(env_id)
    obs, _ = env.reset(seed=seed)
    torch.manual_seed(seed)
    actor = m.Actor(env.observation_space.shape[0], env.action_space.shape[0])
    rms = m.RunningMeanStd(env.observation_space.shape)
    obs_l, act_l, cost_l = [], [], []
    for _ in range(steps):
        with torch.no_grad():
            a = actor.distribution(rms.normalize(torch.as_tensor(obs[None], dtype=torch.float32))).sample()[0].numpy()
        obs_l.append(obs); act_l.append(a)
        obs, r, c, term, trunc, _ = env.step(np.clip(a, -1, 1))
        cost_l.append(c)
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    obs_arr = np.array(obs_l, np.float32)
    rms.update(obs_arr)
    return actor, rms.normalize(torch.as_tensor(obs_arr)), torch.as_tensor(np.array(act_l, np.float32)), np.array(cost_l)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trpo_update_on_real_rollout_never_exceeds_delta_in_measured_kl(seed):
    actor, norm_obs, actions, costs = _real_rollout("SafetyHopperVelocity-v1", 2000, seed)
    # a noisy but real advantage signal: discounted cost-to-go plus per-step noise, standardised
    rng = np.random.default_rng(seed)
    adv = torch.as_tensor(rng.normal(size=len(costs)) + np.cumsum(costs[::-1])[::-1], dtype=torch.float32)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    args = m.Args(target_kl=0.01)
    with torch.no_grad():
        old_mean, old_log_std = actor(norm_obs)
    theta_old = m.get_flat_params(actor)
    diag = m.trpo_step(actor, norm_obs, actions, adv, args)
    with torch.no_grad():
        new_mean, new_log_std = actor(norm_obs)
        var0, var1 = (2 * old_log_std).exp(), (2 * new_log_std).exp()
        kl = (new_log_std - old_log_std + (var0 + (old_mean - new_mean) ** 2) / (2 * var1) - 0.5).sum(-1).mean().item()
    assert diag["accepted"] == 1, diag
    assert not torch.equal(theta_old, m.get_flat_params(actor)), "an accepted step must move the policy"
    assert 0.0 < kl <= args.target_kl
    assert kl == pytest.approx(diag["kl"], rel=1e-4)
    assert diag["surrogate_improvement"] > 0


def _short_run(tmp_path, env_id, **kw):
    kw = {"total_timesteps": 2000, "steps_per_epoch": 1000, "num_envs": 2, **kw}
    args = m.Args(env_id=env_id, output_dir=str(tmp_path), **kw)
    run_dir = m.main(args)
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    return args, run_dir, rows


@pytest.mark.parametrize("env_id,critic", [("SafetyHopperVelocity-v1", "cvar"), ("SafetyCarCircle1-v0", "cvar"),
                                           ("SafetyHopperVelocity-v1", "mean")])
def test_short_real_run_writes_progress_and_a_loadable_checkpoint(tmp_path, env_id, critic):
    args, run_dir, rows = _short_run(tmp_path, env_id, critic=critic, save_to=str(tmp_path / "pi_unsafe.pt"))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [int(r["global_step"]) for r in rows] == [1000, 2000]
    for col in ("ep_ret", "ep_cost", "ep_len", "cost_rate", "sps", "kl", "backtracks", "cvar_estimate", "critic_loss"):
        assert col in rows[0], col
    for r in rows:
        assert 0.0 <= float(r["kl"]) <= args.target_kl
        assert np.isfinite(float(r["critic_loss"]))
    if env_id == "SafetyCarCircle1-v0":  # 500-step episodes, 500 steps per env per epoch: one each
        assert all(int(r["episodes"]) == 2 for r in rows)
        assert all(0 <= float(r["ep_cost"]) <= 500 for r in rows)
    import safety_gymnasium

    env = safety_gymnasium.make(env_id)
    for path in (run_dir / "unsafe_cvar_trpo.pt", tmp_path / "pi_unsafe.pt"):
        actor, rms, meta = m.load_checkpoint(path, env_id, env.observation_space.shape[0], env.action_space.shape[0])
        assert meta["algo"] == ("cvar_trpo_unsafe" if critic == "cvar" else "trpo_unsafe")
        assert meta["global_step"] == 2000 and meta["env_id"] == env_id
    assert (run_dir / "config.json").exists()


def test_saved_policies_are_the_ones_that_collected_their_epochs(tmp_path):
    """--save-policies-at 1 2: epoch 1's file is the untrained policy (seed's initialisation), epoch 2's the
    policy after one update, which differs from it and from the final one."""
    _, run_dir, _ = _short_run(tmp_path, "SafetyHopperVelocity-v1", total_timesteps=3000, save_policies_at=(1, 2), seed=3)
    first, second, final = (m.load_checkpoint(run_dir / f"unsafe_cvar_trpo{s}.pt") for s in ("_epoch1", "_epoch2", ""))
    torch.manual_seed(3)
    untrained = m.Actor(first[2]["obs_dim"], first[2]["act_dim"])
    for k, v in untrained.state_dict().items():
        torch.testing.assert_close(first[0].state_dict()[k], v)
    assert first[2]["global_step"] == 0 and second[2]["global_step"] == 1000 and final[2]["global_step"] == 3000
    w = [c[0].mean_net[0].weight for c in (first, second, final)]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_init_from_continues_the_policy_and_the_step_count(tmp_path):
    _, run_dir, _ = _short_run(tmp_path / "a", "SafetyHopperVelocity-v1", total_timesteps=1000)
    first = run_dir / "unsafe_cvar_trpo.pt"
    actor0, rms0, _ = m.load_checkpoint(first)
    args = m.Args(env_id="SafetyHopperVelocity-v1", total_timesteps=1000, steps_per_epoch=1000, num_envs=2,
                  output_dir=str(tmp_path / "b"), init_from=str(first), target_kl=1e-12, seed=99)  # a ~1e-6 step
    run_b = m.main(args)
    actor1, rms1, meta = m.load_checkpoint(run_b / "unsafe_cvar_trpo.pt")
    assert meta["global_step"] == 2000
    for k, v in actor0.state_dict().items():  # the loaded policy, moved by a KL-1e-12 step
        torch.testing.assert_close(actor1.state_dict()[k], v, rtol=0, atol=1e-4)
    torch.manual_seed(99)  # not the fresh policy that seed 99 would have started from
    assert not torch.allclose(m.Actor(11, 3).mean_net[0].weight, actor1.mean_net[0].weight, atol=1e-2)
    assert rms1.count > rms0.count  # the normaliser carried on with the new data
    with open(run_b / "progress.csv") as f:
        assert [int(r["global_step"]) for r in csv.DictReader(f)] == [2000]


def test_same_seed_gives_identical_progress_rows(tmp_path):
    timing = {"sps", "time_elapsed"}
    runs = []
    for k in range(2):
        _, _, rows = _short_run(tmp_path / str(k), "SafetyHopperVelocity-v1", seed=7)
        runs.append([{c: v for c, v in r.items() if c not in timing} for r in rows])
    assert runs[0] == runs[1]
    _, _, other = _short_run(tmp_path / "other", "SafetyHopperVelocity-v1", seed=8)
    assert [{c: v for c, v in r.items() if c not in timing} for r in other] != runs[0]


@pytest.mark.parametrize("kw,needle", [
    ({"env_id": "SafetyCarCircle-v0"}, "Did you mean: SafetyCarCircle"),
    ({"env_id": "NoSuchTask-v9"}, "unknown env id"),
    ({"total_timesteps": 0}, "--total-timesteps must be positive"),
    ({"steps_per_epoch": -5}, "--steps-per-epoch must be positive"),
    ({"total_timesteps": 100, "steps_per_epoch": 1000}, "at least --steps-per-epoch"),
    ({"cvar_alpha": 0.0}, "--cvar-alpha"),
    ({"critic_lambda": 1.5}, "--critic-lambda"),
    ({"total_timesteps": 30000, "steps_per_epoch": 15000, "save_policies_at": (3,)}, "between 1 and 2"),
])
def test_bad_input_gives_a_one_line_error(kw, needle):
    with pytest.raises(SystemExit) as exc:
        m.validate_args(m.Args(**kw))
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg


# ---------------------------------------------------------------------------------------------
# Multi-step distributional targets: SR(lambda), on a chain whose cost-to-go is known exactly
# ---------------------------------------------------------------------------------------------
CHAIN, GAMMA = 20, 0.99  # a fixed-length chain: state k, cost ~ N(1, 1) at every step, terminates after state 19


def _fit_chain(lam, epochs, seed=0, T=400, E=8):
    """The script's own target (sr_lambda_targets) and fit (fit_quantile_critic) routines, with
    its default critic settings, run for `epochs` epochs of E envs x T steps walking the chain.
    Returns the sorted quantiles of the 20 states and the true mean and std of their cost-to-go."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    args = m.Args()
    critic = m.QuantileCritic(CHAIN, args.num_quantiles, args.hidden_sizes)
    opt = torch.optim.Adam(critic.parameters(), lr=args.critic_lr)
    one_hot = torch.eye(CHAIN + 1)[:, :CHAIN]  # state k; the terminal state CHAIN is all zeros
    k = np.tile(np.arange(T)[:, None] % CHAIN, (1, E))
    term = (k == CHAIN - 1).astype(np.float64)
    obs, next_obs = one_hot[k.reshape(-1)], one_hot[(k + 1).reshape(-1)]
    for _ in range(epochs):
        cost = rng.normal(1.0, 1.0, size=(T, E))
        with torch.no_grad():
            next_q = torch.sort(critic(next_obs), -1).values.numpy().astype(np.float64).reshape(T, E, -1)
        targets = m.sr_lambda_targets(cost, next_q, term, term, GAMMA, lam, rng)
        m.fit_quantile_critic(critic, opt, obs, torch.as_tensor(targets.reshape(T * E, -1), dtype=torch.float32),
                              args.critic_epochs, args.critic_minibatch_size, args.huber_kappa)
    with torch.no_grad():
        quantiles = torch.sort(critic(one_hot[:CHAIN]), -1).values
    steps_left = CHAIN - np.arange(CHAIN)  # the cost-to-go of state k: a sum of steps_left normal costs
    mean = (1 - GAMMA**steps_left) / (1 - GAMMA)
    std = np.sqrt((1 - GAMMA ** (2 * steps_left)) / (1 - GAMMA**2))
    return quantiles, mean, std, critic.taus.numpy()


@pytest.mark.parametrize("lam", [0.95, 0.0])
def test_sr_lambda_critic_recovers_the_chains_quantiles_and_cvar_in_five_epochs(lam):
    """Five epochs of the default SR(0.95) targets: every quantile of every state within 0.75 std of the
    true one, the mean within 0.3 std, CVaR_0.25 (upper tail) within 0.5 std. One-step targets
    (lambda = 0) see about one step further per epoch: after five epochs the first state's value misses
    about two thirds of its 20-step cost-to-go, more than 2 std off."""
    from statistics import NormalDist

    quantiles, mean, std, taus = _fit_chain(lam, epochs=5)
    z = np.array([NormalDist().inv_cdf(t) for t in taus])
    true_quantiles = mean[:, None] + std[:, None] * z[None]
    alpha = m.Args().cvar_alpha
    true_cvar = mean + std * NormalDist().pdf(NormalDist().inv_cdf(1 - alpha)) / alpha  # normal upper-tail mean
    q_err = np.abs(quantiles.numpy() - true_quantiles).max(1) / std
    mean_err = np.abs(quantiles.numpy().mean(1) - mean) / std
    cvar_err = np.abs(m.cvar_from_quantiles(quantiles, alpha).numpy() - true_cvar) / std
    if lam > 0:
        assert q_err.max() < 0.75 and mean_err.max() < 0.3 and cvar_err.max() < 0.5, (q_err, mean_err, cvar_err)
    else:
        assert mean_err[0] > 2 and cvar_err[0] > 2, (mean_err, cvar_err)


def test_sr_lambda_targets_are_one_step_at_0_monte_carlo_at_1_and_lambda_returns_on_average():
    """lambda = 0: c + gamma * Z(s'); lambda = 1: the episode's discounted return (terminated: no
    bootstrap; truncated or cut by the batch: bootstrapped from Z of the last s'); any lambda: the
    samples' mean is the lambda-return of GAE (compute_gae's returns) under a critic whose quantiles
    all equal V(s')."""
    rng = np.random.default_rng(0)
    T, E, N = 12, 3, 4000
    cost = rng.normal(size=(T, E))
    term, end = np.zeros((T, E)), np.zeros((T, E))
    term[4, 0] = end[4, 0] = 1  # env 0: terminates at step 4
    end[7, 1] = 1  # env 1: truncated at step 7 (bootstraps from Z of its final observation)
    v_next = rng.normal(size=(T, E))
    next_q = np.repeat(v_next[:, :, None], N, axis=2) + rng.normal(scale=0.1, size=(T, E, N))
    one_step = m.sr_lambda_targets(cost, next_q, term, end, GAMMA, 0.0, rng)
    np.testing.assert_allclose(one_step, cost[:, :, None] + GAMMA * (1 - term[:, :, None]) * next_q)
    mc = m.sr_lambda_targets(cost, next_q, term, end, GAMMA, 1.0, rng)
    np.testing.assert_allclose(mc[0, 0], np.full(N, sum(GAMMA**j * cost[j, 0] for j in range(5))))
    np.testing.assert_allclose(mc[5, 1], sum(GAMMA**j * cost[5 + j, 1] for j in range(3)) + GAMMA**3 * next_q[7, 1])
    np.testing.assert_allclose(mc[3, 2], sum(GAMMA**j * cost[3 + j, 2] for j in range(T - 3)) + GAMMA**(T - 3) * next_q[-1, 2])
    values = rng.normal(size=(T, E))  # V(s_t): V(s_{t+1}) = v_next[t] within an episode
    values[1:] = np.where(end[:-1] == 1, values[1:], v_next[:-1])
    _, lambda_returns = m.compute_gae(cost, values, v_next, term, end, GAMMA, 0.9)
    sr = m.sr_lambda_targets(cost, np.repeat(v_next[:, :, None], N, axis=2), term, end, GAMMA, 0.9, rng)
    np.testing.assert_allclose(sr.mean(-1), lambda_returns, atol=0.08)


def test_realised_cost_to_go_is_the_discounted_sum_where_the_episode_ends_or_runs_long_enough():
    gamma = 0.5  # H = ceil(log 0.01 / log 0.5) = 7 steps make a cost-to-go known
    T = 10
    cost = np.arange(1.0, T + 1)[:, None].repeat(2, 1)
    term, end = np.zeros((T, 2)), np.zeros((T, 2))
    term[3, 0] = end[3, 0] = 1  # env 0: an episode terminates at step 3; the next runs to the batch's end
    ctg, known = m.realised_cost_to_go(cost, term, end, gamma)
    assert ctg[0, 0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4)
    assert ctg[4, 0] == pytest.approx(sum(0.5**j * cost[4 + j, 0] for j in range(6)))
    assert known[:4, 0].all() and not known[4:, 0].any()  # 6 steps after step 4: fewer than H
    assert known[:4, 1].all() and not known[4:, 1].any()  # env 1 never ends: steps 0-3 have 7+ steps ahead


def test_calibration_finds_a_calibrated_critic_and_an_underestimating_one():
    """States whose cost-to-go G is drawn from the critic's own distribution: a fraction alpha of them
    lies above VaR_{1-alpha}, with mean G = mean V_CVaR there; a critic at half the scale is caught."""
    rng = np.random.default_rng(0)
    from statistics import NormalDist

    B, N, alpha = 20000, 32, 0.25
    mu = rng.uniform(0, 50, size=B)
    taus = (np.arange(N) + 0.5) / N
    z = np.array([NormalDist().inv_cdf(t) for t in taus])
    quantiles = torch.as_tensor(mu[:, None] + 5 * z[None], dtype=torch.float32)
    ctg = mu + 5 * rng.normal(size=B)
    good = m.calibration(quantiles, ctg, alpha)
    assert good["tail_frac"] == pytest.approx(alpha, abs=0.01)
    assert good["ctg_tail"] == pytest.approx(good["cvar_tail"], rel=0.01)
    assert good["value_mean"] == pytest.approx(good["ctg_mean"], rel=0.01)
    low = m.calibration(quantiles * 0.5, ctg, alpha)
    assert low["tail_frac"] > 0.5 and low["ctg_tail"] > 1.5 * low["cvar_tail"]
