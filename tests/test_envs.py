"""without_skybox: navigation envs whose resets compile the MuJoCo world without the skybox texture
(most of a Safety-Gymnasium reset's time) must see exactly the episodes of the stock env, and leave
every other env alone. Real Safety-Gymnasium envs throughout."""
import mujoco
import numpy as np
import pytest
import safety_gymnasium
import safety_gymnasium.world

from conftest import ROOT, load_script, scripts_with

COPIES = scripts_with("without_skybox")
NAVIGATION = ["SafetyCarCircle1-v0", "SafetyCarGoal1-v0"]


def skyboxes(env) -> int:
    model = env.unwrapped.task.world.model
    return int(np.sum(model.tex_type[:model.ntex] == mujoco.mjtTexture.mjTEXTURE_SKYBOX))


def episodes(env, n: int, seed: int = 0) -> np.ndarray:
    """n whole episodes under a fixed action sequence: every observation, reward, cost and end flag."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        obs, _ = env.reset(seed=seed + k)
        rows.append(obs)
        done = False
        while not done:
            obs, reward, cost, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            rows.append(np.concatenate([obs, [reward, cost, terminated, truncated]]))
            done = terminated or truncated
    return np.concatenate(rows)


def test_every_training_script_and_the_attack_carry_the_helper():
    assert {p.values[0].relative_to(ROOT).as_posix() for p in COPIES} >= {
        "strpo.py", "unsafe_cvar_trpo.py", "robustness_attack.py", "baselines/cpo.py", "baselines/trpo_lag.py",
        "baselines/ppo_lag.py", "baselines/cppo_pid.py", "baselines/rcpo.py", "baselines/pcpo.py",
        "baselines/cup.py", "baselines/focops.py"}


@pytest.mark.parametrize("env_id", NAVIGATION)
def test_without_the_skybox_the_episodes_are_bit_identical(env_id):
    """Two episodes (the second one starts after a reset that recompiles the world)."""
    script = load_script(ROOT / "strpo.py")
    stock = safety_gymnasium.make(env_id)
    fast = script.without_skybox(safety_gymnasium.make(env_id))
    try:
        expected, got = episodes(stock, 2), episodes(fast, 2)
        assert skyboxes(stock) == 1 and skyboxes(fast) == 0
        assert np.array_equal(expected, got)
    finally:
        stock.close()
        fast.close()


@pytest.mark.parametrize("path", COPIES)
def test_the_skybox_goes_for_the_wrapped_env_only(path):
    """The swap of safety_gymnasium.world's mujoco lasts one reset: a stock env reset afterwards in the
    same process (as in a sync vector env next to a rendering env) still compiles its skybox."""
    script = load_script(path)
    fast = script.without_skybox(safety_gymnasium.make("SafetyCarCircle1-v0"))
    stock = safety_gymnasium.make("SafetyCarCircle1-v0")
    try:
        fast.reset(seed=0)
        assert skyboxes(fast) == 0
        assert safety_gymnasium.world.mujoco is mujoco
        stock.reset(seed=0)
        assert skyboxes(stock) == 1
    finally:
        fast.close()
        stock.close()


@pytest.mark.parametrize("path", COPIES)
def test_rendering_and_velocity_envs_are_returned_unchanged(path):
    script = load_script(path)
    for env in (safety_gymnasium.make("SafetyCarCircle1-v0", render_mode="rgb_array"),
                safety_gymnasium.make("SafetyHopperVelocity-v1")):
        try:
            assert script.without_skybox(env) is env
        finally:
            env.close()


@pytest.mark.parametrize("path", COPIES)
def test_make_env_builds_navigation_envs_without_the_skybox(path):
    script = load_script(path)
    env = script.make_env("SafetyCarGoal1-v0")()
    try:
        env.reset(seed=0)
        assert skyboxes(env) == 0
    finally:
        env.close()
