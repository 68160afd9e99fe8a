"""benchmark/run.py: the presets expand to the paper's matrices, the skip / resume / restart decisions
follow the folders on disk, and a real two-run matrix goes through a local Ray pool."""
import csv
import json
import os
import re
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, load_script

RUN = ROOT / "benchmark" / "run.py"


@pytest.fixture(scope="module")
def run_py():
    return load_script(RUN)


def flag(run, name):
    return run.flags[run.flags.index(name) + 1]


def test_main_preset_is_nine_algorithms_on_four_tasks_with_three_seeds_and_the_stated_budget(run_py):
    runs = run_py.preset_runs("main")
    assert {r.cpus for r in run_py.preset_runs("main", nav_cpus=2) if "Car" in r.env_id} == {2}
    assert len(runs) == 9 * 4 * 3 and len({r.name for r in runs}) == len(runs)
    assert {r.env_id for r in runs} == {"SafetyCarCircle1-v0", "SafetyCarGoal1-v0", "SafetyAntVelocity-v1",
                                        "SafetyHopperVelocity-v1"}
    assert {Path(r.script).stem for r in runs} == {"strpo", "trpo_lag", "cpo", "ppo_lag", "cppo_pid", "rcpo",
                                                   "pcpo", "cup", "focops"}
    assert all((ROOT / r.script).is_file() for r in runs)
    for r in runs:
        navigation = "Car" in r.env_id
        assert r.total_timesteps == (300_000 if navigation else 450_000) and r.steps_per_epoch == 15_000
        assert r.cpus == 1 and r.seed in (0, 1, 2) and r.flags == []
        assert r.name == f"{r.env_id}__{Path(r.script).stem}__{r.seed}"  # stable: no timestamp


def test_navigation_runs_need_more_than_one_cpu_only_with_async_envs(run_py):
    assert run_py.cpus_needed("SafetyCarGoal1-v0", [], 3) == 3
    assert run_py.cpus_needed("SafetyPointButton2-v0", ["--vector-mode", "async"], 2) == 2
    assert run_py.cpus_needed("SafetyCarGoal1-v0", ["--vector-mode", "sync"], 2) == 1
    assert run_py.cpus_needed("SafetyAntVelocity-v1", [], 2) == 1
    assert not run_py.is_navigation("SafetyHopperVelocity-v1") and run_py.is_navigation("SafetyPointPush1-v0")


def test_ablation_presets_carry_the_values_of_appendix_c_on_hopper(run_py):
    delta = run_py.preset_runs("ablation-delta")
    pairs = {(flag(r, "--delta1"), flag(r, "--delta2")) for r in delta}
    assert pairs == {("0.01", "0.01"), ("0.001", "0.001"), ("0.0001", "0.0001"), ("0.01", "0.0001")}
    lam = run_py.preset_runs("ablation-lambda2")
    assert {(flag(r, "--lambda2-mode"), flag(r, "--lambda2")) for r in lam} == {("fixed", "0.01"), ("fixed", "1.0")}
    comp = run_py.preset_runs("ablation-components")
    assert {tuple(r.flags) for r in comp} == {("--no-joint-advantage",), ("--no-exclusion",)}
    for runs in (delta, lam, comp):
        assert {r.env_id for r in runs} == {"SafetyHopperVelocity-v1"} and {r.seed for r in runs} == {0, 1, 2}
        assert {r.script for r in runs} == {"strpo.py"}


def test_unsafe_ablation_feeds_each_strpo_seed_the_pi_unsafe_trained_with_its_critic(run_py):
    runs = run_py.preset_runs("ablation-unsafe")
    unsafe = {r.name: r for r in runs if r.script == "unsafe_cvar_trpo.py"}
    strpo = [r for r in runs if r.script == "strpo.py"]
    assert len(unsafe) == 12 and len(strpo) == 12
    assert {flag(r, "--critic") for r in unsafe.values()} == {"cvar", "mean"}
    assert {r.env_id for r in runs} == {"SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"}
    for r in strpo:
        (source,) = r.inputs
        assert source in unsafe and unsafe[source].seed == r.seed and unsafe[source].env_id == r.env_id
        assert flag(r, "--unsafe-policy-path") == f"@ckpt:{source}/unsafe_cvar_trpo.pt"
        assert ("unsafe=" + flag(unsafe[source], "--critic")) in r.name


def test_unsafe_strength_runs_strpo_against_policies_of_one_pi_unsafe_run_that_c2_also_uses(run_py):
    runs = run_py.preset_runs("ablation-unsafe-strength")
    sources = {r.name: r for r in runs if r.script == "unsafe_cvar_trpo.py"}
    c2 = {r.name: r for r in run_py.preset_runs("ablation-unsafe")}
    assert len(sources) == 2 and all(c2[n] == r for n, r in sources.items())  # the same runs as C.2's seed 0
    for name, source in sources.items():
        strpo = [r for r in runs if r.inputs == [name]]
        epochs = run_py.STRENGTH_EPOCHS[source.env_id]
        assert flag(source, "--save-policies-at") == str(epochs[0])
        files = {flag(r, "--unsafe-policy-path").split("/", 1)[1] for r in strpo}
        assert files == {f"unsafe_cvar_trpo_epoch{k}.pt" for k in epochs} and epochs[0] == 1
        assert epochs[-1] * 15000 == source.total_timesteps  # from the untrained policy to the last epoch's
        assert len(strpo) == len(files) * 5 and {r.seed for r in strpo} == {0, 1, 2, 3, 4}
    both = run_py.select_runs(run_py.Args(preset=["ablation-unsafe", "ablation-unsafe-strength"]))
    assert len(both) == len({r.name for r in both}) == 24 + 40


def test_robustness_preset_attacks_the_nine_main_checkpoints_of_each_paper_task_and_seed(run_py):
    runs = run_py.preset_runs("robustness", episodes=7)
    main_names = {r.name for r in run_py.preset_runs("main")}
    assert len(runs) == 4 * 3 * 2 and {r.env_id for r in runs} == set(run_py.PAPER_TASKS)
    # the navigation sweeps keep the names of the published ones
    assert {f"{env}__robustness__{seed}" for env in run_py.NAVIGATION_TASKS for seed in (0, 1, 2)} <= {r.name for r in runs}
    for r in runs:
        assert len(r.inputs) == 9 and set(r.inputs) <= main_names
        assert all(n.startswith(r.env_id) and n.endswith(f"__{r.seed}") for n in r.inputs)
        rates = r.flags[r.flags.index("--rates") + 1: r.flags.index("--episodes")]
        assert flag(r, "--episodes") == "7" and r.checkpoint_name == "robustness.csv"
        if r.label == "robustness":  # the attack sweep, mean actions (the paper's protocol)
            assert [float(x) for x in rates] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            assert "--stochastic" not in r.flags
        else:  # the same checkpoints with sampled actions, unattacked: training's own action mode
            assert r.label == "robustness-stochastic" and r.name == f"{r.env_id}__robustness-stochastic__{r.seed}"
            assert rates == ["0.0"] and r.flags[-1] == "--stochastic"


def test_aliases_filters_and_overrides_narrow_and_change_the_matrix(run_py):
    args = run_py.Args(preset=["all"])
    assert len(run_py.select_runs(args)) == 108 + 12 + 6 + 24 + 6 + 40 + 24  # strength shares C.2's 2 sources; not seeds/long
    args = run_py.Args(preset=["main", "ablations"], filter=["Hopper", "strpo|cpo"], seeds=[0])
    names = [r.name for r in run_py.select_runs(args)]
    assert names and all("Hopper" in n and ("strpo" in n or "cpo" in n) for n in names)
    args = run_py.Args(preset=["main"], algos=["ppo_lag"], env_ids=["SafetyHopperVelocity-v1"], seeds=[0, 1],
                       total_timesteps=2000, steps_per_epoch=1000, num_envs=1)
    runs = run_py.select_runs(args)
    assert [r.name for r in runs] == ["SafetyHopperVelocity-v1__ppo_lag__0", "SafetyHopperVelocity-v1__ppo_lag__1"]
    assert all(r.total_timesteps == 2000 and r.steps_per_epoch == 1000 and r.flags == ["--num-envs", "1"]
               for r in runs)
    with pytest.raises(SystemExit, match="unknown preset"):
        run_py.select_runs(run_py.Args(preset=["mian"]))


def write_progress(folder: Path, steps: list[int]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "epoch", "ep_ret", "ep_cost"])
        for i, s in enumerate(steps):
            w.writerow([s, i + 1, 1.0, 0.0])


def test_skip_resume_restart_and_refuse_decisions_follow_the_folders(run_py, tmp_path):
    (run,) = run_py.matrix(["baselines/ppo_lag.py"], ["SafetyHopperVelocity-v1"], [3])
    run_dir = tmp_path / run.name
    plan = run_py.plan_run(run, tmp_path, resumable=True)
    assert plan["action"] == "start" and "--resume" not in plan["command"]
    assert plan["command"][plan["command"].index("--output-dir") + 1] == str(run_dir)
    # interrupted: two partial subfolders (an earlier restart); the most advanced one is resumed
    write_progress(run_dir / "SafetyHopperVelocity-v1__ppo_lag__3__100", [15000, 30000, 45000])
    write_progress(run_dir / "SafetyHopperVelocity-v1__ppo_lag__3__200", [15000])
    plan = run_py.plan_run(run, tmp_path, resumable=True)
    assert plan["action"] == "restart" and "--resume" not in plan["command"]  # no resume.pt: nothing to continue
    (run_dir / "SafetyHopperVelocity-v1__ppo_lag__3__100" / "resume.pt").write_bytes(b"x")
    plan = run_py.plan_run(run, tmp_path, resumable=True)
    assert plan["action"] == "resume" and "45000" in plan["why"]
    assert plan["command"][-2:] == ["--resume", str(run_dir / "SafetyHopperVelocity-v1__ppo_lag__3__100")]
    plan = run_py.plan_run(run, tmp_path, resumable=False)
    assert plan["action"] == "restart" and "--resume" not in plan["command"]
    # finished: the final checkpoint exists in some subfolder
    (run_dir / "SafetyHopperVelocity-v1__ppo_lag__3__200" / "ppo_lag.pt").write_bytes(b"x")
    assert run_py.plan_run(run, tmp_path, resumable=True)["action"] == "skip"
    # the folder was made with another budget: refused, never mixed
    (run_dir / "run.json").write_text(json.dumps({**run_py.identity(run), "total_timesteps": 1}))
    assert run_py.plan_run(run, tmp_path, resumable=True)["action"] == "refuse"
    (run_dir / "run.json").write_text(json.dumps(run_py.identity(run)))
    assert run_py.plan_run(run, tmp_path, resumable=True)["action"] == "skip"


def test_checkpoint_inputs_resolve_once_their_run_has_finished(run_py, tmp_path):
    strpo = [r for r in run_py.preset_runs("ablation-unsafe", seeds=(0,)) if r.script == "strpo.py"][0]
    cmd, missing = run_py.build_command(strpo, tmp_path, "python")
    assert len(missing) == 1 and missing[0] in cmd and "*" in missing[0]
    ckpt = tmp_path / strpo.inputs[0] / "SafetyHopperVelocity-v1__unsafe_cvar_trpo__0__5" / "unsafe_cvar_trpo.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    cmd, missing = run_py.build_command(strpo, tmp_path, "python")
    assert missing == [] and cmd[cmd.index("--unsafe-policy-path") + 1] == str(ckpt)
    # a task whose inputs are missing reports itself blocked and runs nothing
    robust = run_py.preset_runs("robustness", seeds=(0,))[0]
    status = run_py.execute_run(run_py.asdict(robust), str(tmp_path), False)
    assert status["status"] == "blocked" and not (tmp_path / robust.name).exists()


def test_flags_missing_from_a_scripts_help_are_reported(run_py):
    (run,) = run_py.preset_runs("ablation-lambda2", seeds=(0,))[:1]
    help_text = "│ --lambda2 FLOAT  weight │\n│ --no-exclusion, --no-no-exclusion │"
    assert run_py.unknown_flags(run, help_text) == ["--lambda2-mode"]
    assert run_py.unknown_flags(run, help_text + "\n│ --lambda2-mode {kkt,fixed} │") == []


def test_a_two_run_matrix_runs_through_a_local_ray_pool_then_is_skipped(tmp_path):
    cmd = [sys.executable, str(RUN), "--preset", "main", "--algos", "ppo_lag", "--env-ids",
           "SafetyHopperVelocity-v1", "--seeds", "0", "1", "--total-timesteps", "2000", "--steps-per-epoch", "1000",
           "--num-envs", "1", "--workers", "2", "--root", str(tmp_path)]
    start = time.time()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "done: 2 finished" in out.stdout
    for seed in (0, 1):
        run_dir = tmp_path / f"SafetyHopperVelocity-v1__ppo_lag__{seed}"
        (sub,) = [p for p in run_dir.iterdir() if p.is_dir()]
        assert sub.name.startswith(f"SafetyHopperVelocity-v1__ppo_lag__{seed}__")
        assert (sub / "ppo_lag.pt").is_file()
        rows = list(csv.DictReader(open(sub / "progress.csv")))
        assert [int(r["global_step"]) for r in rows] == [1000, 2000]
        assert "exit code 0" in (run_dir / "log.txt").read_text()
        record = json.loads((run_dir / "run.json").read_text())
        assert record["seed"] == seed and record["returncode"] == 0 and record["ended_at"] > record["started_at"]
    print(f"two-run matrix through Ray: {time.time() - start:.1f} s")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "2 runs under" in again.stdout and "2 skip" in again.stdout
    assert "done: 2 skipped" in again.stdout


def test_seeds_preset_reuses_the_runs_main_has_and_adds_seeds_3_to_9(run_py, capsys):
    runs = run_py.preset_runs("seeds")
    main = {r.name: r for r in run_py.preset_runs("main")}
    plain = [r for r in runs if not r.flags]
    assert len(plain) == 4 * 2 * 10 and {r.seed for r in plain} == set(range(10))
    assert {r.env_id for r in runs} == {"SafetyHopperVelocity-v1", "SafetyCarCircle1-v0"}
    for r in plain:  # same name, group and identity as main: the folder main (or --preset main --seeds 3..9) left
        assert r.name == f"{r.env_id}__{r.label}__{r.seed}" and r.group == "main"
        if r.name in main:
            assert run_py.identity(r) == run_py.identity(main[r.name]) and r.group == main[r.name].group
    delta2 = [r for r in runs if r.flags]
    assert len(delta2) == 2 * 10 and all(r.flags == ["--delta2", "0.01"] and r.script == "strpo.py" for r in delta2)
    assert not {r.name for r in delta2} & set(main)
    # against the published record: main's 24 runs and every published seed are found and skipped, the rest start
    matrix = ROOT / "docs" / "runs" / "matrix"
    published = sum((matrix / r.name / "run.json").is_file() for r in runs)
    run_py.main(run_py.Args(preset=["seeds"], root=str(matrix), dry_run=True))
    out = capsys.readouterr().out
    assert published >= 24 and "100 runs under" in out and "refuse" not in out
    assert f"{published} skip" in out and (published == 100 or f"{100 - published} start" in out)
    assert "[skip] SafetyCarCircle1-v0__cup__2 " in out


def test_long_preset_has_its_own_names_and_budgets(run_py):
    runs = run_py.preset_runs("long")
    main_names = {r.name for r in run_py.preset_runs("main")}
    assert len(runs) == 2 * 5 * 3 and not {r.name for r in runs} & main_names
    assert {(r.env_id, r.total_timesteps) for r in runs} == {("SafetyCarCircle1-v0", 1_000_000),
                                                             ("SafetyAntVelocity-v1", 2_000_000)}
    assert {r.label for r in runs} == {"strpo", "cpo", "cppo_pid", "cup", "ppo_lag"} and {r.seed for r in runs} == {0, 1, 2}
    assert all(r.name.endswith(f"__long__{r.seed}") for r in runs)
    assert len(run_py.select_runs(run_py.Args(preset=["seeds", "long"]))) == 100 + 30


def test_every_published_run_is_still_found_finished_with_the_current_presets(run_py, capsys):
    matrix = ROOT / "docs" / "runs" / "matrix"
    records = {p.parent.name: json.loads(p.read_text()) for p in matrix.glob("*/run.json")}
    # a sweep narrowed by `--preset robustness --algos A B` is named {task}__robustness-A-B__{seed}
    kinds = {n.split("__")[1] for n in records} - {"robustness-stochastic"}
    narrowed = {re.sub(r"^robustness(-stochastic)?-", "", k) for k in kinds if k.startswith("robustness-")}
    selections = [run_py.Args(preset=["all", "seeds", "long"])] + [run_py.Args(preset=["robustness"], algos=a.split("-"))
                                                  for a in sorted(narrowed)]
    extra_seeds = {}  # runs added with --seeds beyond a preset's own (e.g. --no-exclusion seeds 3-9)
    for rec in records.values():
        if rec.get("preset") and rec["preset"] != "robustness":
            extra_seeds.setdefault(rec["preset"], set()).add(rec["seed"])
    selections += [run_py.Args(preset=[p], seeds=tuple(sorted(s))) for p, s in sorted(extra_seeds.items())]
    for selection in selections:
        run_py.main(replace(selection, root=str(matrix), dry_run=True, track=True))
    out = capsys.readouterr().out
    runs = {r.name: r for selection in selections for r in run_py.select_runs(selection)}
    assert records and set(records) <= set(runs)  # no published run changed its name
    same = {name for name, rec in records.items()  # those whose preset still asks for what they recorded
            if all(rec.get(k) == v for k, v in run_py.identity(runs[name]).items())}
    skipped = {line.split()[1] for line in out.splitlines() if line.startswith("[skip]")}
    assert len(same) >= 144 and same <= skipped


def test_tracking_passes_the_wandb_flags_without_changing_what_the_run_is(run_py, tmp_path):
    (run,) = run_py.matrix(["baselines/ppo_lag.py"], ["SafetyHopperVelocity-v1"], [0])
    wandb = {"project": "p", "entity": "team"}
    cmd, _ = run_py.build_command(run, tmp_path, "python", wandb=wandb)
    assert cmd[-5:] == ["--track", "--wandb-project-name", "p", "--wandb-entity", "team"]
    assert "--track" not in run_py.build_command(run, tmp_path, "python")[0]
    assert run_py.tracking_flags({"project": "p", "entity": None}) == ["--track", "--wandb-project-name", "p"]
    write_progress(tmp_path / run.name / "x", [450_000])  # an untracked run, finished
    (tmp_path / run.name / "run.json").write_text(json.dumps(run_py.identity(run)))
    assert run_py.plan_run(run, tmp_path, True, wandb=wandb)["action"] == "skip"
    (unsafe,) = [r for r in run_py.preset_runs("ablation-unsafe", seeds=(1,)) if r.script == "unsafe_cvar_trpo.py"][:1]
    assert unsafe.wandb_env == {"WANDB_RUN_GROUP": "ablation-unsafe-reference__SafetyHopperVelocity-v1",
                                "WANDB_JOB_TYPE": "unsafe_cvar_trpo__critic=cvar",
                                "WANDB_TAGS": "unsafe_cvar_trpo,critic=cvar,ablation-unsafe,SafetyHopperVelocity-v1"}


def wandb_run_record(path: Path):
    """The `run` record of an offline wandb run file (run-ID.wandb: a LevelDB-style log of protobuf records
    in 32 KiB blocks after a 7-byte header; each chunk has a 4-byte checksum, 2-byte length and 1-byte type)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, buf, block = path.read_bytes(), 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            if record.WhichOneof("record_type") == "run":
                return record.run
    return None


def test_a_tracked_run_logs_offline_to_wandb_grouped_as_the_page_and_records_its_provenance(tmp_path):
    cmd = [sys.executable, str(RUN), "--preset", "main", "--algos", "ppo_lag", "--env-ids", "SafetyHopperVelocity-v1",
           "--seeds", "0", "--total-timesteps", "1000", "--steps-per-epoch", "1000", "--num-envs", "1", "--workers", "1",
           "--root", str(tmp_path), "--track", "--wandb-project", "matrix-test"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir = tmp_path / "SafetyHopperVelocity-v1__ppo_lag__0"
    (offline,) = list(run_dir.glob("*/wandb/offline-run-*"))
    (wandb_file,) = list(offline.glob("run-*.wandb"))
    run = wandb_run_record(wandb_file)
    assert run.project == "matrix-test" and run.run_group == "main__SafetyHopperVelocity-v1"
    assert run.job_type == "ppo_lag" and list(run.tags) == ["ppo_lag", "main", "SafetyHopperVelocity-v1"]
    record = json.loads((run_dir / "run.json").read_text())
    assert len(record["git_commit"]) == 40 and isinstance(record["git_dirty"], bool)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if " avx2" in cpuinfo:  # the kernels' width is what decides whether a rerun repeats bit for bit
        assert record["cpu"].split("; ")[0] in cpuinfo and "avx2" in record["cpu"].split("; ")[1].split(), record["cpu"]
    assert record["command"].startswith("python baselines/ppo_lag.py ") and "--track" in record["command"]
    assert not any(os.path.isabs(token) for token in record["command"].split()), record["command"]
    assert sys.executable not in json.dumps(record)
    assert not any(isinstance(v, str) and os.path.isabs(v) for v in record.values())


def test_robustness_with_algos_sweeps_just_their_checkpoints_under_its_own_name(run_py):
    """`--preset robustness --algos strpo` re-sweeps sTRPO's redone checkpoints without touching the full
    sweeps' folders (aggregate.py then takes each checkpoint's rows from its newest sweep)."""
    full = {r.name: r for r in run_py.select_runs(run_py.Args(preset=["robustness"]))}
    narrow = run_py.select_runs(run_py.Args(preset=["robustness"], algos=["strpo", "cpo"]))
    assert len(narrow) == len(full) == 24
    for r in narrow:
        base = full[r.name.replace("-cpo-strpo__", "__")]
        assert r.name != base.name and r.inputs == [f"{r.env_id}__{a}__{r.seed}" for a in ("strpo", "cpo")]
        assert [f for f in r.flags if not f.startswith("@ckpt:")] == [f for f in base.flags if not f.startswith("@ckpt:")]
    assert run_py.select_runs(run_py.Args(preset=["robustness"], algos=["robustness_attack"]))[0].name in full
