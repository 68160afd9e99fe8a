"""Random-action attack sweep over saved policies (paper appendix D, Figures 13-14).

Paper: Rahman et al., "Safe, Trust Region Policy Optimization for Constrained RL", appendix D.
Every trained policy is evaluated under a *random-action attack*: at each step, independently for
each environment, with probability alpha (the attack rate) the executed action is replaced by a
uniform sample from the action box,

    a_exec = u ~ U[low, high]                  with probability alpha
    a_exec = clip(mu_theta(s), low, high)      otherwise (the deterministic mean action),

for alpha in {0.0, 0.1, ..., 1.0}, and the mean episode reward and cost are plotted against alpha,
one line per algorithm. Any checkpoint of this repository can be evaluated (every script writes
the common format of SPEC 3; `algo` and `env_id` are read from the checkpoint), several in one call
as long as they share one env.

Outputs in `--out` (default runs/robustness/{env_id}__{unix_time}/):
- robustness.csv: one row per checkpoint x rate, with mean/std/min/max of the episode reward and
  episode cost over exactly `--episodes` complete episodes, the source of both figures;
- episodes.csv: every kept episode (reward, cost, length, env index), for other statistics;
- reward_vs_alpha.png, cost_vs_alpha.png: one line per checkpoint with a +-1 std band (the spread
  of episodes, not a confidence interval), like the paper's Figures 13-14; `--plot-only CSV`
  redraws them from a CSV;
- config.json: the flags, the git commit of this file's repository and whether it was dirty (null without git);
- with `--video K`: videos/{algo}__{env_id}__alpha{rate}__ep{i}__cost{C}__reward{R}.mp4, the first K
  episodes of env 0 per checkpoint and rate (alpha 0 is plain evaluation), from the overview camera
  on navigation tasks and the tracking camera on velocity tasks.

Choices this file makes where the paper is silent:
- Episodes per rate: 100 by default, not the paper's 1000 (`--episodes 1000` reproduces it). 100
  episodes put the standard error of each mean at a tenth of the episode spread, enough to order
  the curves, and an 11-rate sweep then costs 1.1M steps per checkpoint at most (minutes on
  Hopper/Ant; about half an hour on CarGoal1, whose resets are slow) instead of 11M.
- Exactly `--episodes` episodes with vector envs: env i runs a fixed quota of
  episodes // num_envs (+1 for the first episodes % num_envs envs) and its later episodes are
  discarded. The quota is fixed before the run, so the kept episodes do not depend on timing and
  are not biased towards short episodes (keeping "the first N to finish" would favour them).
- Common random numbers: every rate and every checkpoint starts from the same env reset seeds
  (`--seed`, env i gets seed + i), and the attack stream (attack coin flips and random actions,
  a numpy Generator) is seeded from (seed, rate) alone, so differences between curves come from
  the policies and the rate, not from luck, and `--rates 0.5` alone reproduces the 0.5 row of a
  full sweep. The random action is drawn for every env at every step, attacked or not, so the
  stream is the same whatever the policy does.
- `--stochastic` samples pi(.|s) with a torch Generator seeded the same way; the default is the
  paper's deterministic mean action.
- The std columns are population std (numpy's default, ddof=0) over the kept episodes.
- Videos film the CSV's own episodes: with `--video K`, env 0 of the evaluation envs renders and
  records its first K episodes, which are episodes.csv's first K rows of env_index 0 for that
  checkpoint and rate, and each file name carries that row's cost and reward (C and R above).
  Rendering does not change observations or dynamics (tests/test_envs.py), so the CSV is the same
  with or without `--video`. (A separate one-env replay would not show them: a policy called on one
  row instead of num_envs rounds differently, and on CarCircle1 that turned an episode of cost 0
  into one of cost 100.) Rendering costs about 50-90 ms a frame here (software EGL): a 500-step
  CarCircle1 episode takes about 40 s to record.

Usage:
    python robustness_attack.py --checkpoints runs/*/ppo_lag.pt runs/*/strpo.pt
    python robustness_attack.py --checkpoints a.pt b.pt --episodes 1000    # the paper's protocol
    python robustness_attack.py --checkpoints a.pt --rates 0                # plain evaluation
    MUJOCO_GL=egl python robustness_attack.py --checkpoints a.pt b.pt --rates 0 0.5 --video 2
    python robustness_attack.py --plot-only runs/robustness/SafetyHopperVelocity-v1__1700000000/robustness.csv
"""
from __future__ import annotations

import csv
import difflib
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, Optional

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import tyro  # noqa: E402

try:  # gymnasium-robotics prints a notice about its Adroit hand tasks at import; these tasks are not those
    import farama_notifications

    farama_notifications.notifications.pop("gymnasium_robotics", None)
except ImportError:
    pass
if os.environ.get("MUJOCO_GL") == "egl":  # MuJoCo loads EGL when imported; libtriton, which torch's optimisers
    import torch._dynamo  # noqa: F401  # load lazily, segfaults when loaded after it: load it first

CHECKPOINT_FORMAT_VERSION = 1
OBS_CLIP = 10.0  # normalised observations are clipped to [-10, 10]
LOG_STD_INIT = -0.5  # initial policy std exp(-0.5) ~ 0.6 on a [-1, 1] action box
NAVIGATION_TASKS = ("Goal", "Button", "Push", "Circle", "Race", "FormulaOne")
PAPER_RATES = tuple(round(0.1 * i, 1) for i in range(11))  # alpha in {0.0, 0.1, ..., 1.0}
DEFAULT_COST_LIMIT = 25.0  # SPEC 3; drawn on the cost figure when a checkpoint does not state one
TORCH_THREADS = 1  # a forward pass on a few rows gains nothing from threads; 2+ threads spin-wait when
# envs share the cores (measured here: 0.9 ms instead of 20 us per linear layer on a busy machine)
RATE_KEY_SCALE = 1_000_000  # the rate enters the seed as round(rate * 1e6): 0.1 and 0.1000000001 agree
CSV_NAME, EPISODES_NAME = "robustness.csv", "episodes.csv"
VIDEO_DIR = "videos"  # --video K writes {out}/videos/{algo}__{env_id}__alpha{rate}__ep{i}__cost{C}__reward{R}.mp4
VIDEO_SIZE = 256  # width and height in pixels of recorded frames
REWARD_PNG, COST_PNG = "reward_vs_alpha.png", "cost_vs_alpha.png"
CSV_COLUMNS = ("checkpoint", "algo", "env_id", "rate", "episodes", "reward_mean", "reward_std", "reward_min",
               "reward_max", "cost_mean", "cost_std", "cost_min", "cost_max", "length_mean", "cost_limit", "seed",
               "deterministic")


@dataclass
class Args:
    checkpoints: tuple[str, ...] = ()
    """checkpoint files (.pt, any algorithm of this repo) to attack; all must share one env id"""
    plot_only: Optional[str] = None
    """redraw the two figures from this robustness.csv instead of evaluating (into --out, default its folder)"""
    out: Optional[str] = None
    """output folder; default runs/robustness/{env_id}__{unix_time}"""
    rates: tuple[float, ...] = PAPER_RATES
    """attack rates alpha in [0, 1]: per step and env, the probability that the action is replaced"""
    episodes: int = 100
    """complete episodes per rate and checkpoint. 100 (paper: 1000) puts each mean's standard error at a
    tenth of the episode spread for a tenth of the cost; pass --episodes 1000 for the paper's protocol"""
    num_envs: int = 4
    """number of parallel environments used for evaluation"""
    vector_mode: Literal["auto", "sync", "async"] = "auto"
    """vector env kind; auto = async (subprocesses) for navigation tasks, sync for velocity tasks"""
    seed: int = 1
    """seed of the env resets (env i gets seed + i) and, with the rate, of the attack and policy noise"""
    deterministic: bool = True
    """policy acts with its mean action (the paper's protocol); --no-deterministic (or its synonym
    --stochastic) samples from the Gaussian policy instead"""
    video: int = 0
    """record env 0's first K episodes per checkpoint and rate, the CSV's own, to
    {out}/videos/{algo}__{env_id}__alpha{rate}__ep{i}__cost{C}__reward{R}.mp4 with that episode's episodes.csv cost
    and reward (the CSV is unchanged; needs a renderer: MUJOCO_GL=egl when headless)"""


# ----------------------------------------------------------------------------------------------
# Argument checks and environments
# ----------------------------------------------------------------------------------------------
def safety_env_ids() -> list[str]:
    import gymnasium
    import safety_gymnasium  # noqa: F401  (registers the Safety* ids)

    return sorted(k for k in gymnasium.envs.registry.keys() if k.startswith("Safety"))


def validate_args(args: Args) -> None:
    """One-line errors for bad input, raised before anything is built."""
    if args.plot_only is not None:
        if args.checkpoints:
            raise SystemExit("error: --plot-only redraws figures from a CSV; do not combine it with --checkpoints")
        if not Path(args.plot_only).is_file():
            raise SystemExit(f"error: --plot-only file not found: {args.plot_only}")
        return
    if not args.checkpoints:
        raise SystemExit("error: give --checkpoints PATH [PATH ...] (or --plot-only CSV to redraw figures)")
    if not args.rates:
        raise SystemExit("error: --rates needs at least one attack rate in [0, 1]")
    bad = [r for r in args.rates if not (math.isfinite(r) and 0.0 <= r <= 1.0)]
    if bad:
        raise SystemExit(f"error: attack rates must lie in [0, 1], got {bad}")
    keys = [rate_key(r) for r in args.rates]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"error: --rates has duplicates: {list(args.rates)}")
    for name in ("episodes", "num_envs"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    dupes = [p for p, n in Counter(str(Path(p).resolve()) for p in args.checkpoints).items() if n > 1]
    if dupes:
        raise SystemExit(f"error: checkpoint given twice: {', '.join(dupes)}")
    if args.video < 0:
        raise SystemExit(f"error: --video must be 0 (off) or a number of episodes, got {args.video}")
    env0_quota = episode_quotas(args.episodes, min(args.num_envs, args.episodes))[0]
    if args.video > env0_quota:
        raise SystemExit(f"error: --video {args.video} films env 0's episodes of the CSV, and env 0 plays {env0_quota} of "
                         f"the {args.episodes}; lower --video, raise --episodes or lower --num-envs")
    if args.video:
        check_renderer()


def check_renderer() -> None:
    """Recording needs an off-screen renderer: a child process renders one frame with MUJOCO_GL now (no
    display makes glfw abort the whole process, a missing OSMesa fails `import mujoco`: only a child
    survives to report it). Triton first: loaded after MuJoCo's EGL context, it segfaults."""
    import torch._dynamo  # noqa: F401
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless and unset: EGL is the renderer that works without a display
    probe = "import mujoco; mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>')).render()"  # one off-screen frame
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1][:150]
    require(result.returncode == 0, f"cannot record video with MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')} ({reason}); "
            "set MUJOCO_GL=egl (headless) or run with a display")


def require(condition: bool, message: str) -> None:
    """A one-line error for bad input."""
    if not condition:
        raise SystemExit(f"error: {message}")


def check_env_id(env_id: str) -> None:
    ids = safety_env_ids()
    if env_id not in ids:
        close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See safety_gymnasium's task list."
        raise SystemExit(f"error: unknown env id '{env_id}'.{hint}")


def is_navigation_task(env_id: str) -> bool:
    return "Velocity" not in env_id and any(t in env_id for t in NAVIGATION_TASKS)


def without_skybox(env):
    """A navigation env whose resets compile the MuJoCo world without its skybox texture (most of a reset's time,
    seen only in rendered frames): raw CarCircle1 runs 2.9-4.2x faster, same episodes (tests/test_envs.py)."""
    import gymnasium
    import mujoco
    import safety_gymnasium.world as world

    if not hasattr(env.unwrapped, "task") or env.unwrapped.render_mode is not None or env.unwrapped.task.observe_vision:
        return env  # rendering, vision and velocity envs come back unchanged
    skybox = re.compile(r'<texture\b[^>]*\btype="skybox"[^>]*?(?:/>|>\s*</texture>)')
    model = SimpleNamespace(from_xml_string=lambda xml, *a, **kw: mujoco.MjModel.from_xml_string(skybox.sub("", xml), *a, **kw))
    patched = SimpleNamespace(**{**vars(mujoco), "MjModel": model})  # safety_gymnasium.world's `mujoco` during one reset

    class WithoutSkybox(gymnasium.Wrapper):
        def reset(self, **kwargs):  # this env's resets only: other envs of the process keep theirs
            world.mujoco = patched
            try:
                return self.env.reset(**kwargs)
            finally:
                world.mujoco = mujoco

    return WithoutSkybox(env)


def make_env(env_id: str):
    def thunk():
        import safety_gymnasium

        return without_skybox(safety_gymnasium.make(env_id))

    return thunk


def make_vector_env(env_id: str, num_envs: int, vector_mode: str, video_dir: Optional[Path] = None,
                    video_name: str = "", video_episodes: int = 0):
    """Safety-Gymnasium vector env; async pays for slow navigation tasks, sync for velocity. With
    video_episodes, env 0 records its first video_episodes episodes (make_video_env)."""
    import safety_gymnasium

    use_async = vector_mode == "async" or (vector_mode == "auto" and is_navigation_task(env_id) and num_envs > 1)
    fns = [make_video_env(env_id, video_dir, video_name, video_episodes) if i == 0 and video_episodes
           else make_env(env_id) for i in range(num_envs)]
    if use_async:
        return safety_gymnasium.vector.SafetyAsyncVectorEnv(fns)
    return safety_gymnasium.vector.SafetySyncVectorEnv(fns)


def make_video_env(env_id: str, video_dir: Path, name_prefix: str, episodes: int):
    """An env that records its first `episodes` episodes to video_dir/{name_prefix}-episode-{i}.mp4:
    navigation tasks from the fixed overview camera (the whole arena in view), velocity tasks from
    MuJoCo's default "track" camera (follows the robot). render_mode only adds rendering:
    observations and dynamics are unchanged (tested)."""
    import gymnasium
    import safety_gymnasium

    class KeepRendererOpen(gymnasium.Wrapper):
        """gymnasium 0.28's recorder closes the env after each video, and a velocity task's MuJoCo
        renderer then draws black frames from its freed context: ignore that close (free_renderers
        frees it when the evaluation is over)."""

        def close(self):
            pass

    def thunk():
        camera = {"camera_name": "fixedfar"} if is_navigation_task(env_id) else {}
        env = safety_gymnasium.make(env_id, render_mode="rgb_array", width=VIDEO_SIZE, height=VIDEO_SIZE, **camera)
        # RecordVideo speaks gymnasium's 5-tuple step: safety_gymnasium converts around it
        return safety_gymnasium.wrappers.with_gymnasium_wrappers(env, KeepRendererOpen, lambda e: gymnasium.wrappers.RecordVideo(
            e, str(video_dir), episode_trigger=lambda episode: episode < episodes, name_prefix=name_prefix,
            disable_logger=True))

    return thunk


def free_renderers(envs) -> None:
    """Close a vector env and free the MuJoCo renderers of its in-process envs now: left to the
    garbage collector they are freed at interpreter exit, after EGL has shut down, which prints
    `Exception ignored ... EGLError` tracebacks (async workers exit without finalising anything)."""
    for env in getattr(envs, "envs", []):
        task = getattr(env.unwrapped, "task", None)  # a navigation task keeps its renderers here, never freed
        if task is not None:
            for viewer in task._viewers.values():
                viewer.close()
            task._viewers.clear()
        env.unwrapped.close()  # a velocity task: gymnasium's MujocoEnv.close frees its renderer
    envs.close()


def evaluate_with_videos(actor: Actor, obs_rms: RunningMeanStd, env_id: str, rate: float, args: Args, num_envs: int,
                         video_dir: Path, name: str, progress=None) -> tuple[dict, list[Path]]:
    """evaluate() on fresh envs whose env 0 films its first args.video episodes, which are the CSV's:
    each video is renamed {name}__ep{i}__cost{C}__reward{R}.mp4 after its row of the result."""
    video_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # one folder for all videos is intended: RecordVideo would warn every time
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
        envs = make_vector_env(env_id, num_envs, args.vector_mode, video_dir, name, args.video)
    try:
        result = evaluate(actor, obs_rms, env_id, rate, args.episodes, seed=args.seed,
                          deterministic=args.deterministic, envs=envs, progress=progress)
    finally:
        free_renderers(envs)
    paths = []
    for i, row in enumerate(np.flatnonzero(result["env_index"] == 0)[:args.video]):
        path = video_dir / f"{name}__ep{i}__cost{result['cost'][row]:g}__reward{result['reward'][row]:.2f}.mp4"
        os.replace(video_dir / f"{name}-episode-{i}.mp4", path)  # RecordVideo's name; drop its metadata file
        (video_dir / f"{name}-episode-{i}.meta.json").unlink(missing_ok=True)
        paths.append(path)
    return result, paths


# ----------------------------------------------------------------------------------------------
# Agent: observation normaliser and Gaussian actor (the common checkpoint format, SPEC 3)
# ----------------------------------------------------------------------------------------------
class RunningMeanStd:
    """Running mean/variance over observations, merged batch by batch (Chan et al. parallel
    algorithm), so the result equals numpy's mean/var over all data seen."""

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4):
        self.mean, self.var, self.count = np.zeros(shape, np.float64), np.ones(shape, np.float64), epsilon
        self._refresh()

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64).reshape(-1, *self.mean.shape)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var, self.count = m2 / total, total
        self._refresh()

    def _refresh(self) -> None:
        self._mean_t = torch.as_tensor(self.mean, dtype=torch.float32)
        self._std_t = torch.as_tensor(np.sqrt(self.var + 1e-8), dtype=torch.float32)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp((obs - self._mean_t) / self._std_t, -OBS_CLIP, OBS_CLIP)

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var = np.asarray(state["mean"], np.float64).copy(), np.asarray(state["var"], np.float64).copy()
        self.count = float(state["count"])
        self._refresh()


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(in_dim: int, hidden_sizes: tuple[int, ...], out_dim: int, out_std: float) -> nn.Sequential:
    layers, last = [], in_dim
    for h in hidden_sizes:
        layers += [layer_init(nn.Linear(last, h)), nn.Tanh()]
        last = h
    layers.append(layer_init(nn.Linear(last, out_dim), std=out_std))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Gaussian policy: tanh MLP mean, state-independent log-std (the common checkpoint format)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden_sizes, act_dim, out_std=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), LOG_STD_INIT))

    def forward(self, norm_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean_net(norm_obs), self.log_std.expand(norm_obs.shape[0], -1)

    def distribution(self, norm_obs: torch.Tensor) -> torch.distributions.Normal:
        mean, log_std = self(norm_obs)
        return torch.distributions.Normal(mean, log_std.exp())


def load_checkpoint(path: str | Path, env_id: Optional[str] = None, obs_dim: Optional[int] = None,
                    act_dim: Optional[int] = None) -> tuple[Actor, RunningMeanStd, dict]:
    """Any checkpoint of the common format; one-line errors for a missing, corrupt or mismatched file (a
    different env id with matching dimensions only warns)."""
    require(Path(path).is_file(), f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any unpickling failure means the file is not a checkpoint
        raise SystemExit(f"error: {path} is not a readable checkpoint ({type(exc).__name__}); re-train or re-download it")
    keys = ("format_version", "algo", "env_id", "obs_dim", "act_dim", "hidden_sizes", "actor_state_dict", "obs_rms")
    require(isinstance(ckpt, dict) and all(k in ckpt for k in keys) and ckpt["format_version"] == CHECKPOINT_FORMAT_VERSION,
            f"{path} is not a checkpoint of this repository (format {CHECKPOINT_FORMAT_VERSION}: {', '.join(keys)})")
    require(obs_dim in (None, ckpt["obs_dim"]) and act_dim in (None, ckpt["act_dim"]),
            f"{path} was trained on {ckpt['env_id']} (obs {ckpt['obs_dim']}, act {ckpt['act_dim']}); this env has obs {obs_dim}, act {act_dim}")
    if env_id is not None and ckpt["env_id"] != env_id:
        print(f"warning: {path} was trained on {ckpt['env_id']}, used here on {env_id} (same dimensions)")
    actor, obs_rms = Actor(ckpt["obs_dim"], ckpt["act_dim"], tuple(ckpt["hidden_sizes"])), RunningMeanStd((ckpt["obs_dim"],))
    actor.load_state_dict(ckpt["actor_state_dict"])
    obs_rms.load_state_dict(ckpt["obs_rms"])
    return actor, obs_rms, ckpt


# ----------------------------------------------------------------------------------------------
# The attack and the evaluation loop
# ----------------------------------------------------------------------------------------------
def rate_key(rate: float) -> int:
    return int(round(rate * RATE_KEY_SCALE))


def attack_streams(seed: int, rate: float) -> tuple[np.random.Generator, torch.Generator]:
    """The attack's numpy Generator and the policy-noise torch Generator, seeded from (seed, rate)
    only: every checkpoint meets the same attack at a given rate (common random numbers)."""
    seq = np.random.SeedSequence([seed, rate_key(rate)])
    attack_seq, noise_seq = seq.spawn(2)
    policy_noise = torch.Generator().manual_seed(int(noise_seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(attack_seq), policy_noise


def attack_actions(policy_actions: np.ndarray, rng: np.random.Generator, rate: float, low: np.ndarray,
                   high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The random-action attack (appendix D) on a [num_envs, act_dim] batch: independently per
    env, with probability `rate` the executed action is uniform on the box [low, high], otherwise
    the policy's action clipped to the box. Returns (executed actions, attacked mask [num_envs])."""
    attacked = rng.random(policy_actions.shape[0]) < rate  # U[0, 1) < rate: never at 0, always at 1
    # drawn for every env, attacked or not, so the stream does not depend on the coin flips
    random_actions = rng.uniform(low, high, size=policy_actions.shape)
    executed = np.where(attacked[:, None], random_actions, np.clip(policy_actions, low, high))
    return executed, attacked


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env contributes: fixed before the run, so the kept episodes do not depend on
    timing and are not biased towards short ones."""
    return np.array([episodes // num_envs + (i < episodes % num_envs) for i in range(num_envs)], np.int64)


def evaluate(actor: Actor, obs_rms: RunningMeanStd, env_id: str, rate: float, episodes: int, num_envs: int = 4,
             vector_mode: str = "auto", seed: int = 1, deterministic: bool = True, envs=None,
             record_actions: bool = False, progress=None) -> dict:
    """Run exactly `episodes` complete episodes of `actor` under the attack at `rate`.

    Returns a dict of arrays over the kept episodes, ordered by env then by episode: reward, cost,
    length, env_index; with record_actions also executed [T, num_envs, act_dim] and attacked
    [T, num_envs] for every step taken. `envs` reuses an open vector env (its size sets num_envs);
    otherwise one is made and closed here. `progress(done, total)` is called as episodes finish."""
    own_envs = envs is None
    if own_envs:
        check_env_id(env_id)
        envs = make_vector_env(env_id, num_envs, vector_mode)
    try:
        n = envs.num_envs
        low = envs.single_action_space.low.astype(np.float64)
        high = envs.single_action_space.high.astype(np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise SystemExit(f"error: {env_id} has an unbounded action box; a uniform attack is undefined")
        quota = episode_quotas(episodes, n)
        rng, policy_noise = attack_streams(seed, rate)
        std = actor.log_std.detach().exp()

        obs, _ = envs.reset(seed=seed)  # env i is seeded with seed + i; autoresets continue its stream
        ep_ret, ep_cost, ep_len = np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
        finished = np.zeros(n, np.int64)
        kept = [[] for _ in range(n)]  # per env: (reward, cost, length) of its first quota[i] episodes
        executed_log, attacked_log = [], []
        while (finished < quota).any():
            # the policy is called once per step for all envs
            with torch.no_grad():
                action = actor.mean_net(obs_rms.normalize(torch.as_tensor(obs, dtype=torch.float32)))
                if not deterministic:
                    action = action + std * torch.randn(action.shape, generator=policy_noise)
            executed, attacked = attack_actions(action.numpy().astype(np.float64), rng, rate, low, high)
            if record_actions:
                executed_log.append(executed)
                attacked_log.append(attacked)
            obs, reward, cost, terminated, truncated, _ = envs.step(executed)
            ep_ret += reward
            ep_cost += cost
            ep_len += 1
            done = np.logical_or(terminated, truncated)
            if done.any():
                for i in np.flatnonzero(done):
                    if finished[i] < quota[i]:
                        kept[i].append((ep_ret[i], ep_cost[i], ep_len[i]))
                    finished[i] += 1
                ep_ret[done], ep_cost[done], ep_len[done] = 0.0, 0.0, 0
                if progress is not None:
                    progress(int(np.minimum(finished, quota).sum()), episodes)
    finally:
        if own_envs:
            envs.close()

    rows = [(r, c, l, i) for i in range(n) for (r, c, l) in kept[i]]
    result = {
        "reward": np.array([r[0] for r in rows], np.float64),
        "cost": np.array([r[1] for r in rows], np.float64),
        "length": np.array([r[2] for r in rows], np.int64),
        "env_index": np.array([r[3] for r in rows], np.int64),
    }
    if record_actions:
        result["executed"] = np.stack(executed_log)
        result["attacked"] = np.stack(attacked_log)
    return result


def summarize(result: dict) -> dict:
    """mean, std (ddof=0), min, max of episode reward and cost over the kept episodes."""
    out = {"episodes": int(result["reward"].shape[0])}
    for name in ("reward", "cost"):
        x = result[name]
        out.update({f"{name}_mean": float(x.mean()), f"{name}_std": float(x.std()),
                    f"{name}_min": float(x.min()), f"{name}_max": float(x.max())})
    out["length_mean"] = float(result["length"].mean())
    return out


# ----------------------------------------------------------------------------------------------
# CSV and figures
# ----------------------------------------------------------------------------------------------
def write_csv(path: str | Path, rows: list[dict], columns: tuple[str, ...] = CSV_COLUMNS) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a robustness.csv with numbers parsed; a one-line error if it is not one."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SystemExit(f"error: {path} is not a robustness CSV (missing columns {missing})")
            rows = list(reader)
        for row in rows:
            for key in CSV_COLUMNS:
                if key in ("checkpoint", "algo", "env_id"):
                    continue
                row[key] = row[key] == "True" if key == "deterministic" else float(row[key])
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path} ({type(exc).__name__}: {exc})")
    if not rows:
        raise SystemExit(f"error: {path} has no rows")
    return rows


def legend_labels(checkpoints: list[str], algos: list[str]) -> dict[str, str]:
    """The algorithm's name; when two checkpoints share it, add the shortest path suffix that
    tells them apart (the file stem, then parent folders)."""
    labels = {}
    for ckpt, algo in zip(checkpoints, algos):
        same = [c for c, a in zip(checkpoints, algos) if a == algo]
        if len(same) == 1:
            labels[ckpt] = algo
            continue
        parts = {c: Path(c).with_suffix("").parts for c in same}
        depth = 1
        while depth < max(map(len, parts.values())) and len({parts[c][-depth:] for c in same}) < len(same):
            depth += 1
        labels[ckpt] = f"{algo} ({'/'.join(parts[ckpt][-depth:])})"
    return labels


def plot(rows: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """reward_vs_alpha.png and cost_vs_alpha.png: one line per checkpoint, +-1 std band (clipped to
    the episodes' min-max range) around the mean."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
    algos = [next(r["algo"] for r in rows if r["checkpoint"] == c) for c in checkpoints]
    labels = legend_labels(checkpoints, algos)
    env_ids = sorted({r["env_id"] for r in rows})
    episodes = sorted({int(r["episodes"]) for r in rows})
    policy = "deterministic" if all(r["deterministic"] for r in rows) else "stochastic"
    limits = {float(r["cost_limit"]) for r in rows}
    budget = f"{episodes[0]} episodes per rate" if len(episodes) == 1 else f"{episodes[0]}-{episodes[-1]} episodes per rate"
    band_alpha = 0.2 if len(checkpoints) <= 3 else 0.1  # many overlapping bands would hide the lines
    paths = []
    for name, ylabel, png in (("reward", "episode reward", REWARD_PNG), ("cost", "episode cost", COST_PNG)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for idx, ckpt in enumerate(checkpoints):
            pts = sorted((r["rate"], r[f"{name}_mean"], r[f"{name}_std"], r[f"{name}_min"], r[f"{name}_max"])
                         for r in rows if r["checkpoint"] == ckpt)
            rate, mean, std, lo, hi = (np.array(v) for v in zip(*pts))
            color = plt.cm.tab10(idx % 10)
            ax.plot(rate, mean, marker="o", markersize=4, color=color, label=labels[ckpt])
            # +-std band clipped to the observed range: a cost band below 0 would show the impossible
            ax.fill_between(rate, np.maximum(mean - std, lo), np.minimum(mean + std, hi), color=color,
                            alpha=band_alpha, linewidth=0)
        if name == "cost":  # the budget each policy was trained for (several if they differ)
            for k, limit in enumerate(sorted(limits)):
                ax.axhline(limit, color="black", linestyle=("--", ":", "-.")[k % 3], linewidth=1,
                           label=f"cost limit d = {limit:g}")
        ax.set_xlabel(r"attack rate $\alpha$ (probability an action is replaced by a uniform random one)")
        ax.set_ylabel(f"{ylabel}: mean, $\\pm$std band (within min-max)")
        ax.set_title(f"{', '.join(env_ids)}: {ylabel} under random-action attack\n{budget}, {policy} policy actions")
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / png, dpi=120)
        plt.close(fig)
        paths.append(out_dir / png)
    return paths[0], paths[1]


# ----------------------------------------------------------------------------------------------
# Sweep
# ----------------------------------------------------------------------------------------------
def main(args: Args) -> Path:
    """Evaluate every checkpoint at every rate (or redraw from a CSV); returns the output folder."""
    validate_args(args)
    if args.plot_only is not None:
        out_dir = Path(args.out) if args.out else Path(args.plot_only).parent
        reward_png, cost_png = plot(read_csv(args.plot_only), out_dir)
        print(f"wrote {reward_png} and {cost_png}")
        return out_dir

    # load everything first: a bad or mismatched checkpoint fails before any env is built
    loaded = [(str(p), *load_checkpoint(p)) for p in args.checkpoints]
    env_ids = {ckpt["env_id"] for _, _, _, ckpt in loaded}
    if len(env_ids) > 1:
        names = ", ".join(f"{p} ({ckpt['env_id']})" for p, _, _, ckpt in loaded)
        raise SystemExit(f"error: checkpoints are for different envs, run one call per env: {names}")
    env_id = env_ids.pop()
    check_env_id(env_id)
    out_dir = Path(args.out) if args.out else Path("runs") / "robustness" / f"{env_id}__{int(time.time())}"
    out_dir.mkdir(parents=True, exist_ok=True)
    commit, *changes = subprocess.run("git rev-parse --verify -q HEAD && git status --porcelain -uno", shell=True,  # no git: null
                                      cwd=Path(__file__).parent, capture_output=True, text=True).stdout.splitlines() or [None]
    (out_dir / "config.json").write_text(json.dumps({**asdict(args), "git_commit": commit, "git_dirty": commit and bool(changes)}, indent=2))

    torch.manual_seed(args.seed)
    torch.set_num_threads(TORCH_THREADS)
    num_envs = min(args.num_envs, args.episodes)  # an env with a zero quota would only burn steps
    envs = make_vector_env(env_id, num_envs, args.vector_mode)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    for path, _, _, ckpt in loaded:
        if (ckpt["obs_dim"], ckpt["act_dim"]) != (obs_dim, act_dim):
            envs.close()
            raise SystemExit(f"error: {path} has obs {ckpt['obs_dim']}, act {ckpt['act_dim']}; "
                             f"{env_id} has obs {obs_dim}, act {act_dim}")
    policy = "deterministic" if args.deterministic else "stochastic"
    print(f"robustness sweep on {env_id}: {len(loaded)} checkpoint(s) x {len(args.rates)} rates x "
          f"{args.episodes} episodes, {num_envs} {type(envs).__name__}, {policy} policy actions", flush=True)

    rows, episode_rows = [], []
    labels = legend_labels([p for p, _, _, _ in loaded], [str(ckpt["algo"]) for _, _, _, ckpt in loaded])
    start = time.time()
    interactive = sys.stdout.isatty()
    try:
        for path, actor, obs_rms, ckpt in loaded:
            actor.eval()
            algo = str(ckpt["algo"])
            cost_limit = float((ckpt.get("args") or {}).get("cost_limit", DEFAULT_COST_LIMIT))
            tag = f"{Path(path).name} [{algo}]"
            for rate in args.rates:
                rate_start = time.time()

                def show(done: int, total: int) -> None:
                    if interactive:
                        print(f"\r{tag} | alpha {rate:.2f} | episodes {done}/{total} | "
                              f"{time.time() - rate_start:6.1f}s", end="", flush=True)

                # the label tells apart checkpoints of one algorithm; a file name keeps [A-Za-z0-9_.-]
                name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', labels[path]).strip('-')}__{env_id}__alpha{rate:g}"
                if args.video:
                    result, videos = evaluate_with_videos(actor, obs_rms, env_id, rate, args, num_envs,
                                                          out_dir / VIDEO_DIR, name, show)
                else:
                    result = evaluate(actor, obs_rms, env_id, rate, args.episodes, seed=args.seed,
                                      deterministic=args.deterministic, envs=envs, progress=show)
                stats = summarize(result)
                rows.append({"checkpoint": path, "algo": algo, "env_id": env_id, "rate": rate, **stats,
                             "cost_limit": cost_limit, "seed": args.seed, "deterministic": args.deterministic})
                for k in range(stats["episodes"]):
                    episode_rows.append({"checkpoint": path, "algo": algo, "rate": rate,
                                         "env_index": int(result["env_index"][k]), "reward": float(result["reward"][k]),
                                         "cost": float(result["cost"][k]), "length": int(result["length"][k])})
                print(f"{chr(13) if interactive else ''}{tag} | alpha {rate:.2f} | episodes {stats['episodes']}/{args.episodes} | "
                      f"reward {stats['reward_mean']:9.2f} +- {stats['reward_std']:7.2f} | cost {stats['cost_mean']:7.2f} "
                      f"+- {stats['cost_std']:6.2f} | len {stats['length_mean']:6.1f} | {time.time() - rate_start:6.1f}s "
                      f"(total {time.time() - start:6.1f}s)", flush=True)
                if args.video:
                    print(f"{tag} | alpha {rate:.2f} | filmed env 0's first {len(videos)} episode(s): "
                          f"{', '.join(f'{VIDEO_DIR}/{v.name}' for v in videos)}", flush=True)
    finally:
        envs.close()

    csv_path = write_csv(out_dir / CSV_NAME, rows)
    write_csv(out_dir / EPISODES_NAME, episode_rows,
              ("checkpoint", "algo", "rate", "env_index", "reward", "cost", "length"))
    # the figures are drawn from the CSV just written, exactly as --plot-only would draw them
    reward_png, cost_png = plot(read_csv(csv_path), out_dir)
    print(f"wrote {csv_path}, {reward_png.name}, {cost_png.name} in {time.time() - start:.1f}s")
    return out_dir


def parse_cli(argv: Optional[list[str]] = None) -> Args:
    """tyro has no custom name for a bool's negative flag, so `--stochastic` is mapped to
    `--no-deterministic` here (documented on the `deterministic` field)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return tyro.cli(Args, args=["--no-deterministic" if a == "--stochastic" else a for a in argv])


if __name__ == "__main__":
    main(parse_cli())
