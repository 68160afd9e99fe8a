"""Watch saved policies: one seeded episode of each checkpoint, drawn as a frame strip (one row per
policy, labelled with its algorithm and the episode's cost) and, with --gif, an animated GIF with
the policies side by side.

On SafetyCarCircle1-v0 the overview camera ("fixedfar") shows the circle and its two walls: a step
costs 1 when the car is beyond a wall (|x| > 1.125), so the picture shows what the cost curve only
counts. A frame whose step cost is drawn with a red border. Velocity tasks render from MuJoCo's
tracking camera. Every policy acts with its deterministic mean action on its own observation
normaliser (`load_policy`, the same function docs/watch.md shows), from the same env seed.

    MUJOCO_GL=egl python benchmark/watch_policies.py \\
        --checkpoints runs/SafetyCarCircle1-v0__strpo__1__*/strpo.pt unsafe_policies/SafetyCarCircle1-v0.pt \\
        --labels sTRPO pi_unsafe                      # -> runs/watch/SafetyCarCircle1-v0__seed1__{unix_time}.png
    MUJOCO_GL=egl python benchmark/watch_policies.py --checkpoints a.pt b.pt --gif   # also the .gif

The README's picture (docs/strpo_vs_unsafe.png and .gif) is rewritten only when asked, with
`--out docs/strpo_vs_unsafe.png` (the command is in docs/picture.md).

Rendering costs about 50-90 ms a frame on this CPU (software EGL); only the strip's frames (and,
with --gif, every GIF_STRIDE-th step) are rendered, so a 500-step episode takes seconds, not minutes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402,F401  it always renders: load triton before MuJoCo (after MuJoCo's EGL it segfaults)
import tyro  # noqa: E402

try:  # gymnasium-robotics prints a notice about its Adroit hand tasks at import; these tasks are not those
    import farama_notifications

    farama_notifications.notifications.pop("gymnasium_robotics", None)
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
NAVIGATION_TASKS = ("Goal", "Button", "Push", "Circle", "Race", "FormulaOne")
FRAME_SIZE = 256  # width and height in pixels of a rendered frame
GIF_STRIDE = 5  # the GIF shows every 5th step (100 frames for a 500-step episode)
GIF_FRAME_MS = 80  # display time of one GIF frame
TORCH_THREADS = 1  # a forward pass on one row gains nothing from threads


@dataclass
class Args:
    checkpoints: tuple[str, ...] = ()
    """checkpoint files (.pt, any algorithm of this repo), one row of the picture each"""
    labels: tuple[str, ...] = ()
    """row labels, one per checkpoint; default the algorithm stored in each checkpoint"""
    env_id: str = "SafetyCarCircle1-v0"
    """the Safety-Gymnasium task the policies are run on"""
    steps: int = 500
    """steps of the episode to run (stops earlier if the episode ends); CarCircle1 episodes are 500"""
    frames: int = 5
    """frames per policy in the strip, evenly spaced from step 0 to the last step"""
    seed: int = 1
    """env reset seed, the same for every policy"""
    out: Optional[str] = None
    """the frame strip PNG, default runs/watch/{env_id}__seed{seed}__{unix_time}.png; with --gif the GIF goes
    next to it (same name, .gif). `--out docs/strpo_vs_unsafe.png` rewrites the README's picture"""
    gif: bool = False
    """if toggled, also write an animated GIF with the policies side by side"""


def load_policy(path):
    """Any checkpoint of this repository -> (act, ckpt). act(obs) is the deterministic (mean)
    action of the Gaussian policy, computed on the checkpoint's own observation normaliser.
    Needs only torch and numpy (shown in docs/watch.md)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # our own file: it holds numpy arrays
    layers, last = [], ckpt["obs_dim"]
    for size in ckpt["hidden_sizes"]:  # the actor's mean network: Linear + tanh blocks, then a Linear
        layers += [torch.nn.Linear(last, size), torch.nn.Tanh()]
        last = size
    mean_net = torch.nn.Sequential(*layers, torch.nn.Linear(last, ckpt["act_dim"]))
    mean_net.load_state_dict({k[len("mean_net."):]: v for k, v in ckpt["actor_state_dict"].items()
                              if k.startswith("mean_net.")})
    obs_mean = torch.as_tensor(ckpt["obs_rms"]["mean"], dtype=torch.float32)
    obs_std = torch.as_tensor(np.sqrt(ckpt["obs_rms"]["var"] + 1e-8), dtype=torch.float32)

    def act(obs):
        with torch.no_grad():  # normalise and clip to [-10, 10] exactly as in training
            norm_obs = torch.clamp((torch.as_tensor(obs, dtype=torch.float32) - obs_mean) / obs_std, -10.0, 10.0)
            return mean_net(norm_obs).numpy()

    return act, ckpt


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
    if not condition:
        raise SystemExit(f"error: {message}")


def validate_args(args: Args) -> None:
    require(bool(args.checkpoints), "give --checkpoints PATH [PATH ...]")
    require(not args.labels or len(args.labels) == len(args.checkpoints),
            f"{len(args.labels)} --labels for {len(args.checkpoints)} --checkpoints")
    missing = [p for p in args.checkpoints if not Path(p).is_file()]
    require(not missing, f"checkpoint not found: {', '.join(missing)}")
    require(args.steps > 0 and args.frames > 0, f"--steps and --frames must be positive, got {args.steps} and {args.frames}")
    require(args.frames <= args.steps + 1, f"--frames ({args.frames}) cannot exceed --steps + 1 ({args.steps + 1})")
    check_renderer()


def run_episode(act, env_id: str, steps: int, frames: int, seed: int, gif: bool) -> dict:
    """One seeded episode (at most `steps` steps) with the mean action. Played twice: a first pass
    without rendering finds where it ends (mean actions and a seeded reset replay it exactly), so
    the strip's frames are evenly spaced over the episode actually run; only they (and the GIF's
    frames) are rendered in the second pass."""
    import safety_gymnasium

    camera = {"camera_name": "fixedfar"} if "Velocity" not in env_id and any(t in env_id for t in NAVIGATION_TASKS) else {}
    env = safety_gymnasium.make(env_id, render_mode="rgb_array", width=FRAME_SIZE, height=FRAME_SIZE, **camera)
    length = steps
    for rendering in (False, True):
        strip_steps = set(np.linspace(0, length, min(frames, length + 1)).round().astype(int).tolist())
        obs, _ = env.reset(seed=seed)
        strip, gif_frames = [], []
        ep_ret, ep_cost, step_cost, t, ended = 0.0, 0.0, 0.0, 0, False
        while True:
            # the state after t steps; in the strip a red border if step t cost something
            if rendering and (t in strip_steps or (gif and (t % GIF_STRIDE == 0 or t == length))):
                frame = env.render()
                if t in strip_steps:
                    strip.append({"t": t, "frame": frame, "cost_so_far": ep_cost, "step_cost": step_cost})
                if gif and (t % GIF_STRIDE == 0 or t == length):
                    gif_frames.append((frame, ep_cost))
            if ended or t == length:
                break
            action = np.clip(act(obs), env.action_space.low, env.action_space.high)
            obs, reward, step_cost, terminated, truncated, _ = env.step(action)
            ep_ret += float(reward)
            ep_cost += float(step_cost)
            t += 1
            ended = bool(terminated or truncated)
        length = t
    close_env(env)
    return {"reward": ep_ret, "cost": ep_cost, "length": length, "ended": ended, "strip": strip, "gif": gif_frames}


def close_env(env) -> None:
    """Close env and free its MuJoCo renderers now: safety-gymnasium's close() leaves them open, and
    left to the garbage collector they are freed at interpreter exit, after EGL has shut down, which
    prints `Exception ignored ... EGLError` tracebacks."""
    task = getattr(env.unwrapped, "task", None)  # a navigation task keeps its renderers here, never freed
    if task is not None:
        for viewer in task._viewers.values():
            viewer.close()
        task._viewers.clear()
    env.close()  # a velocity task: gymnasium's MujocoEnv.close frees its renderer


def draw_strip(episodes: list[dict], labels: list[str], env_id: str, seed: int, out: Path) -> Path:
    cols = max(len(e["strip"]) for e in episodes)
    fig, axes = plt.subplots(len(episodes), cols, figsize=(2.2 * cols + 1.2, 2.45 * len(episodes)), squeeze=False)
    for row, (ep, label) in enumerate(zip(episodes, labels)):
        for col in range(cols):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(ep["strip"]):
                ax.axis("off")
                continue
            shot = ep["strip"][col]
            ax.imshow(shot["frame"])
            ax.set_title(f"step {shot['t']}, cost so far {shot['cost_so_far']:g}", fontsize=8)
            costly = shot["step_cost"] > 0
            for spine in ax.spines.values():
                spine.set_edgecolor("red" if costly else "black")
                spine.set_linewidth(3 if costly else 0.5)
        cut = "" if ep["ended"] else " (cut)"
        axes[row][0].set_ylabel(f"{label}\nepisode cost {ep['cost']:g}\nreward {ep['reward']:.1f}, {ep['length']} steps{cut}",
                                fontsize=9)
    fig.suptitle(f"{env_id}: one episode per policy (env seed {seed}, mean actions); "
                 f"red border: that step costs", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_gif(episodes: list[dict], labels: list[str], out: Path) -> Path:
    """Policies side by side; an episode that ended early holds its last frame."""
    from PIL import Image, ImageDraw

    length = max(len(e["gif"]) for e in episodes)
    images = []
    for k in range(length):
        tiles = []
        for ep, label in zip(episodes, labels):
            frame, cost = ep["gif"][min(k, len(ep["gif"]) - 1)]
            tile = Image.fromarray(np.ascontiguousarray(frame))
            ImageDraw.Draw(tile).text((4, 4), f"{label}  cost {cost:g}", fill=(255, 255, 255))
            tiles.append(tile)
        canvas = Image.new("RGB", (FRAME_SIZE * len(tiles), FRAME_SIZE))
        for i, tile in enumerate(tiles):
            canvas.paste(tile, (i * FRAME_SIZE, 0))
        images.append(canvas)
    images[0].save(out, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0)
    return out


def main(args: Args) -> Path:
    """Run, draw and print every policy's episode cost; returns the PNG path."""
    validate_args(args)
    torch.set_num_threads(TORCH_THREADS)
    labels, episodes = [], []
    for k, path in enumerate(args.checkpoints):
        act, ckpt = load_policy(path)
        label = args.labels[k] if args.labels else str(ckpt["algo"])
        if ckpt["env_id"] != args.env_id:
            print(f"warning: {path} was trained on {ckpt['env_id']}, shown on {args.env_id}")
        try:
            ep = run_episode(act, args.env_id, args.steps, args.frames, args.seed, args.gif)
        except RuntimeError as exc:  # a checkpoint of another task: shapes do not match the observation
            raise SystemExit(f"error: {path} ({ckpt['env_id']}, obs {ckpt['obs_dim']}) cannot act on {args.env_id}: {exc}")
        print(f"{label}: episode cost {ep['cost']:g}, reward {ep['reward']:.2f}, {ep['length']} steps"
              f"{'' if ep['ended'] else ' (cut at --steps)'}  [{path}]", flush=True)
        labels.append(label)
        episodes.append(ep)
    out = Path(args.out or ROOT / "runs" / "watch" / f"{args.env_id}__seed{args.seed}__{int(time.time())}.png")
    out = draw_strip(episodes, labels, args.env_id, args.seed, out)
    print(f"wrote {out}")
    if args.gif:
        print(f"wrote {write_gif(episodes, labels, out.with_suffix('.gif'))}")
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
