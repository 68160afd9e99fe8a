"""Videos and pictures of policies: --capture-video in every training script, robustness_attack.py
--video, benchmark/watch_policies.py and the docs/watch.md snippet. Real renders (EGL), decoded."""
import csv
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  before MuJoCo: this session sets MUJOCO_GL=egl for in-process runs, after which
# a lazily loaded libtriton segfaults (the scripts do this themselves only when MUJOCO_GL=egl at their import)

from conftest import ROOT, SCRIPTS, load_script


@pytest.fixture
def egl(monkeypatch):
    """Headless rendering: MUJOCO_GL is read when a viewer is made (and inherited by env workers)."""
    monkeypatch.setenv("MUJOCO_GL", "egl")


def load_module(path: Path, name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def decode(path: Path) -> np.ndarray:
    import imageio.v2 as imageio

    return np.stack([frame for frame in imageio.get_reader(str(path), "ffmpeg")])  # list() trips on len = inf


def assert_real_video(path: Path, size: int) -> np.ndarray:
    frames = decode(path)
    assert frames.shape[1:] == (size, size, 3), (path, frames.shape)
    assert frames.shape[0] > 1
    assert all(frame.std() > 5 for frame in frames), f"{path.name} has blank frames"
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).max() > 0, f"{path.name}: all frames identical"
    return frames


def progress_without_timing(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("sps", "time_elapsed")} for row in csv.DictReader(f)]


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_every_training_script_has_an_off_by_default_capture_video_flag_recording_env_0(path):
    module = load_script(path)
    assert module.Args().capture_video is False
    assert list(inspect.signature(module.make_env).parameters) == ["env_id", "idx", "capture_video", "video_dir"]
    assert "capture_video" in inspect.signature(module.make_vector_env).parameters
    assert "every 50th episode" in path.read_text() and module.VIDEO_EVERY == 50


@pytest.fixture(scope="module")
def hopper_runs(tmp_path_factory):
    """The same short Hopper run with and without --capture-video (1 sync env, 2 epochs)."""
    before = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = "egl"  # module-scoped fixture: monkeypatch is function-scoped
    try:
        module = load_script(ROOT / "unsafe_cvar_trpo.py")
        runs = {}
        for capture in (False, True):
            args = module.Args(env_id="SafetyHopperVelocity-v1", total_timesteps=2000, steps_per_epoch=1000, num_envs=1,
                               capture_video=capture, output_dir=str(tmp_path_factory.mktemp(f"capture{capture}")))
            runs[capture] = Path(module.main(args))
        return module, runs
    finally:
        if before is None:
            del os.environ["MUJOCO_GL"]
        else:
            os.environ["MUJOCO_GL"] = before


def test_a_short_velocity_run_records_decodable_changing_videos_from_env_0(hopper_runs):
    module, runs = hopper_runs
    videos = sorted((runs[True] / "videos").glob("*.mp4"))
    # untrained Hopper episodes last tens of steps: episodes 0 and 50 (and maybe 100) of env 0
    assert {"rl-video-episode-0.mp4", "rl-video-episode-50.mp4"} <= {v.name for v in videos}
    for video in videos:  # every video, not only the first: a freed renderer would draw black frames
        assert_real_video(video, module.VIDEO_SIZE)
    assert not (runs[False] / "videos").exists()


def test_recording_does_not_change_the_training_data(hopper_runs):
    _, runs = hopper_runs
    assert progress_without_timing(runs[True]) == progress_without_timing(runs[False])
    with_video = torch.load(runs[True] / "unsafe_cvar_trpo.pt", weights_only=False)["actor_state_dict"]
    without = torch.load(runs[False] / "unsafe_cvar_trpo.pt", weights_only=False)["actor_state_dict"]
    assert all(torch.equal(with_video[k], without[k]) for k in without)


def test_a_short_navigation_run_with_async_envs_records_the_overview_and_keeps_its_progress(tmp_path):
    # a subprocess per run: async workers are forked, and a fork of a process that already holds an
    # EGL context (this test session, after the in-process Hopper runs) can hang in the child
    env = {**os.environ, "MUJOCO_GL": "egl"}
    runs = {}
    for capture in (False, True):  # 2 envs on a navigation task: async workers, env 0 renders in its own process
        out = tmp_path / str(capture)
        command = [sys.executable, "baselines/cpo.py", "--env-id", "SafetyCarCircle1-v0", "--total-timesteps", "120",
                   "--steps-per-epoch", "60", "--num-envs", "2", "--output-dir", str(out)]
        result = subprocess.run(command + (["--capture-video"] if capture else []), cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        (runs[capture],) = out.iterdir()
    (video,) = (runs[True] / "videos").glob("*.mp4")  # episode 0, cut when the envs close
    frames = assert_real_video(video, load_script(ROOT / "baselines" / "cpo.py").VIDEO_SIZE)
    assert frames.shape[0] >= 61  # env 0 ran 60 steps after its reset frame (the decoder may repeat the last)
    assert progress_without_timing(runs[True]) == progress_without_timing(runs[False])


@pytest.mark.parametrize("command", [["strpo.py", "--capture-video"], ["baselines/ppo_lag.py", "--capture-video"],
                                     ["robustness_attack.py", "--checkpoints", "unsafe_policies/SafetyHopperVelocity-v1.pt", "--video", "1"]],
                         ids=["strpo", "ppo_lag", "robustness_attack"])
def test_a_missing_renderer_fails_early_with_a_one_line_error(command):
    # OSMesa is not installed here: with MUJOCO_GL=osmesa even `import mujoco` fails
    env = {**os.environ, "MUJOCO_GL": "osmesa"}
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: cannot record video with MUJOCO_GL=osmesa")
    assert "set MUJOCO_GL=egl" in lines[0]


@pytest.fixture(scope="module")
def rob():
    return load_module(ROOT / "robustness_attack.py", "robustness_attack")


def test_robustness_video_writes_one_video_per_checkpoint_and_rate_and_leaves_the_csv_unchanged(egl, hopper_runs, rob,
                                                                                             tmp_path):
    _, runs = hopper_runs
    first = tmp_path / "first.pt"
    shutil.copy(runs[False] / "unsafe_cvar_trpo.pt", first)
    second = tmp_path / "second.pt"
    shutil.copy(runs[False] / "unsafe_cvar_trpo.pt", second)  # same algo: the names must still differ
    outs = {}
    for video in (0, 1):
        args = rob.Args(checkpoints=(str(first), str(second)), rates=(0.0, 1.0), episodes=2, num_envs=2, video=video,
                        out=str(tmp_path / f"video{video}"))
        outs[video] = Path(rob.main(args))
    videos = sorted(p.name for p in (outs[1] / "videos").glob("*"))
    assert [re.sub(r"__cost.*", "", v) for v in videos] == sorted(
        f"cvar_trpo_unsafe-{stem}__SafetyHopperVelocity-v1__alpha{rate}__ep0" for stem in ("first", "second")
        for rate in ("0", "1"))
    assert_real_video(outs[1] / "videos" / videos[0], rob.VIDEO_SIZE)
    assert (outs[1] / "robustness.csv").read_text() == (outs[0] / "robustness.csv").read_text()
    assert (outs[1] / "episodes.csv").read_text() == (outs[0] / "episodes.csv").read_text()


def test_at_rate_0_the_video_is_env_0s_csv_episode_with_its_cost_and_reward_in_the_name(tmp_path):
    """SafetyCarCircle1-v0 with the shipped pi_unsafe, 2 envs: env 0's first episode costs 0 in the CSV;
    replayed on a separate one-env renderer (the old --video) it cost 100, as the policy's 1-row batch
    rounds differently. A subprocess: async workers are forked (see the navigation test above); its stderr
    also shows that the renderers are freed before exit (no EGLError tracebacks)."""
    out = tmp_path / "attack"
    result = subprocess.run([sys.executable, "robustness_attack.py", "--checkpoints", "unsafe_policies/SafetyCarCircle1-v0.pt",
                             "--rates", "0", "--episodes", "2", "--num-envs", "2", "--video", "1", "--out", str(out)],
                            cwd=ROOT, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (video,) = (out / "videos").glob("*.mp4")
    match = re.fullmatch(r"cvar_trpo_unsafe__SafetyCarCircle1-v0__alpha0__ep0__cost(\S+)__reward(\S+)\.mp4", video.name)
    assert match, video.name
    with open(out / "episodes.csv") as f:
        env0 = next(row for row in csv.DictReader(f) if row["env_index"] == "0")  # env 0's first episode
    assert match[1] == f"{float(env0['cost']):g}" and match[2] == f"{float(env0['reward']):.2f}"
    # the reset frame and every step (moviepy's encoder may add one more at the end)
    assert decode(video).shape[0] in (int(env0["length"]) + 1, int(env0["length"]) + 2)


def docs_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "watch.md").read_text(), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_docs_snippet_is_watch_policies_loader_and_acts_like_the_repository(rob, monkeypatch, capsys):
    watch = load_module(ROOT / "benchmark" / "watch_policies.py", "watch_policies")
    assert inspect.getsource(watch.load_policy) in docs_snippet()  # the tested function is the documented one
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(docs_snippet(), "docs/watch.md", "exec"), namespace)
    assert "cvar_trpo_unsafe on SafetyHopperVelocity-v1: episode reward" in capsys.readouterr().out
    # its actions are the repository's mean actions on the checkpoint's own normaliser, bit for bit
    actor, obs_rms, _ = rob.load_checkpoint(ROOT / "unsafe_policies" / "SafetyHopperVelocity-v1.pt")
    obs = np.random.default_rng(0).normal(0, 3, size=(64, 11))
    with torch.no_grad():
        expected = actor.mean_net(obs_rms.normalize(torch.as_tensor(obs, dtype=torch.float32))).numpy()
    assert np.array_equal(namespace["act"](obs), expected)
    # and its episode is robustness_attack's plain evaluation (rate 0) of the same seed
    result = rob.evaluate(actor, obs_rms, "SafetyHopperVelocity-v1", 0.0, 1, num_envs=1, seed=0)
    # same episode: same cost; the reward differs in the last digits (a 1-D observation vs a 1-row batch)
    assert namespace["episode_cost"] == result["cost"][0]
    assert namespace["episode_reward"] == pytest.approx(result["reward"][0], rel=1e-9)


def test_the_docs_snippet_in_a_fresh_process_prints_its_episode_and_no_gymnasium_robotics_notice():
    """Run as a user would (python -c, from the repository root): the notice that gymnasium-robotics prints
    at import (twice) is silenced as the scripts silence it."""
    result = subprocess.run([sys.executable, "-c", docs_snippet()], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "AdroitHand" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.stdout.startswith("cvar_trpo_unsafe on SafetyHopperVelocity-v1: episode reward")


def test_watch_policies_draws_a_labelled_strip_and_gif_and_prints_each_episode_cost(egl, tmp_path, capsys):
    from PIL import Image

    watch = load_module(ROOT / "benchmark" / "watch_policies.py", "watch_policies")
    ckpt = str(ROOT / "unsafe_policies" / "SafetyHopperVelocity-v1.pt")
    args = watch.Args(checkpoints=(ckpt,), labels=("pi_unsafe",), env_id="SafetyHopperVelocity-v1", steps=40, frames=4,
                      seed=1, gif=True, out=str(tmp_path / "strip.png"))
    png = watch.main(args)
    out = capsys.readouterr().out
    match = re.search(r"pi_unsafe: episode cost (\S+), reward (\S+), (\d+) steps", out)
    assert match and int(match.group(3)) == 40
    with Image.open(png) as image:
        assert image.size[0] > 4 * 150 and image.size[1] > 150
    with Image.open(png.with_suffix(".gif")) as gif:
        assert gif.n_frames == 40 // watch.GIF_STRIDE + 1 and gif.size == (watch.FRAME_SIZE, watch.FRAME_SIZE)
    episode = watch.run_episode(watch.load_policy(ckpt)[0], "SafetyHopperVelocity-v1", 40, 4, 1, gif=False)
    assert [shot["t"] for shot in episode["strip"]] == [0, 13, 27, 40]
    assert f"{episode['cost']:g}" == match.group(1)  # the printed cost is the episode's, replayed exactly


def test_watch_policies_rejects_mismatched_labels_with_one_line():
    watch = load_module(ROOT / "benchmark" / "watch_policies.py", "watch_policies")
    ckpt = str(ROOT / "unsafe_policies" / "SafetyHopperVelocity-v1.pt")
    with pytest.raises(SystemExit, match="error: 2 --labels for 1 --checkpoints"):
        watch.main(watch.Args(checkpoints=(ckpt,), labels=("a", "b")))


@pytest.mark.parametrize("script,video", [("strpo.py", True), ("strpo.py", False), ("baselines/ppo_lag.py", False)],
                         ids=["strpo-video", "strpo", "ppo_lag"])
def test_with_mujoco_gl_egl_a_fresh_process_loads_triton_before_mujoco_and_does_not_crash(script, video, tmp_path):
    """With MUJOCO_GL=egl, `import mujoco` loads EGL, and libtriton (which torch's optimisers load lazily)
    segfaults when loaded after it. The scripts import torch._dynamo (triton) first only then: at import
    when MUJOCO_GL=egl is set, in check_renderer when recording. A fresh process (this test session
    has loaded triton already) trains one epoch. Without the import this exits -11 (checked)."""
    env = {**os.environ, "MUJOCO_GL": "egl"}
    result = subprocess.run([sys.executable, script, "--env-id", "SafetyHopperVelocity-v1", "--num-envs", "1",
                             "--steps-per-epoch", "1000", "--total-timesteps", "1000", "--output-dir", str(tmp_path)]
                            + (["--capture-video"] if video else []), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    (run_dir,) = tmp_path.iterdir()
    assert bool(list((run_dir / "videos").glob("*.mp4"))) == video


def test_every_script_loads_triton_first_when_mujoco_gl_is_egl():
    for path in [*SCRIPTS, ROOT / "robustness_attack.py"]:
        head = path.read_text().split("\ndef ")[0]
        assert 'if os.environ.get("MUJOCO_GL") == "egl":' in head and "import torch._dynamo" in head, path.name
