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
    diag = m.trpo_step(actor, norm_obs, actions, adv, delta=args.target_kl)
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
])
def test_bad_input_gives_a_one_line_error(kw, needle):
    with pytest.raises(SystemExit) as exc:
        m.validate_args(m.Args(**kw))
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg
