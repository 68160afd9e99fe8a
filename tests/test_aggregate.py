"""benchmark/aggregate.py on synthetic progress.csv files whose means and stds are known by construction,
and its rliable calls on score matrices whose IQM and probability of improvement are known."""
import csv
import json

import numpy as np
import pytest
from conftest import ROOT, load_script

AGGREGATE = ROOT / "benchmark" / "aggregate.py"


@pytest.fixture(scope="module")
def agg():
    return load_script(AGGREGATE)


def write_run(root, name, env, algo, seed, rewards, costs, group="main", label=None, planned=None,
              stamp=1000, run_json=True, steps_per_epoch=1000):
    """A run folder as benchmark/run.py leaves it: root/NAME/run.json and root/NAME/{env}__{algo}__{seed}__{t}/."""
    sub = root / name / f"{env}__{algo}__{seed}__{stamp}"
    sub.mkdir(parents=True)
    with open(sub / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "epoch", "ep_ret", "ep_cost", "ep_len", "cost_rate", "sps", "time_elapsed"])
        for i, (r, c) in enumerate(zip(rewards, costs)):
            w.writerow([(i + 1) * steps_per_epoch, i + 1, r, c, 1000, 0.0, 100, 10.0 * (i + 1)])
    planned = planned or steps_per_epoch * len(rewards)
    (sub / "config.json").write_text(json.dumps({"exp_name": algo, "env_id": env, "seed": seed,
                                                 "total_timesteps": planned, "cost_limit": 25.0}))
    if run_json:
        (root / name / "run.json").write_text(json.dumps({"group": group, "label": label or algo, "seed": seed,
                                                          "env_id": env, "total_timesteps": planned,
                                                          "started_at": 1.7e9 + 10 * seed, "ended_at": 1.7e9 + 3600}))
    return sub


def synthetic_seeds(root, env="SafetyHopperVelocity-v1", algo="strpo", **kw):
    """Seed s: reward of epoch i (1..10) = i + 10 s; cost = 2 s + (i % 2). Last epoch: 10, 20, 30."""
    for seed in (0, 1, 2):
        write_run(root, f"{env}__{algo}__{seed}", env, algo, seed, [i + 10 * seed for i in range(1, 11)],
                  [2 * seed + (i % 2) for i in range(1, 11)], **kw)


def test_final_scores_are_the_mean_and_population_std_over_seeds_of_the_last_epochs(agg, tmp_path):
    synthetic_seeds(tmp_path)
    records, notes = agg.load_records([tmp_path])
    assert len(records) == 3 and notes == []
    (row,) = agg.summary_table(records, None)  # 10% of 10 epochs = the last epoch: rewards 10, 20, 30
    assert row["final_reward_mean"] == pytest.approx(20.0) and row["final_reward_std"] == pytest.approx(np.sqrt(200 / 3))
    # last-epoch cost 2 s + 0 (epoch 10 is even): 0, 2, 4
    assert row["final_cost_mean"] == pytest.approx(2.0) and row["final_cost_std"] == pytest.approx(np.sqrt(8 / 3))
    # mean cost over all of training: 2 s + 0.5 -> 0.5, 2.5, 4.5
    assert row["mean_cost_mean"] == pytest.approx(2.5) and row["mean_cost_std"] == pytest.approx(np.sqrt(8 / 3))
    assert row["seeds"] == 3 and row["steps_min"] == row["steps_max"] == 10_000 and row["final_epochs"] == "1"
    (row,) = agg.summary_table(records, 2)  # last two epochs: 9.5, 19.5, 29.5 and costs 2 s + 0.5
    assert row["final_reward_mean"] == pytest.approx(19.5) and row["final_reward_std"] == pytest.approx(np.sqrt(200 / 3))
    assert row["final_cost_mean"] == pytest.approx(2.5)
    assert agg.n_final(30, None) == 3 and agg.n_final(5, None) == 1 and agg.n_final(5, 99) == 5


def test_curves_are_epochwise_mean_and_std_up_to_the_shortest_seed(agg, tmp_path):
    synthetic_seeds(tmp_path)
    write_run(tmp_path, "other__strpo__3", "SafetyHopperVelocity-v1", "strpo", 3, [40, 41], [0, 0])
    records, _ = agg.load_records([tmp_path])
    x, mean, std = agg.curve(records, "reward")
    assert list(x) == [1000, 2000]  # seed 3 has two epochs
    assert mean[0] == pytest.approx(np.mean([1, 11, 21, 40])) and std[1] == pytest.approx(np.std([2, 12, 22, 41]))


def test_a_restart_beside_its_interrupted_attempt_and_a_docs_copy_count_once(agg, tmp_path):
    synthetic_seeds(tmp_path / "matrix")
    # the interrupted first attempt of seed 0, in the same stable folder, with fewer epochs
    write_run(tmp_path / "matrix", "SafetyHopperVelocity-v1__strpo__0", "SafetyHopperVelocity-v1", "strpo", 0,
              [99, 99], [99, 99], stamp=1)
    # a committed record without run.json (as under docs/runs/): recognised from config.json, a duplicate
    write_run(tmp_path / "docs_runs", "x", "SafetyHopperVelocity-v1", "strpo", 1, [5] * 4, [5] * 4, run_json=False)
    records, _ = agg.load_records([tmp_path / "matrix", tmp_path / "docs_runs"])
    assert sorted(r.seed for r in records) == [0, 1, 2]
    assert all(len(r.step) == 10 for r in records)



def test_publish_copies_finished_runs_only_and_the_copy_aggregates_the_same(agg, tmp_path):
    synthetic_seeds(tmp_path / "matrix")
    for seed in (0, 1):  # finished: the final checkpoint exists; seed 2 is still running
        next((tmp_path / "matrix" / f"SafetyHopperVelocity-v1__strpo__{seed}").glob("*/progress.csv")).with_name("strpo.pt").write_bytes(b"x")
    attack = tmp_path / "matrix" / "SafetyCarGoal1-v0__robustness__0" / "attack"
    attack.mkdir(parents=True)
    (attack / "robustness.csv").write_text("algo,rate\nstrpo,0.0\n")
    (attack.parent / "run.json").write_text("{}")
    copied = agg.publish_runs(tmp_path / "matrix", tmp_path / "docs")
    assert copied == ["SafetyCarGoal1-v0__robustness__0", "SafetyHopperVelocity-v1__strpo__0", "SafetyHopperVelocity-v1__strpo__1"]
    assert not list((tmp_path / "docs").rglob("*.pt"))  # numbers only
    published, _ = agg.load_records([tmp_path / "docs"])
    original, _ = agg.load_records([tmp_path / "matrix"])
    assert sorted(r.seed for r in published) == [0, 1]
    for rec in published:
        twin = next(r for r in original if r.seed == rec.seed)
        assert rec.group == twin.group and np.array_equal(rec.reward, twin.reward) and np.array_equal(rec.cost, twin.cost)
    assert len(agg.read_robustness([tmp_path / "docs"])) == 1

def test_rliable_iqm_of_a_known_score_matrix(agg):
    scores = {"a": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 100.0]]), "b": np.full((3, 2), 7.0)}
    out = agg.iqm_with_ci(scores, reps=500, seed=0)
    assert out["a"][0] == pytest.approx(4.5)  # middle 50% of the 8 scores is 3, 4, 5, 6 (the mean would be 16)
    assert out["a"][1] <= 4.5 <= out["a"][2] and out["a"][1] < out["a"][2]
    assert out["b"] == pytest.approx((7.0, 7.0, 7.0))


def test_rliable_probability_of_improvement_of_known_runs(agg):
    better, worse = np.full((3, 2), 1.0), np.zeros((3, 2))
    assert agg.probability_of_improvement(better, worse, reps=200, seed=0) == pytest.approx((1.0, 1.0, 1.0))
    assert agg.probability_of_improvement(worse, worse, reps=200, seed=0)[0] == pytest.approx(0.5)
    # x = [0, 2], y = [1, 1] on one task: x wins 1 of 2 comparisons, loses the other -> 0.5
    assert agg.probability_of_improvement(np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]]), 200, 0)[0] == 0.5


def test_rliable_intervals_are_reproducible_from_the_seed_and_leave_numpy_global_rng_alone(agg):
    rng = np.random.default_rng(1)
    scores = {"a": rng.random((3, 4)), "b": rng.random((3, 4))}
    x, y = rng.random((3, 4)), rng.random((3, 4))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = agg.iqm_with_ci(scores, reps=300, seed=0), agg.probability_of_improvement(x, y, 300, 0)
    np.random.rand(5)  # a different global state must not change the intervals
    second = agg.iqm_with_ci(scores, reps=300, seed=0), agg.probability_of_improvement(x, y, 300, 0)
    assert first == second
    assert agg.iqm_with_ci(scores, reps=300, seed=1) != first[0]  # the seed does drive them
    np.random.seed(123)
    assert np.array_equal(np.random.get_state()[1], before)


def test_normalised_reward_runs_from_the_initial_policy_to_the_best_run(agg, tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, f"T__strpo__{seed}", "SafetyHopperVelocity-v1", "strpo", seed, [0, 100 + seed], [0, 0])
        write_run(tmp_path, f"T__cpo__{seed}", "SafetyHopperVelocity-v1", "cpo", seed, [10, 50], [50, 50])
    records, _ = agg.load_records([tmp_path])
    reward, cost, tasks, norm = agg.score_matrices(records, None)
    assert tasks == ["SafetyHopperVelocity-v1"] and norm[tasks[0]] == pytest.approx((5.0, 101.0))
    assert reward["strpo"][:, 0] == pytest.approx([95 / 96, 1.0]) and reward["cpo"][:, 0] == pytest.approx([45 / 96] * 2)
    assert cost["cpo"][:, 0] == pytest.approx([2.0, 2.0]) and cost["strpo"][:, 0] == pytest.approx([0, 0])


def test_results_page_from_a_partial_matrix_states_budget_numbers_and_what_is_missing(agg, tmp_path):
    runs = tmp_path / "matrix"
    for env in ("SafetyHopperVelocity-v1", "SafetyCarGoal1-v0"):
        synthetic_seeds(runs, env=env, algo="strpo")
        for seed in (0, 1, 2):
            write_run(runs, f"{env}__cpo__{seed}", env, "cpo", seed, [5.0] * 10, [30.0] * 10)
    for seed in (0, 1):
        write_run(runs, f"H__strpo__delta=1e-4__{seed}", "SafetyHopperVelocity-v1", "strpo", seed, [1.0] * 10,
                  [3.0] * 10, group="ablation-delta", label="δ = 1e-4")
    attack = runs / "SafetyCarGoal1-v0__robustness__0" / "attack"
    attack.mkdir(parents=True)
    (attack.parent / "run.json").write_text(json.dumps({"group": "robustness", "started_at": 1.7e9 + 3600,
                                                        "ended_at": 1.7e9 + 3600 + 1800}))
    with open(attack / "robustness.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["checkpoint", "algo", "env_id", "rate", "episodes", "reward_mean",
                                          "cost_mean"])
        w.writeheader()
        for algo, base in (("strpo", 10.0), ("cpo", 20.0)):
            for rate in (0.0, 0.2):
                w.writerow({"checkpoint": f"{algo}.pt", "algo": algo, "env_id": "SafetyCarGoal1-v0", "rate": rate,
                            "episodes": 4, "reward_mean": base - 10 * rate, "cost_mean": base / 2})
    out_md, out_dir = tmp_path / "results.md", tmp_path / "results"
    agg.main(agg.Args(inputs=[str(runs), str(tmp_path / "nowhere")], out_md=str(out_md), out_dir=str(out_dir),
                      bootstrap_reps=200))
    md = out_md.read_text()
    assert md.startswith("<!-- do not edit; produced by benchmark/aggregate.py -->")
    assert "10,000 steps per run" in md and "## What is missing" in md
    assert "wall-clock span of the runs (benchmark/run.py's run.json): from 2023-11-14 22:13 to 2023-11-14 23:43 UTC, 1.5 h" in md
    # 12 main runs and 2 ablation runs of 100 s each (time_elapsed), one 30-min sweep (run.json)
    assert ("- time by preset, one core per run: main 0.3 h, ablations 0.1 h, robustness 0.5 h (1 sweep, run.json's "
            "start to end); 0.9 core-hours in all.") in md
    assert "main: 96 of 108 runs not found" in md and "SafetyAntVelocity-v1 CPO (seeds 0 1 2)" in md and "nowhere does not exist" in md
    assert "| sTRPO | 20.0 ± 8.2 | 2.0 ± 1.6 | 2.5 ± 1.6 | 10,000 | 3 (0 1 2) |" in md
    assert "| CPO | 5.0 ± 0.0 | 30.0 ± 0.0 | 30.0 ± 0.0 |" in md
    assert "IQM normalised reward" in md and "| CPO | 3 |" in md and "P(sTRPO cost < baseline)" in md
    assert ("SafetyCarGoal1-v0, \"about half the next best baseline's cost at comparable reward\": sTRPO's final cost "
            "is 2.0 ± 1.6 at reward 20.0 ± 8.2; no baseline ends at a comparable reward") in md  # CPO ends at reward 5
    # Hopper: sTRPO's last-epoch cost 2.0 (at most 2.5: agrees), the only baseline (CPO) at 30, the band's top
    assert ("sTRPO's final cost is 2.0 ± 1.6 (agrees: at most 2.5, 10% of the limit); 1 of 1 baselines end between "
            "15 and 30; sTRPO ends lower than 1 of 1. Rewards, for context: sTRPO 20, the baselines 5 to 5.") in md
    assert "| δ = 1e-4 |" in md and "sTRPO (main, default flags)" in md
    assert "4 episodes per rate" in md
    rows = {(r["env_id"], r["algo"]): r for r in csv.DictReader(open(out_dir / "results_main.csv"))}
    assert float(rows[("SafetyCarGoal1-v0", "strpo")]["final_reward_mean"]) == pytest.approx(20.0)
    scores = {r["algo"]: r for r in csv.DictReader(open(out_dir / "rliable_scores.csv"))}
    assert float(scores["cpo"]["cost_iqm"]) == pytest.approx(30 / 25)  # every cpo run ends at cost 30
    for png in ("curves_navigation.png", "curves_velocity.png", "ablation-delta__SafetyHopperVelocity-v1.png",
                "robustness__SafetyCarGoal1-v0.png"):
        assert (out_dir / png).stat().st_size > 10_000, png


def test_the_goal_claim_compares_with_the_lowest_cost_baseline_at_comparable_reward(agg):
    def row(algo, reward, reward_std, cost):
        return {"env_id": "SafetyCarGoal1-v0", "algo": algo, "final_reward_mean": reward, "final_reward_std": reward_std,
                "final_cost_mean": cost, "final_cost_std": 0.0, "mean_cost_mean": cost}

    table = [row("strpo", 20.0, 2.0, 10.0), row("cpo", 19.0, 0.5, 40.0),  # 1 below: comparable
             row("pcpo", 15.0, 1.0, 1.0),  # cost 1 but reward 5 below, more than either std: not comparable
             row("cup", 21.5, 1.0, 18.0),  # 1.5 above: comparable, and the lowest cost of those
             row("focops", 30.0, 3.0, 2.0)]  # 10 above: not comparable either
    goal = next(line for line in agg.claims(table) if "SafetyCarGoal1-v0" in line)
    assert "of the 2 baseline(s) at comparable reward" in goal and "CUP's, 18.0 ± 0.0 at reward 21.5: ratio 0.56 of the seed means (disagrees" in goal
    table[3]["final_cost_mean"] = 25.0
    goal = next(line for line in agg.claims(table) if "SafetyCarGoal1-v0" in line)
    assert "CUP's, 25.0 ± 0.0 at reward 21.5: ratio 0.40 of the seed means (agrees" in goal
    goal = next(line for line in agg.claims([table[0], table[2], table[4]]) if "SafetyCarGoal1-v0" in line)
    assert "no baseline ends at a comparable reward" in goal and "the closest, PCPO, ends at reward 15.0 with cost 1.0" in goal


def test_ablation_labels_are_those_benchmark_run_gives(agg):
    run = load_script(ROOT / "benchmark" / "run.py")
    labels = {r.label for preset in ("ablation-delta", "ablation-lambda2", "ablation-unsafe", "ablation-components")
              for r in run.preset_runs(preset)}
    ours = {*agg.DELTA_LABELS.values(), *agg.LAMBDA2_LABELS, *agg.UNSAFE_LABELS, agg.NO_JOINT_LABEL, agg.NO_EXCLUSION_LABEL}
    assert ours <= labels, ours - labels


def test_ablation_and_robustness_claims_on_runs_built_to_agree_or_disagree(agg, tmp_path):
    env, ten = "SafetyHopperVelocity-v1", range(10)
    for seed in (0, 1):
        kw = dict(stamp=seed)
        write_run(tmp_path, f"main{seed}", env, "strpo", seed, [100 + 10 * i for i in ten], [1] * 10, **kw)
        ablation = [("ablation-delta", agg.DELTA_LABELS["1e-2"], [100 + 10 * i for i in ten], [1] * 10),
                    ("ablation-delta", agg.DELTA_LABELS["1e-4"], [100 + 5 * i for i in ten], [1, 40, 9] + [1] * 7),
                    ("ablation-delta", agg.DELTA_LABELS["decoupled"], [300 + 10 * i for i in ten], [1] * 10),
                    ("ablation-components", agg.NO_JOINT_LABEL, [100 + 10 * i for i in ten], [5] * 10),
                    ("ablation-components", agg.NO_EXCLUSION_LABEL, [50 + 5 * i for i in ten], [1] * 10)]
        for k, (group, label, rewards, costs) in enumerate(ablation):
            write_run(tmp_path, f"{group}{k}_{seed}", env, "strpo", seed, [r + seed for r in rewards], costs,
                      group=group, label=label, **kw)
    records, _ = agg.load_records([tmp_path])
    text = "\n".join(agg.ablation_claims(records, None))
    assert "peak of the seed-mean cost curve 40.0 with δ = 1e-4 against 1.0" in text
    lines = {line.split(":")[0]: line for line in text.splitlines()}
    assert "(agrees)" in next(v for k, v in lines.items() if "transient cost spike" in v)
    assert "disagrees" in next(v for v in lines.values() if "decoupled" in v)  # reward 300 higher: outside the spread
    assert "(x5.0; agrees" in next(v for v in lines.values() if "drastically" in v)
    assert "disagrees" in next(v for v in lines.values() if "reasonably good" in v)  # 95 vs 190: under 80%
    robust = {"SafetyCarGoal1-v0": {"strpo": {0.0: {"cost": 5.0}, 0.4: {"cost": 30.0}, 1.0: {"cost": 20.0}}},
              "SafetyCarCircle1-v0": {"strpo": {0.0: {"cost": 1.0, "reward": 5.0}, 1.0: {"cost": 3.0, "reward": 1.0}},
                                      "cpo": {0.0: {"cost": 50.0, "reward": 9.0}, 1.0: {"cost": 60.0, "reward": 2.0}}}}
    circle, goal = agg.robustness_claims(robust)
    assert "cost 2.0 is lower than that of 1 of 1 baselines" in circle and "(agrees on the cost)" in circle
    assert "peaks at α = 0.4" in goal and "(agrees" in goal
    robust["SafetyCarGoal1-v0"]["strpo"][1.0]["cost"] = 31.0
    assert "(disagrees" in agg.robustness_claims(robust)[1]
    circle = robust["SafetyCarCircle1-v0"]
    assert "they do not" in agg.full_attack_line(circle)  # alpha = 1: cost 3 vs 60
    circle["cpo"][1.0] = dict(circle["strpo"][1.0])
    assert "they do (equal reward and cost)" in agg.full_attack_line(circle)
    assert agg.full_attack_line({"strpo": circle["strpo"]}) is None


def test_identical_runs_of_two_algorithms_are_reported_with_their_multiplier(agg, tmp_path):
    env = "SafetyAntVelocity-v1"
    for seed in (0, 1):
        for algo in ("ppo_lag", "cppo_pid", "cup"):
            rewards = [seed + i + (algo == "cup") for i in range(5)]
            sub = write_run(tmp_path, f"{env}__{algo}__{seed}", env, algo, seed, rewards, [1] * 5)
            with open(sub / "progress.csv") as f:
                rows = list(csv.reader(f))
            with open(sub / "progress.csv", "w", newline="") as f:
                csv.writer(f).writerows([rows[0] + ["lagrange_multiplier"]] + [r + ["0.0"] for r in rows[1:]])
    records, _ = agg.load_records([tmp_path])
    (line,) = agg.identical_runs(records)
    assert line.startswith(f"- {env}: PPO-Lag and CPPO-PID have identical reward and cost") and "is 0," in line


def write_unsafe_run(root, name, env, seed, costs, label, group, extra=None):
    """A pi_unsafe or sTRPO run of the C.2 / strength presets, with optional extra progress columns."""
    sub = write_run(root, name, env, "unsafe_cvar_trpo" if "critic" in label else "strpo", seed,
                    [1.0] * len(costs), costs, group=group, label=label)
    if extra:
        with open(sub / "progress.csv") as f:
            rows = list(csv.DictReader(f))
        with open(sub / "progress.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) + list(extra))
            w.writeheader()
            w.writerows({**r, **{k: v[i] for k, v in extra.items()}} for i, r in enumerate(rows))
    return sub


def test_unsafe_sections_report_critic_calibration_and_strength_against_the_source_runs_own_cost(agg, tmp_path):
    env = "SafetyHopperVelocity-v1"
    calib = {"ctg_mean": [50.0] * 10, "value_mean": [45.0] * 10, "tail_frac": [0.25] * 10, "ctg_tail": [80.0] * 10,
             "cvar_tail": [78.0] * 10}
    for seed in (0, 1, 2):  # CVaR pi_unsafe: final cost 90 + seed, its epoch k costs 10 k; mean critic: 100
        write_unsafe_run(tmp_path, f"cvar{seed}", env, seed, [10.0 * k for k in range(1, 10)] + [90.0 + seed],
                         "cvar critic", "ablation-unsafe-reference", calib)
        write_unsafe_run(tmp_path, f"mean{seed}", env, seed, [100.0] * 10, "mean critic", "ablation-unsafe-reference",
                         {k: v for k, v in calib.items() if k in ("ctg_mean", "value_mean")} |
                         {"tail_frac": [""] * 10, "ctg_tail": [""] * 10, "cvar_tail": [""] * 10})
        for epoch, level_cost in ((1, 5.0), (5, 1.0)):  # sTRPO pays less against the stronger pi_unsafe
            write_unsafe_run(tmp_path, f"s{epoch}_{seed}", env, seed, [level_cost + seed] * 10,
                             f"π_unsafe of epoch {epoch}", "ablation-unsafe-strength")
    records, _ = agg.load_records([tmp_path])
    sections = agg.unsafe_sections()
    md = "\n".join(sections.critic_section(records, agg.read_progress, lambda n: agg.n_final(n, None), 1000, 0))
    assert "| CVaR (DTRPO_Unsafe) | 0 1 2 | 91.0 [90.0, 92.0] |" in md
    assert "45.0 [45.0, 45.0] / 50.0 [50.0, 50.0] | 0.25 [0.25, 0.25] | 78.0 [78.0, 78.0] / 80.0 [80.0, 80.0] |" in md
    assert "| mean (TRPO_Unsafe) | 0 1 2 | 100.0 [100.0, 100.0] |" in md and "| — | — |" in md
    assert "final episode cost is 91% of the mean-critic one's (91.0 against 100.0; target at least 80%: met)" in md
    md = "\n".join(sections.strength_section(records, lambda n: agg.n_final(n, None), lambda r: agg.run_scores(r, None),
                                             tmp_path / "out", lambda p: p, 1000, 0))
    assert "| π_unsafe of epoch 1 | 10.0 | 3 | 6.0 [5.0, 7.0] |" in md  # x: the seed-0 CVaR run's cost in epoch 1
    assert "| π_unsafe of epoch 5 | 50.0 | 3 | 2.0 [1.0, 3.0] |" in md
    assert (tmp_path / "out" / "ablation-unsafe-strength.png").is_file()
    mean, low, high = sections.bootstrap_ci([1.0, 2.0, 3.0, 10.0], 2000, 0)
    assert mean == 4.0 and 1.0 <= low < mean < high <= 10.0


def test_a_users_default_run_folders_show_pi_unsafe_runs_as_pi_unsafe_not_as_baselines(agg, tmp_path):
    """The README's "Plot and compare your own runs": runs/ as the scripts leave it, without benchmark/run.py's
    run.json. unsafe_cvar_trpo.py's runs (config.json has its --critic) are π_unsafe training runs."""
    runs = tmp_path / "runs"
    for seed in (0, 1):
        for algo, reward in (("strpo", 10.0), ("cpo", 5.0)):
            write_run(runs, ".", "SafetyHopperVelocity-v1", algo, seed, [reward] * 4, [1.0] * 4, stamp=seed, run_json=False)
        sub = write_run(runs, ".", "SafetyHopperVelocity-v1", "unsafe_cvar_trpo", seed, [1.0] * 4, [90.0] * 4, stamp=seed,
                        run_json=False)
        config = json.loads((sub / "config.json").read_text())
        (sub / "config.json").write_text(json.dumps({**config, "critic": "cvar"}))
    records, _ = agg.load_records([runs])
    assert {(r.group, r.label) for r in records} == {("main", "strpo"), ("main", "cpo"),
                                                      ("ablation-unsafe-reference", "cvar critic")}
    out_md = tmp_path / "results.md"
    agg.main(agg.Args(inputs=[str(runs)], out_md=str(out_md), out_dir=str(tmp_path / "results"), bootstrap_reps=200))
    md = out_md.read_text()
    baselines = [line.split("|")[1].strip() for line in md.split("| baseline |")[1].split("\n\n")[0].splitlines()[2:]]
    assert baselines == ["CPO"]  # the probability-of-improvement table
    assert "### ablation-unsafe-reference on SafetyHopperVelocity-v1" in md and "| cvar critic |" in md
