"""robustness_attack.py (paper appendix D): the attack's statistics, exact agreement with a plain
unattacked rollout at alpha = 0, exact episode accounting, the CSV and figures of a real sweep on
SafetyHopperVelocity-v1, clear errors, and reproducibility."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, load_script

ENV_ID = "SafetyHopperVelocity-v1"  # obs 11, act 3, ~9000 steps/s: the cheapest real task
ra = load_script(ROOT / "robustness_attack.py")
trainer = load_script(ROOT / "unsafe_cvar_trpo.py")  # writes the common checkpoint format


def trained_looking_policy(seed=0):
    """An actor and normaliser away from their init, so the policy's actions vary with the state."""
    gen = torch.Generator().manual_seed(seed)
    actor = ra.Actor(11, 3)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    obs_rms = ra.RunningMeanStd((11,))
    obs_rms.update(np.random.default_rng(seed).normal(0.0, 2.0, size=(500, 11)))
    return actor, obs_rms


def save(path, env_id=ENV_ID, algo="test_algo", seed=0):
    actor, obs_rms = trained_looking_policy(seed)
    trainer.save_checkpoint(path, actor, obs_rms, env_id, algo, trainer.Args(env_id=env_id), 1000)
    return str(path)


def uniform_ks_statistic(x, low, high):
    """Kolmogorov-Smirnov distance between the empirical CDF of x and U[low, high]."""
    u = np.sort((x - low) / (high - low))
    n = u.size
    return max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))


def plain_rollouts(actor, obs_rms, env_seed, n_episodes):
    """The unattacked deterministic policy, written out without the module's loop: one env,
    reset with env_seed, then unseeded resets as a vector env's autoreset does."""
    import safety_gymnasium

    env = safety_gymnasium.make(ENV_ID)
    low, high = env.action_space.low, env.action_space.high
    obs, _ = env.reset(seed=env_seed)
    out = []
    for _ in range(n_episodes):
        ep_ret = ep_cost = 0.0
        ep_len = 0
        while True:
            with torch.no_grad():
                norm = torch.clamp((torch.as_tensor(obs[None], dtype=torch.float32) - obs_rms._mean_t) / obs_rms._std_t, -10, 10)
                action = actor.mean_net(norm)[0].numpy().astype(np.float64)
            obs, reward, cost, terminated, truncated, _ = env.step(np.clip(action, low, high))
            ep_ret += reward
            ep_cost += cost
            ep_len += 1
            if terminated or truncated:
                out.append((ep_ret, ep_cost, ep_len))
                obs, _ = env.reset()
                break
    env.close()
    return out


# ----------------------------------------------------------------------------------------------
# The attack itself
# ----------------------------------------------------------------------------------------------
def test_alpha_one_draws_every_action_uniformly_from_the_action_box():
    rng = np.random.default_rng(123)
    low, high = np.array([-1.0, -2.0, 0.0]), np.array([1.0, 0.5, 3.0])  # asymmetric box
    n_steps, n_envs = 4000, 5
    policy = np.full((n_envs, 3), 7.0)  # far outside the box: any leak would show
    executed = np.empty((n_steps, n_envs, 3))
    for t in range(n_steps):
        executed[t], attacked = ra.attack_actions(policy, rng, 1.0, low, high)
        assert attacked.all()
    x = executed.reshape(-1, 3)
    n = x.shape[0]
    assert (x >= low).all() and (x <= high).all()
    width = high - low
    # mean and variance of U[low, high]: (low+high)/2 and width^2/12, within ~5 standard errors
    assert np.all(np.abs(x.mean(0) - (low + high) / 2) < 5 * width / math.sqrt(12 * n))
    np.testing.assert_allclose(x.var(0), width**2 / 12, rtol=5 * math.sqrt(0.8 / n))  # Var(X^2)/var^2 = 0.8 for a uniform
    for d in range(3):
        assert uniform_ks_statistic(x[:, d], low[d], high[d]) < 1.63 / math.sqrt(n)  # KS at the 1% level
        counts, _ = np.histogram(x[:, d], bins=10, range=(low[d], high[d]))
        chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
        assert chi2 < 27.9  # chi-square 9 dof, 0.1% level


def test_alpha_one_in_a_real_rollout_executes_uniform_box_actions_only():
    actor, obs_rms = trained_looking_policy()
    res = ra.evaluate(actor, obs_rms, ENV_ID, 1.0, episodes=12, num_envs=3, seed=5, record_actions=True)
    assert res["attacked"].all()
    x = res["executed"].reshape(-1, 3)
    assert x.shape[0] >= 200  # enough samples for the KS bound below to bite
    assert (np.abs(x) <= 1.0).all()  # Hopper's box is [-1, 1]^3
    for d in range(3):
        assert uniform_ks_statistic(x[:, d], -1.0, 1.0) < 1.63 / math.sqrt(x.shape[0])
    assert abs(x.mean()) < 5 / math.sqrt(3 * x.size)


def test_attack_decision_is_per_step_and_per_env_with_probability_alpha():
    rng = np.random.default_rng(7)
    low, high = -np.ones(2), np.ones(2)
    n_steps, n_envs, rate = 6000, 6, 0.3
    policy = np.tile(np.array([[0.25, 3.0]]), (n_envs, 1))  # second dim is clipped to 1.0 when not attacked
    mask = np.empty((n_steps, n_envs), bool)
    for t in range(n_steps):
        executed, mask[t] = ra.attack_actions(policy, rng, rate, low, high)
        np.testing.assert_array_equal(executed[~mask[t]], np.tile([0.25, 1.0], ((~mask[t]).sum(), 1)))
        assert not np.any(np.all(executed[mask[t]] == [0.25, 1.0], axis=1))
    sd = math.sqrt(rate * (1 - rate) / mask.size)
    assert abs(mask.mean() - rate) < 4.5 * sd
    per_env_sd = math.sqrt(rate * (1 - rate) / n_steps)
    assert np.all(np.abs(mask.mean(0) - rate) < 4.5 * per_env_sd)  # every env at the rate
    # independence across envs: a pair is attacked together with probability rate^2
    both = (mask[:, 0] & mask[:, 1]).mean()
    assert abs(both - rate**2) < 4.5 * math.sqrt(rate**2 * (1 - rate**2) / n_steps)
    # independence across steps: attacked at t and t+1 with probability rate^2
    consecutive = (mask[1:] & mask[:-1]).mean()
    assert abs(consecutive - rate**2) < 4.5 * math.sqrt(rate**2 * (1 - rate**2) / mask[1:].size)
    # the extremes are exact
    assert not ra.attack_actions(policy, rng, 0.0, low, high)[1].any()


def test_attack_rate_in_a_real_rollout_matches_alpha():
    actor, obs_rms = trained_looking_policy()
    rate = 0.4
    res = ra.evaluate(actor, obs_rms, ENV_ID, rate, episodes=12, num_envs=3, seed=2, record_actions=True)
    mask = res["attacked"]
    assert abs(mask.mean() - rate) < 4.5 * math.sqrt(rate * (1 - rate) / mask.size)


# ----------------------------------------------------------------------------------------------
# Evaluation loop
# ----------------------------------------------------------------------------------------------
def test_alpha_zero_reproduces_the_unattacked_deterministic_policy_exactly():
    actor, obs_rms = trained_looking_policy()
    seed = 11
    res = ra.evaluate(actor, obs_rms, ENV_ID, 0.0, episodes=4, num_envs=1, seed=seed)
    expected = plain_rollouts(actor, obs_rms, seed, 4)
    np.testing.assert_array_equal(res["reward"], [e[0] for e in expected])
    np.testing.assert_array_equal(res["cost"], [e[1] for e in expected])
    np.testing.assert_array_equal(res["length"], [e[2] for e in expected])


def test_alpha_zero_with_vector_envs_runs_each_env_from_its_own_seed():
    """Env i is seeded with seed + i. The policy sees a batch of 2 rows instead of 1 here, and a
    float32 matmul over 2 rows may round differently in the last bit, so returns agree to float
    precision rather than bit for bit; episode lengths agree exactly."""
    actor, obs_rms = trained_looking_policy()
    seed, per_env = 11, 3
    res = ra.evaluate(actor, obs_rms, ENV_ID, 0.0, episodes=2 * per_env, num_envs=2, seed=seed)
    expected = [ep for i in range(2) for ep in plain_rollouts(actor, obs_rms, seed + i, per_env)]
    np.testing.assert_array_equal(res["length"], [e[2] for e in expected])
    np.testing.assert_allclose(res["reward"], [e[0] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(res["cost"], [e[1] for e in expected], rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(res["env_index"], np.repeat(np.arange(2), per_env))


def test_exactly_the_requested_episodes_are_kept_with_fixed_per_env_quotas():
    np.testing.assert_array_equal(ra.episode_quotas(7, 3), [3, 2, 2])
    assert ra.episode_quotas(100, 4).sum() == 100
    actor, obs_rms = trained_looking_policy()
    res = ra.evaluate(actor, obs_rms, ENV_ID, 0.5, episodes=7, num_envs=3, seed=4)
    assert res["reward"].shape == res["cost"].shape == (7,)
    np.testing.assert_array_equal(np.bincount(res["env_index"]), [3, 2, 2])
    # the kept episodes of env 0 are its first three, whatever the other envs do
    alone = ra.evaluate(actor, obs_rms, ENV_ID, 0.5, episodes=3, num_envs=1, seed=4)
    assert alone["reward"].shape == (3,)


# ----------------------------------------------------------------------------------------------
# The full sweep: CSV, figures, reproducibility, errors
# ----------------------------------------------------------------------------------------------
RATES = (0.0, 0.5, 1.0)


def sweep_args(ckpts, out, **kw):
    base = dict(checkpoints=tuple(ckpts), rates=RATES, episodes=3, num_envs=2, seed=3, out=str(out))
    return ra.Args(**{**base, **kw})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One real sweep over two checkpoints of the same algorithm (legends must tell them apart)."""
    root = tmp_path_factory.mktemp("sweep")
    ckpts = [save(root / "run_a" / "policy.pt", seed=0), save(root / "run_b" / "policy.pt", seed=1)]
    out = ra.main(sweep_args(ckpts, root / "out"))
    return ckpts, out


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_a_tidy_csv_with_one_row_per_checkpoint_and_rate(sweep):
    ckpts, out = sweep
    rows = read_rows(out / "robustness.csv")
    assert tuple(rows[0].keys()) == ra.CSV_COLUMNS
    assert [(r["checkpoint"], float(r["rate"])) for r in rows] == [(c, a) for c in ckpts for a in RATES]
    for r in rows:
        assert r["algo"] == "test_algo" and r["env_id"] == ENV_ID
        assert int(r["episodes"]) == 3 and r["seed"] == "3" and r["deterministic"] == "True"
        for name in ("reward", "cost"):
            lo, mean, hi, std = (float(r[f"{name}_{k}"]) for k in ("min", "mean", "max", "std"))
            assert lo <= mean <= hi and 0 <= std <= (hi - lo) / 2 + 1e-9
        assert float(r["cost_min"]) >= 0
    episodes = read_rows(out / "episodes.csv")
    assert len(episodes) == len(rows) * 3
    # the summary row is the statistics of its kept episodes
    first = [float(e["reward"]) for e in episodes if e["checkpoint"] == ckpts[0] and float(e["rate"]) == 0.0]
    assert float(rows[0]["reward_mean"]) == pytest.approx(np.mean(first))
    assert float(rows[0]["reward_std"]) == pytest.approx(np.std(first))


def test_sweep_config_names_the_commit_of_the_code_that_ran_it(sweep):
    _, out = sweep
    config = json.loads((out / "config.json").read_text())
    git = lambda *argv: subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert config["git_commit"] == git("rev-parse", "HEAD")
    assert config["git_dirty"] == bool(git("status", "--porcelain", "--untracked-files=no"))


def test_sweep_draws_both_figures_and_plot_only_redraws_them(sweep, tmp_path):
    ckpts, out = sweep
    for png in ("reward_vs_alpha.png", "cost_vs_alpha.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    redrawn = ra.main(ra.Args(plot_only=str(out / "robustness.csv"), out=str(tmp_path)))
    assert redrawn == tmp_path
    assert (tmp_path / "reward_vs_alpha.png").stat().st_size > 10_000
    assert (tmp_path / "cost_vs_alpha.png").stat().st_size > 10_000
    labels = ra.legend_labels(ckpts, ["test_algo", "test_algo"])
    assert labels[ckpts[0]] != labels[ckpts[1]] and all("test_algo" in v for v in labels.values())
    assert ra.legend_labels(["a/x.pt", "b/y.pt"], ["cpo", "strpo"]) == {"a/x.pt": "cpo", "b/y.pt": "strpo"}


def test_same_flags_twice_give_the_same_csv(sweep, tmp_path):
    ckpts, out = sweep
    again = ra.main(sweep_args(ckpts, tmp_path / "again"))
    assert (again / "robustness.csv").read_bytes() == (out / "robustness.csv").read_bytes()
    # a single rate reproduces its row of the full sweep: the attack is seeded from (seed, rate)
    single = ra.main(sweep_args(ckpts[:1], tmp_path / "single", rates=(0.5,)))
    row = read_rows(single / "robustness.csv")[0]
    full = next(r for r in read_rows(out / "robustness.csv") if r["checkpoint"] == ckpts[0] and r["rate"] == "0.5")
    assert row == full


def test_stochastic_policy_actions_are_seeded_and_differ_from_the_mean_action(tmp_path):
    ckpt = save(tmp_path / "p.pt")
    kw = dict(rates=(0.0,), episodes=4)
    a = ra.main(sweep_args([ckpt], tmp_path / "a", deterministic=False, **kw))
    b = ra.main(sweep_args([ckpt], tmp_path / "b", deterministic=False, **kw))
    c = ra.main(sweep_args([ckpt], tmp_path / "c", deterministic=True, **kw))
    assert (a / "episodes.csv").read_bytes() == (b / "episodes.csv").read_bytes()
    stoch, det = read_rows(a / "episodes.csv"), read_rows(c / "episodes.csv")
    assert [e["reward"] for e in stoch] != [e["reward"] for e in det]
    assert read_rows(a / "robustness.csv")[0]["deterministic"] == "False"
    assert ra.parse_cli(["--checkpoints", ckpt, "--stochastic"]).deterministic is False
    assert ra.parse_cli(["--checkpoints", ckpt]).deterministic is True


def one_line_error(excinfo):
    msg = str(excinfo.value)
    assert msg.startswith("error: ") and "\n" not in msg
    return msg


def test_mixing_env_ids_fails_with_a_one_line_error_naming_them(tmp_path):
    hopper = save(tmp_path / "hopper.pt")
    circle = save(tmp_path / "circle.pt", env_id="SafetyCarCircle1-v0")
    with pytest.raises(SystemExit) as excinfo:
        ra.main(sweep_args([hopper, circle], tmp_path / "out"))
    msg = one_line_error(excinfo)
    assert "different envs" in msg and ENV_ID in msg and "SafetyCarCircle1-v0" in msg
    assert hopper in msg and circle in msg
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_corrupt_missing_or_foreign_checkpoints_fail_with_one_line_errors(tmp_path):
    good = save(tmp_path / "good.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a torch checkpoint" * 10)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for bad, expected in ((corrupt, "not a readable checkpoint"), (truncated, "not a readable checkpoint"),
                          (foreign, "not a checkpoint of this repository"), (tmp_path / "nope.pt", "not found")):
        with pytest.raises(SystemExit) as excinfo:
            ra.main(sweep_args([good, str(bad)], tmp_path / "out"))
        assert expected in one_line_error(excinfo)


def test_bad_flags_fail_with_one_line_errors(tmp_path):
    ckpt = save(tmp_path / "p.pt")
    for kw, expected in ((dict(rates=(0.0, 1.5)), "[0, 1]"), (dict(rates=()), "at least one"),
                         (dict(rates=(0.1, 0.1)), "duplicates"), (dict(episodes=0), "--episodes"),
                         (dict(num_envs=0), "--num-envs"), (dict(checkpoints=()), "--checkpoints"),
                         (dict(episodes=4, num_envs=2, video=3), "env 0 plays 2 of the 4")):
        args = sweep_args([ckpt], tmp_path / "out", **kw)
        with pytest.raises(SystemExit) as excinfo:
            ra.main(args)
        assert expected in one_line_error(excinfo)
    with pytest.raises(SystemExit) as excinfo:
        ra.main(ra.Args(plot_only=str(ckpt)))  # not a CSV
    one_line_error(excinfo)
    with pytest.raises(SystemExit) as excinfo:
        ra.main(ra.Args(plot_only=str(ckpt), checkpoints=(ckpt,)))
    assert "do not combine" in one_line_error(excinfo)


def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "robustness_attack.py"), "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr[-2000:]
    help_text = " ".join(out.stdout.split())
    import ast

    tree = ast.parse((ROOT / "robustness_attack.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    for field, doc in zip(cls.body, cls.body[1:]):
        if isinstance(field, ast.AnnAssign):
            assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), field.target.id
            assert "--" + field.target.id.replace("_", "-") in help_text
            assert " ".join(doc.value.value.split())[:30] in help_text
