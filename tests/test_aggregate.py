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


def test_final_scores_are_the_mean_sample_std_and_bootstrap_ci_over_seeds_of_the_last_epochs(agg, tmp_path):
    synthetic_seeds(tmp_path)
    records, notes = agg.load_records([tmp_path])
    assert len(records) == 3 and notes == []
    (row,) = agg.summary_table(records, None)  # 10% of 10 epochs = the last epoch: rewards 10, 20, 30
    assert row["final_reward_mean"] == pytest.approx(20.0) and row["final_reward_std"] == pytest.approx(10.0)  # ddof=1
    assert 10 <= row["final_reward_low"] < 20 < row["final_reward_high"] <= 30  # a CI of the mean over seeds
    # last-epoch cost 2 s + 0 (epoch 10 is even): 0, 2, 4
    assert row["final_cost_mean"] == pytest.approx(2.0) and row["final_cost_std"] == pytest.approx(2.0)
    # mean cost over all of training: 2 s + 0.5 -> 0.5, 2.5, 4.5
    assert row["mean_cost_mean"] == pytest.approx(2.5) and row["mean_cost_std"] == pytest.approx(2.0)
    # last third: epochs 7-10 (ceil(10 / 3) = 4), costs 2 s + 1, 0, 1, 0 -> 2 s + 0.5; no epoch above 25
    assert row["late_cost_mean"] == pytest.approx(2.5) and row["over_limit_mean"] == 0.0
    assert row["seeds"] == 3 and row["steps_min"] == row["steps_max"] == 10_000 and row["final_epochs"] == "1"
    (row,) = agg.summary_table(records, 2)  # last two epochs: 9.5, 19.5, 29.5 and costs 2 s + 0.5
    assert row["final_reward_mean"] == pytest.approx(19.5) and row["final_reward_std"] == pytest.approx(10.0)
    assert row["final_cost_mean"] == pytest.approx(2.5)
    assert agg.n_final(30, None) == 3 and agg.n_final(5, None) == 1 and agg.n_final(5, 99) == 5


def test_curves_are_epochwise_mean_and_std_up_to_the_shortest_seed(agg, tmp_path):
    synthetic_seeds(tmp_path)
    write_run(tmp_path, "other__strpo__3", "SafetyHopperVelocity-v1", "strpo", 3, [40, 41], [0, 0])
    records, _ = agg.load_records([tmp_path])
    x, mean, std = agg.curve(records, "reward")
    assert list(x) == [1000, 2000]  # seed 3 has two epochs
    assert mean[0] == pytest.approx(np.mean([1, 11, 21, 40])) and std[1] == pytest.approx(np.std([2, 12, 22, 41], ddof=1))


def test_measures_over_many_epochs_count_the_epochs_over_the_limit_and_the_last_third(agg, tmp_path):
    # 9 epochs: a multiplier's swing puts the last epoch at 0, the last third (epochs 7-9) at 30, 30, 0
    write_run(tmp_path, "r", "SafetyHopperVelocity-v1", "strpo", 0, [1.0] * 9, [40, 40, 10, 10, 10, 10, 30, 30, 0])
    (rec,) = agg.load_records([tmp_path])[0]
    s = agg.run_scores(rec, None)
    assert s["final_cost"] == 0.0 and s["late_cost"] == pytest.approx(20.0)
    assert s["over_limit"] == pytest.approx(4 / 9) and s["mean_cost"] == pytest.approx(20.0)


def test_bootstrap_intervals_over_seeds_are_reproducible_and_leave_numpy_global_rng_alone(agg):
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    first = agg.bootstrap_ci(lambda a, b: a / b, [[1.0, 2.0, 4.0], [2.0, 2.0, 3.0]], seed=0, reps=500)
    np.random.rand(3)
    assert agg.bootstrap_ci(lambda a, b: a / b, [[1.0, 2.0, 4.0], [2.0, 2.0, 3.0]], seed=0, reps=500) == first
    assert first[0] == pytest.approx((7 / 3) / (7 / 3)) and first[1] < first[0] < first[2]
    np.random.seed(5)
    assert np.array_equal(np.random.get_state()[1], before)
    value, low, high = agg.bootstrap_ci(lambda m: m, [[3.0]], 0, 500)
    assert value == 3.0 and low != low  # one seed: no interval


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
    kept = next((tmp_path / "matrix" / "SafetyHopperVelocity-v1__strpo__0").glob("*/progress.csv")).with_name("strpo_epoch1.pt")
    kept.write_bytes(b"y")  # a policy kept by --save-policies-at
    attack = tmp_path / "matrix" / "SafetyCarGoal1-v0__robustness__0" / "attack"
    attack.mkdir(parents=True)
    (attack / "robustness.csv").write_text("algo,rate\nstrpo,0.0\n")
    (attack.parent / "run.json").write_text("{}")
    stale = tmp_path / "docs" / "SafetyHopperVelocity-v1__strpo__0" / "SafetyHopperVelocity-v1__strpo__0__1"
    stale.mkdir(parents=True)
    (stale / "progress.csv").write_text("global_step,ep_ret,ep_cost\n10000,99,99\n")  # an older run of the same name
    twin = tmp_path / "docs" / "SafetyHopperVelocity-v1__strpo__1" / "SafetyHopperVelocity-v1__strpo__1__7"
    twin.mkdir(parents=True)  # the same run published before, from another machine: only its timing differs
    source = next((tmp_path / "matrix" / "SafetyHopperVelocity-v1__strpo__1").glob("*/progress.csv")).read_text()
    (twin / "progress.csv").write_text(source.replace(",100,", ",250,"))  # the sps column
    (twin.parent / "run.json").write_text(json.dumps({"cpu": "A CPU; sse2"}))  # the new record's CPU too:
    new_run_json = tmp_path / "matrix" / "SafetyHopperVelocity-v1__strpo__1" / "run.json"
    new_run_json.write_text(json.dumps({**json.loads(new_run_json.read_text()), "cpu": "A CPU; sse2"}))
    copied, reproduced, other_cpu = agg.publish_runs(tmp_path / "matrix", tmp_path / "docs")
    assert reproduced == {"SafetyHopperVelocity-v1__strpo__0": False, "SafetyHopperVelocity-v1__strpo__1": True}
    assert other_cpu == {"SafetyHopperVelocity-v1__strpo__0"}  # its old record has no run.json: CPU unrecorded
    assert not stale.exists()
    assert copied == ["SafetyCarGoal1-v0__robustness__0", "SafetyHopperVelocity-v1__strpo__0", "SafetyHopperVelocity-v1__strpo__1"]
    assert sorted(p.name for p in (tmp_path / "docs").rglob("*.pt")) == ["strpo.pt", "strpo.pt", "strpo_epoch1.pt"]
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
    # main's 108 runs and the 56 more seeds of the `seeds` preset that share main's names
    assert "main: 152 of 164 runs not found" in md and "SafetyAntVelocity-v1 CPO (seeds 0 1 2)" in md and "nowhere does not exist" in md
    assert "- long: 30 of 30 runs not found" in md
    assert ("- robustness, SafetyAntVelocity-v1, attack sweep (mean action): 27 of 27 checkpoints not evaluated: "
            "sTRPO (seeds 0 1 2); TRPO-Lag (seeds 0 1 2)") in md
    assert "| sTRPO | 20.0 ± 10.0 [10.0, 30.0] | 2.0 ± 2.0 [0.0, 4.0] | 2.5 ± 2.0 [0.5, 4.5] | 2.5 ± 2.0 [0.5, 4.5] | " in md
    assert "| CPO | 5.0 ± 0.0 [5.0, 5.0] | 30.0 ± 0.0 [30.0, 30.0] | 30.0 ± 0.0 [30.0, 30.0] | 30.0 ± 0.0 [30.0, 30.0] | 1.00 ± 0.00 [1.00, 1.00] |" in md
    assert "Code of the runs behind this table (run.json's git commit): unrecorded (6 runs)." in md
    assert "## Headline" in md and "At this budget only (10,000 steps on" in md
    assert "IQM normalised reward" in md and "| CPO | 3 |" in md and "P(sTRPO cost < baseline)" in md
    assert "No baseline's final-reward CI overlaps sTRPO's" in md  # Goal: CPO ends at reward 5, sTRPO 10 to 30
    # Hopper: sTRPO's last-third costs 0.5, 2.5, 4.5: the CI straddles 2.5
    assert ("section 5, SafetyHopperVelocity-v1, \"the mean episode cost is driven to (and sustained near) zero, "
            "whereas baselines stabilize between 15-30\": **inconclusive**. Decided by: sTRPO's cost over the last third "
            "of training 2.50 [0.50, 4.50]") in md
    assert "| δ = 1e-4 |" in md and "sTRPO (main, default flags)" in md
    assert "4 episodes per rate" in md
    rows = {(r["env_id"], r["algo"]): r for r in csv.DictReader(open(out_dir / "results_main.csv"))}
    assert float(rows[("SafetyCarGoal1-v0", "strpo")]["final_reward_mean"]) == pytest.approx(20.0)
    scores = {r["algo"]: r for r in csv.DictReader(open(out_dir / "rliable_scores.csv"))}
    assert float(scores["cpo"]["cost_iqm"]) == pytest.approx(30 / 25)  # every cpo run ends at cost 30
    for png in ("curves_navigation.png", "curves_velocity.png", "ablation-delta__SafetyHopperVelocity-v1.png",
                "robustness__SafetyCarGoal1-v0.png"):
        assert (out_dir / png).stat().st_size > 10_000, png


def seeds_with(root, env, algo, per_seed, group="main", label=None, epochs=9):
    """One run per seed; per_seed[s] = (reward, cost) held for every epoch of seed s (so every measure equals it)."""
    for seed, (reward, cost) in enumerate(per_seed):
        write_run(root, f"{group}__{env}__{label or algo}__{seed}", env, algo, seed, [reward] * epochs, [cost] * epochs,
                  group=group, label=label, stamp=seed)


def verdicts(claims):
    return {(c.where, c.quote.split()[0] + " " + c.quote.split()[-1]): c.verdict for c in claims}


@pytest.mark.parametrize("strpo_costs, outcome", [((0.5, 1.0, 1.5), "agrees"), ((10.0, 11.0, 12.0), "disagrees"),
                                                   ((0.0, 1.0, 20.0), "inconclusive")])
def test_a_section5_claim_agrees_disagrees_or_is_inconclusive_on_its_ci_over_seeds(agg, tmp_path, strpo_costs, outcome):
    env = "SafetyHopperVelocity-v1"
    seeds_with(tmp_path, env, "strpo", [(100.0, c) for c in strpo_costs])
    seeds_with(tmp_path, env, "cpo", [(100.0, 20.0)] * 3)
    records, _ = agg.load_records([tmp_path])
    claim = next(c for c in agg.section5_claims(records, None, 0, 1000) if c.where.endswith(env))
    assert claim.verdict == outcome and claim.evidence[0].metric == "sTRPO's cost over the last third of training"
    assert f"**{outcome}**. Decided by: sTRPO's cost over the last third of training" in claim.line()
    assert "1 of 1 baselines end their last third between 15 and 30" in claim.line()


@pytest.mark.parametrize("rcpo_costs, outcome", [((40.0, 42.0, 44.0), "agrees"), ((12.0, 12.0, 12.0), "disagrees"),
                                                 ((11.0, 21.0, 60.0), "inconclusive")])
def test_the_goal_claim_divides_by_the_lowest_cost_baseline_at_comparable_reward(agg, tmp_path, rcpo_costs, outcome):
    env = "SafetyCarGoal1-v0"
    seeds_with(tmp_path, env, "strpo", [(19.0, 9.0), (20.0, 10.0), (21.0, 11.0)])
    seeds_with(tmp_path, env, "rcpo", [(20.0 + k, c) for k, c in enumerate(rcpo_costs)])  # comparable reward
    seeds_with(tmp_path, env, "pcpo", [(40.0, 1.0)] * 3)  # lower cost, but reward far above: not comparable
    records, _ = agg.load_records([tmp_path])
    claim = next(c for c in agg.section5_claims(records, None, 0, 1000) if c.where.endswith(env))
    assert claim.verdict == outcome and "sTRPO / RCPO" in claim.evidence[0].metric
    assert "Baselines at comparable reward" in claim.context and "PCPO" not in claim.context


def test_ablation_labels_are_those_benchmark_run_gives(agg):
    run = load_script(ROOT / "benchmark" / "run.py")
    labels = {r.label for preset in ("ablation-delta", "ablation-lambda2", "ablation-unsafe", "ablation-components")
              for r in run.preset_runs(preset)}
    ours = {*agg.DELTA_LABELS.values(), *agg.LAMBDA2_LABELS, *agg.UNSAFE_LABELS, agg.NO_JOINT_LABEL, agg.NO_EXCLUSION_LABEL}
    assert ours <= labels, ours - labels


@pytest.mark.parametrize("no_exclusion_rewards, outcome", [((95.0, 100.0, 105.0), "agrees"),
                                                          ((10.0, 20.0, 30.0), "disagrees"),
                                                          ((40.0, 100.0, 160.0), "inconclusive")])
def test_an_ablation_claim_agrees_disagrees_or_is_inconclusive_on_its_ci(agg, tmp_path, no_exclusion_rewards, outcome):
    env = "SafetyHopperVelocity-v1"
    seeds_with(tmp_path, env, "strpo", [(100.0, 5.0)] * 3)
    seeds_with(tmp_path, env, "strpo", [(r, 5.0) for r in no_exclusion_rewards], group="ablation-components",
               label=agg.NO_EXCLUSION_LABEL)
    records, _ = agg.load_records([tmp_path])
    (claim,) = agg.ablation_claims(records, None, 0, 1000)
    assert "reasonably good" in claim.quote and claim.verdict == outcome
    assert claim.evidence[0].metric == "final reward, no exclusion / default"


def test_appendix_c_claims_on_runs_built_to_agree_or_disagree(agg, tmp_path):
    env, ten = "SafetyHopperVelocity-v1", range(10)
    for seed in (0, 1, 2):
        kw = dict(stamp=seed)
        write_run(tmp_path, f"main{seed}", env, "strpo", seed, [100 + 10 * i for i in ten], [1] * 10, **kw)
        ablation = [("ablation-delta", agg.DELTA_LABELS["1e-2"], [100 + 10 * i for i in ten], [1] * 10),
                    ("ablation-delta", agg.DELTA_LABELS["1e-4"], [100 + 5 * i for i in ten], [1, 40, 9] + [1] * 7),
                    ("ablation-delta", agg.DELTA_LABELS["decoupled"], [300 + 10 * i for i in ten], [1] * 10),
                    ("ablation-components", agg.NO_JOINT_LABEL, [100 + 10 * i for i in ten], [5] * 10),
                    ("ablation-lambda2", agg.LAMBDA2_LABELS[0], [100 + 10 * i for i in ten], [1] * 10),
                    ("ablation-lambda2", agg.LAMBDA2_LABELS[1], [101 + 10 * i for i in ten], [2] * 10)]
        for k, (group, label, rewards, costs) in enumerate(ablation):
            write_run(tmp_path, f"{group}{k}_{seed}", env, "strpo", seed, [r + seed for r in rewards], costs,
                      group=group, label=label, **kw)
    records, _ = agg.load_records([tmp_path])
    claims = {c.quote.split()[2] + c.where[:3]: c for c in agg.ablation_claims(records, None, 0, 1000)}
    spike = next(c for c in claims.values() if "transient cost spike" in c.quote)
    assert spike.verdict == "agrees" and spike.evidence[0].value == pytest.approx(39.0)  # peaks 40 vs 1
    assert "highest at 40.0 during training, against 1.0 with δ = 1e-2" in spike.context
    assert next(c for c in claims.values() if "decoupled" in c.quote).verdict == "disagrees"  # reward 200 higher
    assert next(c for c in claims.values() if "drastically" in c.quote).verdict == "agrees"  # x5
    assert next(c for c in claims.values() if "λ2" in c.quote).verdict == "agrees"  # 1 apart, costs 1 apart


def test_appendix_d_claims_are_judged_on_their_ci_over_checkpoints(agg):
    def sweep(costs_by_ckpt, rewards_by_ckpt=None, rates=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)):
        rewards_by_ckpt = rewards_by_ckpt or [[0.0] * len(rates)] * len(costs_by_ckpt)
        return {"rates": list(rates), "cost": np.array(costs_by_ckpt, float), "reward": np.array(rewards_by_ckpt, float)}

    spike = [[5, 10, 30, 40, 10, 20]] * 3
    robust = {"SafetyCarGoal1-v0": {"strpo": sweep([[5, 10, 30, 40, 10, 20], [6, 11, 31, 41, 11, 21], [4, 9, 29, 39, 9, 19]])},
              "SafetyCarCircle1-v0": {"strpo": sweep([[1] * 6] * 3), "cpo": sweep([[50] * 6, [55] * 6, [60] * 6])},
              "SafetyHopperVelocity-v1": {"strpo": sweep([[0, 0, 0, 1, 30, 80]] * 3, [[1000, 900, 800, 700, 100, 0]] * 3),
                                          "cpo": sweep([[20] * 6] * 3, [[500, 450, 400, 350, 300, 0]] * 3)}}
    by = {c.where: c for c in agg.robustness_claims(robust, 0, 1000, baselines=("cpo",)) if "near zero" not in c.quote}
    near_zero = next(c for c in agg.robustness_claims(robust, 0, 1000, baselines=("cpo",)) if "near zero" in c.quote)
    assert by["D, SafetyCarGoal1-v0"].verdict == "agrees" and by["D, SafetyCarCircle1-v0"].verdict == "agrees"
    assert by["D, SafetyHopperVelocity-v1"].verdict == "agrees" and near_zero.verdict == "agrees"  # median 0.5
    robust["SafetyCarGoal1-v0"]["strpo"] = sweep([[5, 10, 30, 40, 10, 50]] * 3)  # highest at alpha = 1
    robust["SafetyCarCircle1-v0"]["cpo"] = sweep([[0] * 6, [30] * 6, [0] * 6])  # below sTRPO in 2 of 3 seeds
    robust["SafetyHopperVelocity-v1"]["cpo"] = sweep([[20] * 6] * 3, [[2000] * 6] * 3)
    by = {c.where: c.verdict for c in agg.robustness_claims(robust, 0, 1000, baselines=("cpo",)) if "near zero" not in c.quote}
    assert by == {"D, SafetyCarGoal1-v0": "disagrees", "D, SafetyCarCircle1-v0": "inconclusive",
                  "D, SafetyHopperVelocity-v1": "disagrees", "D, SafetyAntVelocity-v1": "not measured"}
    # against the eight baselines, a task where only CPO is swept is not measured yet, and says what is missing
    claims = agg.robustness_claims(robust, 0, 1000)
    assert len(claims) == 5 and {c.verdict for c in claims if "SafetyCarGoal1" not in c.where and "near zero"
                                  not in c.quote} == {"not measured"}
    assert "Not swept yet on this task: TRPO-Lag, PPO-Lag, CPPO-PID, RCPO, PCPO, CUP, FOCOPS" in claims[0].context
    assert agg.robustness_claims({}, 0, 1000)[-1].verdict == "not measured"  # no sweep at all: still listed
    circle = {"strpo": {1.0: {"cost": 3.0, "reward": 1.0}}, "cpo": {1.0: {"cost": 60.0, "reward": 2.0}}}
    assert "they do not" in agg.full_attack_line(circle)  # alpha = 1: cost 3 vs 60
    circle["cpo"][1.0] = dict(circle["strpo"][1.0])
    assert "they do (equal reward and cost)" in agg.full_attack_line(circle)
    assert agg.full_attack_line({"strpo": circle["strpo"]}) is None


def test_robustness_csv_rows_become_one_row_per_checkpoint(agg):
    rows = [{"source": "a.csv", "checkpoint": f"{algo}{k}.pt", "algo": algo, "env_id": "E", "rate": rate,
             "reward_mean": 10 * k + float(rate), "cost_mean": k} for algo in ("strpo", "cpo") for k in (0, 1)
            for rate in ("0.0", "0.5")]
    m = agg.robustness_matrices(rows)["E"]["strpo"]
    assert m["rates"] == [0.0, 0.5] and m["reward"].tolist() == [[0.0, 0.5], [10.0, 10.5]] and m["cost"].tolist() == [[0, 0], [1, 1]]


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
        write_unsafe_run(tmp_path, f"noexcl{seed}", env, seed, [8.0] * 10, "no exclusion (λ2 = 0)", "ablation-components")
        for epoch, level_cost in ((1, 5.0), (5, 1.0)):  # sTRPO pays less against the stronger pi_unsafe
            write_unsafe_run(tmp_path, f"s{epoch}_{seed}", env, seed, [level_cost + seed] * 10,
                             f"π_unsafe of epoch {epoch}", "ablation-unsafe-strength")
    records, _ = agg.load_records([tmp_path])
    sections = agg.unsafe_sections()
    ci = lambda values: agg.bootstrap_ci(lambda m: m, [values], 0, 1000)  # noqa: E731  (aggregate.py's)
    md = "\n".join(sections.critic_section(records, agg.read_progress, lambda n: agg.n_final(n, None), ci))
    assert "| CVaR (DTRPO_Unsafe) | 0 1 2 | 91.0 [90.0, 92.0] |" in md
    assert "45.0 [45.0, 45.0] / 50.0 [50.0, 50.0] | 0.25 [0.25, 0.25] | 78.0 [78.0, 78.0] / 80.0 [80.0, 80.0] |" in md
    assert "| mean (TRPO_Unsafe) | 0 1 2 | 100.0 [100.0, 100.0] |" in md and "| — | — |" in md
    assert "final episode cost is 91% of the mean-critic one's (91.0 against 100.0; target at least 80%: met)" in md
    md = "\n".join(sections.strength_section(records, lambda n: agg.n_final(n, None), lambda r: agg.run_scores(r, None),
                                             tmp_path / "out", lambda p: p, ci))
    assert "| π_unsafe of epoch 1 | 10.0 | 3 | 6.0 [5.0, 7.0] |" in md  # x: the seed-0 CVaR run's cost in epoch 1
    assert "| π_unsafe of epoch 5 | 50.0 | 3 | 2.0 [1.0, 3.0] |" in md
    assert "| none: no exclusion (λ2 = 0) (ablation-components) | — | 3 | 8.0 [8.0, 8.0] |" in md  # the floor
    assert "epoch 5 (own cost 50.0): sTRPO's mean cost over training 2.0 [1.0, 3.0] is lower than sTRPO without" in md
    assert (tmp_path / "out" / "ablation-unsafe-strength.png").is_file()


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


def test_the_page_names_sTRPOs_pi_unsafe_and_whether_its_runs_used_the_shipped_one(agg, tmp_path):
    """The table of benchmark/evaluate_unsafe.py gives each shipped pi_unsafe's cost; a run whose commit holds
    today's file used it, a run without a recorded commit (or with another file) is named as such."""
    import subprocess
    costs = agg.shipped_unsafe_costs()
    assert set(costs) == {"SafetyCarCircle1-v0", "SafetyCarGoal1-v0", "SafetyAntVelocity-v1", "SafetyHopperVelocity-v1"}
    assert all("±" in c for c in costs.values())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    env = "SafetyHopperVelocity-v1"
    for seed in (0, 1):
        write_run(tmp_path, f"{env}__strpo__{seed}", env, "strpo", seed, [1, 2], [3, 4])
    recs, _ = agg.load_records([tmp_path])
    recs[0].commit = head
    text = agg.unsafe_policy_text(recs, env)
    assert f"unsafe_policies/{env}.pt" in text and costs[env] in text and "in 1 of 2 runs" in text
    recs[1].commit = head
    assert "in all 2 runs" in agg.unsafe_policy_text(recs, env)
    config = recs[1].path.parent / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "unsafe_policy_path": "runs/mine.pt"}))
    assert "runs/mine.pt (1 of 2 runs), unsafe_policies/SafetyHopperVelocity-v1.pt (1 of 2 runs)" in agg.unsafe_policy_text(recs, env)
    assert agg.unsafe_policy_text(recs, "SafetyCarGoal1-v0") is None


def test_a_checkpoint_swept_twice_keeps_the_rows_of_its_newest_sweep(agg, tmp_path):
    """A full sweep of two algorithms, then a newer sweep of sTRPO alone: sTRPO's rows come from the newer one,
    CPO's from the full one, and only the sweeps whose rows are kept are cited."""
    header = "checkpoint,algo,env_id,rate,episodes,reward_mean,cost_mean,seed,deterministic"
    for name, started, algos, cost in (("E__robustness__0", 100.0, ("strpo", "cpo"), 5.0),
                                       ("E__robustness-strpo__0", 200.0, ("strpo",), 1.0)):
        (tmp_path / name / "attack").mkdir(parents=True)
        (tmp_path / name / "run.json").write_text(json.dumps({"started_at": started}))
        lines = [f"{a}.pt,{a},E,{rate},20,10,{cost},0,True" for a in algos for rate in ("0.0", "1.0")]
        (tmp_path / name / "attack" / "robustness.csv").write_text("\n".join([header, *lines]) + "\n")
    rows = agg.read_robustness([tmp_path])
    assert len(rows) == 4
    assert {(r["algo"], float(r["cost_mean"]), "-strpo" in r["source"]) for r in rows} == {("strpo", 1.0, True),
                                                                                           ("cpo", 5.0, False)}


def write_sweep(root, name, rows, started=1.7e9):
    """A robustness_attack.py output as benchmark/run.py leaves it: root/NAME/run.json, root/NAME/attack/."""
    (root / name / "attack").mkdir(parents=True)
    (root / name / "run.json").write_text(json.dumps({"group": "robustness", "started_at": started}))
    with open(root / name / "attack" / "robustness.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["checkpoint", "algo", "env_id", "rate", "episodes", "reward_mean",
                                          "cost_mean", "seed", "deterministic"])
        w.writeheader()
        w.writerows(rows)


def test_sampled_action_evaluation_sits_beside_training_and_stays_out_of_the_attack_tables(agg, tmp_path):
    """Training's final cost (sampled actions), the checkpoint evaluated with sampled actions and with the mean
    action, on the same seeds; the sampled rows never enter the attack sweep's cells or claims."""
    env = "SafetyCarCircle1-v0"
    for seed in (0, 1, 2):  # final cost (last epoch) 10, 12, 14
        write_run(tmp_path, f"{env}__strpo__{seed}", env, "strpo", seed, [1.0] * 10, [50.0] * 9 + [10.0 + 2 * seed])

    def row(seed, rate, cost, deterministic):
        return {"checkpoint": f"runs/matrix/{env}__strpo__{seed}/{env}__strpo__{seed}__1/strpo.pt", "algo": "strpo",
                "env_id": env, "rate": rate, "episodes": 4, "reward_mean": 3.0, "cost_mean": cost, "seed": seed,
                "deterministic": deterministic}  # a sweep's --seed is its checkpoints' training seed
    write_sweep(tmp_path, f"{env}__robustness__0", [row(s, r, 100.0 + s, True) for s in (0, 1, 2) for r in (0.0, 0.2)])
    write_sweep(tmp_path, f"{env}__robustness-stochastic__0", [row(s, 0.0, 20.0 + s, False) for s in (0, 1)])
    records, _ = agg.load_records([tmp_path])
    rows = agg.read_robustness([tmp_path])
    (ev,) = agg.evaluation_rows(rows, records, None)
    assert ev["seeds"] == "0 1"  # the seeds evaluated both ways, and training's values of the same seeds
    assert ev["train_cost"] == pytest.approx(11.0) and ev["sampled_cost"] == pytest.approx(20.5)
    assert ev["mean_cost"] == pytest.approx(100.5)
    md = agg.evaluation_section([ev], env, "the mean over its last epoch")
    assert "| sTRPO | 0 1 | 1.0 / 11.0 | 3.0 / 20.5 | 3.0 / 100.5 |" in md
    assert "closer to training's final cost than the mean action's for 1 of 1 algorithm(s)" in md[-2]
    out_md = tmp_path / "results.md"
    agg.main(agg.Args(inputs=[str(tmp_path)], out_md=str(out_md), out_dir=str(tmp_path / "results"), bootstrap_reps=100))
    page = out_md.read_text()
    assert "| sTRPO | 100.0 / 101.0 | 100.0 / 101.0 |" not in page  # reward / cost cells of the attack table:
    assert "| sTRPO | 3 / 101.0 | 3 / 101.0 |" in page  # the mean-action rows alone (20.5 would pull them down)
    assert "| sTRPO | 0 1 | 1.0 / 11.0 | 3.0 / 20.5 | 3.0 / 100.5 |" in page
    assert f"- robustness, {env}, sampled-action evaluation at α = 0: 25 of 27 checkpoints not evaluated: sTRPO (seeds 2);" in page


def test_two_run_sets_differ_measurably_only_when_the_ci_of_the_difference_excludes_zero(agg, tmp_path):
    """The δ2 decision (issue 24) and the exclusion's effect: difference of means over seeds with its CI, and
    how many seeds each side has (10 of main against 3 of an ablation)."""
    env = "SafetyHopperVelocity-v1"
    for seed in range(4):  # default: mean cost over training 10 + seed
        write_run(tmp_path, f"{env}__strpo__{seed}", env, "strpo", seed, [100.0] * 10, [10.0 + seed] * 10)
    for seed in range(3):  # delta2 = 1e-2: 30 + seed, far above; the same reward
        write_run(tmp_path, f"{env}__strpo__delta2=1e-2__{seed}", env, "strpo", seed, [100.0] * 10, [30.0 + seed] * 10,
                  group="seeds-delta2", label="δ2 = 1e-2 (= δ1)")
    records, _ = agg.load_records([tmp_path])
    args = agg.Args(bootstrap_reps=500)
    text = agg.differences(records, env, ("main", "strpo"), ("seeds-delta2", "δ2 = 1e-2 (= δ1)"), args)
    assert text.startswith("4 against 3 seeds; mean cost over training 11.5 vs 31.0, difference -19.5 [")
    assert "(measurable)" in text.split(";")[1]  # the costs never overlap
    assert "final reward 100 vs 100, difference +0 [+0, +0] (not measurable: the CI contains 0)" in text
    assert agg.differences(records, env, ("main", "strpo"), ("seeds-delta2", "other"), args) == ""
    out_md = tmp_path / "results.md"
    agg.main(agg.Args(inputs=[str(tmp_path)], out_md=str(out_md), out_dir=str(tmp_path / "results"), bootstrap_reps=100))
    assert f"Default δ2 = 1e-4 against δ2 = 1e-2 (the main text's single δ), on {env} at this budget only: 4 against 3 seeds; " \
           "mean cost over training 11.5 vs 31.0" in out_md.read_text()


def test_the_ant_tables_say_how_far_their_rewards_are_from_the_papers(agg, tmp_path):
    """Appendix D's ~2.6k (sTRPO) and ~1.6k (next best) at alpha = 0: each compared with the right run."""
    env = "SafetyAntVelocity-v1"
    for algo, reward in (("strpo", 52.0), ("cpo", 80.0), ("ppo_lag", 160.0)):
        for seed in (0, 1, 2):
            write_run(tmp_path, f"{env}__{algo}__{seed}", env, algo, seed, [reward] * 10, [1.0] * 10)
    out = agg.main(agg.Args(inputs=[str(tmp_path)], out_md=str(tmp_path / "r.md"), out_dir=str(tmp_path / "fig"),
                            bootstrap_reps=200))
    (line,) = [x for x in out.read_text().splitlines() if x.startswith("How far this is from the paper's level")]
    assert "sTRPO 52 (2% of 2,600)" in line and "the best baseline (PPO-Lag) 160 (10% of 1,600)" in line, line
    assert "after 10,000 steps" in line
    assert agg.paper_level_line("SafetyHopperVelocity-v1", {"strpo": 1.0}, "x") is None  # no number in the paper


def test_ten_seed_algorithms_are_compared_with_strpo_difference_by_difference(agg, tmp_path):
    """Only baselines with 10 seeds (like sTRPO's) get a paired line; a real gap is measurable, noise is not."""
    env = "SafetyHopperVelocity-v1"
    rng = np.random.default_rng(0)
    for algo, seeds, late in (("strpo", 10, 5.0), ("cpo", 10, 25.0), ("cup", 10, 5.0), ("rcpo", 3, 90.0)):
        for seed in range(seeds):
            costs = [30.0] * 6 + list(late + rng.normal(0, 1, 3))
            write_run(tmp_path, f"{env}__{algo}__{seed}", env, algo, seed, [100.0 + seed] * 9, costs)
    out = agg.main(agg.Args(inputs=[str(tmp_path)], out_md=str(tmp_path / "r.md"), out_dir=str(tmp_path / "fig"),
                            bootstrap_reps=500))
    lines = [x for x in out.read_text().splitlines() if x.startswith(f"- {env}, sTRPO against")]
    assert [x.split(":")[0] for x in lines] == [f"- {env}, sTRPO against CPO", f"- {env}, sTRPO against CUP"], lines
    cpo, cup = lines
    assert "10 against 10 seeds" in cpo
    assert "cost over the last third" in cpo and cpo.split("cost over the last third")[1].split(";")[0].endswith("(measurable)")
    assert "not measurable" in cup.split("cost over the last third")[1].split(";")[0]


def test_section_5_claims_are_judged_again_on_the_long_runs_apart_from_the_papers_table(agg, tmp_path):
    """At the main budget sTRPO's late cost on Ant is 10 (disagrees); its long runs settle at 0 (agrees), and CPO
    violates 3x as much there (the 2x claim agrees); the long verdicts sit in their own section, not the count."""
    env = "SafetyAntVelocity-v1"
    for seed in (0, 1, 2):
        for algo, cost in (("strpo", 10.0), ("cpo", 12.0)):
            write_run(tmp_path, f"{env}__{algo}__{seed}", env, algo, seed, [50.0] * 9, [cost + seed * 0.1] * 9)
        for algo, costs in (("strpo", [15.0] * 6 + [0.0] * 3), ("cpo", [30.0] * 9)):
            write_run(tmp_path, f"{env}__{algo}__long__{seed}", env, algo, seed, [900.0] * 9,
                      [c + seed * 0.1 for c in costs], group="long", steps_per_epoch=2000)
    md = agg.main(agg.Args(inputs=[str(tmp_path)], out_md=str(tmp_path / "r.md"), out_dir=str(tmp_path / "fig"),
                           bootstrap_reps=200)).read_text()
    head, long = md.split("### Section 5's claims at the long budget")
    assert f"| section 5, {env} | the mean episode cost is driven to (and sustained near) zero" in head
    assert "Of the paper's 10 claims checked below, 2 disagree, 8 not measured" in head  # main's Ant and 2x claims
    assert ("At the `long` preset's budget (18,000 steps on SafetyAntVelocity-v1; 3 seeds per algorithm and task), "
            "against CPO, sTRPO reaches on SafetyAntVelocity-v1 a final reward of 900.0 (1st highest of 2), a mean cost "
            "over training of 10.1 (1st lowest) and a cost over the last third of 0.1 (1st lowest).") in head
    assert "18,000 steps on SafetyAntVelocity-v1; 3 seeds per algorithm and task" in long
    long_lines = [x for x in long.splitlines() if x.startswith("- section 5")]
    assert len(long_lines) == 2, long_lines  # the Ant claim and the 2x claim; CarGoal1 has no long runs
    assert f"- section 5, {env}, \"the mean episode cost is driven" in long_lines[0] and "**agrees**" in long_lines[0]
    assert "section 5, all tasks" in long_lines[1] and "**agrees**" in long_lines[1]


def test_a_budget_that_is_not_a_whole_number_of_epochs_is_finished_at_its_last_whole_epoch(agg, tmp_path):
    """1,000,000 steps in 15,000-step epochs are 66 epochs (990,000 steps): the scripts run whole epochs only, so
    such a run is finished, while one that stopped an epoch short of it is not."""
    for seed, epochs in ((0, 10), (1, 9)):
        sub = write_run(tmp_path, f"SafetyCarCircle1-v0__cpo__long__{seed}", "SafetyCarCircle1-v0", "cpo", seed,
                        [1.0] * epochs, [1.0] * epochs, group="long", planned=10_500)
        record = json.loads((sub.parent / "run.json").read_text())
        (sub.parent / "run.json").write_text(json.dumps({**record, "steps_per_epoch": 1000}))
    records, _ = agg.load_records([tmp_path])
    assert {r.seed: r.planned_steps for r in records} == {0: 10_000, 1: 10_000}
    unfinished = [r.seed for r in records if r.step[-1] < r.planned_steps]
    assert unfinished == [1]


def test_run_times_give_each_scripts_minutes_per_run_by_task_and_budget_and_presets_apart(agg, tmp_path):
    """README's "how long" table: median [min, max] of time_elapsed per script, task and budget, from the main and
    long presets only; the time by preset names long apart from the ablations."""
    for seed, epochs in ((0, 6), (1, 12), (2, 18)):  # time_elapsed of the last row: 10 s per epoch
        write_run(tmp_path, f"SafetyCarCircle1-v0__strpo__{seed}", "SafetyCarCircle1-v0", "strpo", seed,
                  [1.0] * epochs, [1.0] * epochs, planned=epochs * 1000)
    for seed, seconds in ((3, 240.0), (4, 600.0)):  # two more 6-epoch runs, slower: 1, 4 and 10 minutes
        sub = write_run(tmp_path, f"SafetyCarCircle1-v0__strpo__{seed}", "SafetyCarCircle1-v0", "strpo", seed,
                        [1.0] * 6, [1.0] * 6, planned=6000)
        rows = list(csv.DictReader(open(sub / "progress.csv")))
        rows[-1]["time_elapsed"] = seconds
        with open(sub / "progress.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    write_run(tmp_path, "SafetyCarCircle1-v0__cpo__long__0", "SafetyCarCircle1-v0", "cpo", 0, [1.0] * 24, [1.0] * 24,
              group="long")
    write_run(tmp_path, "SafetyCarCircle1-v0__strpo__delta__0", "SafetyCarCircle1-v0", "strpo", 0, [1.0] * 42,
              [1.0] * 42, group="ablation-delta", label="δ = 1e-4")
    records, _ = agg.load_records([tmp_path])
    table = agg.run_times(records)
    header = ("| script | SafetyCarCircle1-v0, 6,000 steps | SafetyCarCircle1-v0, 12,000 steps | "
              "SafetyCarCircle1-v0, 18,000 steps | SafetyCarCircle1-v0, 24,000 steps |")
    assert header in table
    assert "| `strpo.py` | 4.0 [1.0, 10.0] (3) | 2.0 [2.0, 2.0] (1) | 3.0 [3.0, 3.0] (1) |  |" in table
    assert "| `baselines/cpo.py` |  |  |  | 4.0 [4.0, 4.0] (1) |" in table
    assert not any("δ" in line or "7.0" in line for line in table)  # the ablation's 7 minutes are not a script's time
    assert agg.budget_lines(records)[-1] == ("- time by preset, one core per run: main 0.3 h, ablations 0.1 h, long 0.1 h; "
                                             "0.5 core-hours in all.")


def test_records_of_resumed_runs_are_named_at_the_top_of_the_page(agg, tmp_path):
    """A record whose last attempt was a resume repeats a fresh start only up to the interruption: the page says which."""
    synthetic_seeds(tmp_path)
    record = tmp_path / "SafetyHopperVelocity-v1__strpo__1" / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "action": "resume"}))
    records, _ = agg.load_records([tmp_path])
    assert [r.seed for r in records if r.resumed] == [1]
    assert "1 of them were resumed after an interruption" in agg.resumed_text(records)
    assert agg.resumed_text(records).endswith(": SafetyHopperVelocity-v1__strpo__1.")
    assert agg.resumed_text([r for r in records if not r.resumed]) == ""


def test_the_page_counts_the_runs_per_cpu_by_their_widest_simd_extension(agg, tmp_path):
    """A run repeats bit for bit only on a CPU with the same SIMD extensions, so the page says which CPUs the runs
    ran on (run.json's cpu), unrecorded last."""
    synthetic_seeds(tmp_path)
    for seed, cpu in ((0, "Xeon; avx avx2 avx512f sse2"), (1, "EPYC; avx avx2 fma sse2")):
        record = tmp_path / f"SafetyHopperVelocity-v1__strpo__{seed}" / "run.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "cpu": cpu}))
    records, _ = agg.load_records([tmp_path])
    assert agg.cpus_text(records) == "EPYC with AVX2 (1 run), Xeon with AVX-512 (1 run), unrecorded (1 run)"
