"""Shared test utilities: import any training script of the repo as a module, and list the
scripts that carry a given helper, so that every copy of a repeated helper is tested."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(1)  # as the scripts do: 2+ threads spin-wait when envs share the 2 cores

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([p for p in [ROOT / "strpo.py", ROOT / "unsafe_cvar_trpo.py"] if p.exists()]
                 + sorted((ROOT / "baselines").glob("*.py")))
SCRIPTS = [p for p in SCRIPTS if p.name != "__init__.py"]
HELPER_FILES = [*SCRIPTS, ROOT / "robustness_attack.py"]  # every file whose helper copies the property tests check
_cache = {}


def load_script(path: Path):
    """Import a script file as a module (once per test session)."""
    path = Path(path)
    if path not in _cache:
        name = "script_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _cache[path] = module
    return _cache[path]


def scripts_with(*names: str) -> list:
    """pytest params: every training script (and robustness_attack.py) whose source defines all of `names`."""
    found = []
    for path in HELPER_FILES:
        src = path.read_text()
        if all(f"def {n}(" in src or f"class {n}(" in src or f"class {n}:" in src for n in names):
            found.append(pytest.param(path, id=str(path.relative_to(ROOT))))
    return found


def functional_actor(actor, obs):
    """theta (flat) -> (mean, log_std) of `actor` on `obs` through torch.func, independent of the
    scripts' own flat-parameter helpers; for dense references on tiny actors."""
    from torch.func import functional_call

    names = [k for k, _ in actor.named_parameters()]
    shapes = [p.shape for _, p in actor.named_parameters()]

    def outputs(theta):
        params, i = {}, 0
        for k, shape in zip(names, shapes):
            params[k] = theta[i:i + shape.numel()].reshape(shape)
            i += shape.numel()
        return functional_call(actor, params, (obs,))

    return outputs


def dense_kl_hessian(actor, obs):
    """The Fisher matrix of a tiny actor written out densely: the Hessian at theta_k of
    mean_s KL(pi_k || pi_theta), from the closed-form Gaussian KL (torch autograd, no FVP)."""
    outputs = functional_actor(actor, obs)
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()
    with torch.no_grad():
        mean0, log_std0 = outputs(theta_k)

    def kl(theta):
        mean, log_std = outputs(theta)
        return (log_std - log_std0 + ((2 * log_std0).exp() + (mean0 - mean) ** 2) / (2 * (2 * log_std).exp()) - 0.5).sum(-1).mean()

    return torch.autograd.functional.hessian(kl, theta_k)


def dense_surrogate_gradient(actor, obs, actions, adv):
    """grad at theta_k of the surrogate mean(pi_theta(a|s) / pi_k(a|s) * adv), from the Gaussian
    log-density written out here (torch autograd through torch.func, not the script's code)."""
    import math

    outputs = functional_actor(actor, obs)
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()

    def logp(theta):
        mean, log_std = outputs(theta)
        return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    logp_k = logp(theta_k).detach()
    return torch.autograd.functional.jacobian(lambda theta: (torch.exp(logp(theta) - logp_k) * adv).mean(), theta_k)


def tiny_actor_batch(module, seed: int = 0, n: int = 128):
    """A tiny float64 actor of `module` (obs 2, act 1, hidden (4,): 18 parameters) with a non-trivial
    mean network (the default output layer is ~0), n random states and actions drawn from it."""
    torch.manual_seed(seed)
    actor = module.Actor(2, 1, (4,)).double()
    with torch.no_grad():
        actor.log_std.fill_(-0.3)
        for p in actor.mean_net.parameters():
            p.normal_(0.0, 0.7)
    obs = torch.randn(n, 2, dtype=torch.float64)
    with torch.no_grad():
        mean0, log_std0 = actor(obs)
        actions = mean0 + log_std0.exp() * torch.randn_like(mean0)
    return actor, obs, actions
