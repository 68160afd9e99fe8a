"""Property tests for the helpers every training script repeats (SPEC 1: each file stands alone,
the tests keep each copy honest). Each test runs on every script that defines the helper."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SCRIPTS, dense_kl_hessian, load_script, scripts_with


@pytest.mark.parametrize("path", scripts_with("conjugate_gradient"))
def test_conjugate_gradient_solves_random_spd_system(path):
    m = load_script(path)
    rng = np.random.default_rng(0)
    for n in (5, 20, 60):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        A = q @ np.diag(rng.uniform(0.1, 10.0, n)) @ q.T  # SPD, condition number <= 100
        b = rng.normal(size=n)
        A_t, b_t = torch.tensor(A), torch.tensor(b)
        x, residual = m.conjugate_gradient(lambda v: A_t @ v, b_t, iters=4 * n, residual_tol=1e-24)
        rel = np.linalg.norm(A @ x.numpy() - b) / np.linalg.norm(b)
        assert rel < 1e-9, (n, rel)
        np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)
        assert residual == pytest.approx(np.linalg.norm(A @ x.numpy() - b), rel=1e-3, abs=1e-10)


@pytest.mark.parametrize("path", scripts_with("fisher_vector_product", "Actor"))
def test_fisher_vector_product_equals_explicit_kl_hessian(path):
    m = load_script(path)
    torch.manual_seed(0)
    actor = m.Actor(3, 2, (5,)).double()
    with torch.no_grad():  # move away from the init so every layer matters
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = torch.randn(17, 3, dtype=torch.float64)
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).detach()
    H = dense_kl_hessian(actor, obs)  # mean_s KL(pi_k || pi_theta) written out in conftest, not by the script
    for damping in (0.0, 0.1):
        for _ in range(3):
            v = torch.randn_like(theta_k)
            expected = H @ v + damping * v
            got = m.fisher_vector_product(actor, obs, v, damping)
            torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def reference_gae(rewards, values, next_values, terminated, ends, gamma, lam):
    """Slow, literal GAE: A_t = sum_l (gamma lam)^l delta_{t+l}, summed to the episode's end."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            total, k = 0.0, t
            while k < T:
                delta = rewards[k, i] + gamma * (0.0 if terminated[k, i] else next_values[k, i]) - values[k, i]
                total += (gamma * lam) ** (k - t) * delta
                if ends[k, i]:
                    break
                k += 1
            adv[t, i] = total
    return adv


@pytest.mark.parametrize("path", scripts_with("compute_gae"))
def test_gae_matches_hand_computed_values_with_termination_and_truncation(path):
    m = load_script(path)
    gamma, lam = 0.9, 0.5
    # one env, 4 steps: terminated at t=1, truncated at t=3 with V(final obs) = 10
    r = np.array([[1.0], [2.0], [0.0], [1.0]])
    v = np.array([[0.5], [1.0], [2.0], [3.0]])
    nv = np.array([[1.0], [99.0], [3.0], [10.0]])  # 99: next value after a termination, unused
    term = np.array([[0.0], [1.0], [0.0], [0.0]])
    ends = np.array([[0.0], [1.0], [0.0], [1.0]])
    adv, ret = m.compute_gae(r, v, nv, term, ends, gamma, lam)
    d3 = 1.0 + 0.9 * 10.0 - 3.0  # truncated: bootstrap from the final observation
    d2 = 0.0 + 0.9 * 3.0 - 2.0
    d1 = 2.0 - 1.0  # terminated: no bootstrap
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = np.array([[d0 + 0.45 * d1], [d1], [d2 + 0.45 * d3], [d3]])
    np.testing.assert_allclose(adv, expected, rtol=1e-12)
    np.testing.assert_allclose(ret, expected + v, rtol=1e-12)


@pytest.mark.parametrize("path", scripts_with("compute_gae"))
def test_gae_matches_literal_sum_over_several_envs(path):
    m = load_script(path)
    rng = np.random.default_rng(1)
    T, N = 40, 3
    r, v, nv = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=(T, N))
    term = (rng.random((T, N)) < 0.05).astype(float)
    trunc = ((rng.random((T, N)) < 0.05) & (term == 0)).astype(float)
    ends = np.maximum(term, trunc)
    assert term.sum() > 0 and trunc.sum() > 0
    adv, _ = m.compute_gae(r, v, nv, term, ends, 0.99, 0.95)
    np.testing.assert_allclose(adv, reference_gae(r, v, nv, term, ends, 0.99, 0.95), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", scripts_with("RunningMeanStd"))
def test_obs_normaliser_matches_numpy_over_merged_batches(path):
    m = load_script(path)
    rng = np.random.default_rng(2)
    rms = m.RunningMeanStd((4,))
    batches = [rng.normal(loc=3.0, scale=[1, 5, 0.1, 20], size=(n, 4)) for n in (1, 7, 300, 2000, 5)]
    for b in batches:
        rms.update(b)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)  # the 1e-4 prior count (mean 0, var 1) shows at 1e-5
    assert rms.count == pytest.approx(len(data), abs=1e-3)
    # merging two normalisers' worth of data in one batch gives the same statistics
    other = m.RunningMeanStd((4,))
    other.update(data)
    np.testing.assert_allclose(other.mean, rms.mean, rtol=1e-9)
    np.testing.assert_allclose(other.var, rms.var, rtol=1e-9)
    z = rms.normalize(torch.as_tensor(data[:50], dtype=torch.float32)).numpy()
    expected = np.clip((data[:50] - data.mean(0)) / data.std(0), -10, 10)
    np.testing.assert_allclose(z, expected, rtol=1e-3, atol=1e-3)


def _trained_looking_actor(m, obs_dim=6, act_dim=2):
    torch.manual_seed(3)
    actor = m.Actor(obs_dim, act_dim, (64, 64))
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rms = m.RunningMeanStd((obs_dim,))
    rms.update(np.random.default_rng(3).normal(2.0, 3.0, size=(500, obs_dim)))
    return actor, rms


@pytest.mark.parametrize("path", scripts_with("save_checkpoint", "load_checkpoint"))
def test_checkpoint_round_trip_gives_identical_deterministic_actions(path, tmp_path):
    m = load_script(path)
    actor, rms = _trained_looking_actor(m)
    ckpt = tmp_path / "policy.pt"
    m.save_checkpoint(ckpt, actor, rms, "SafetyHopperVelocity-v1", "test", m.Args(), 1234)
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temp file"
    actor2, rms2, meta = m.load_checkpoint(ckpt, env_id="SafetyHopperVelocity-v1", obs_dim=6, act_dim=2)
    obs = torch.as_tensor(np.random.default_rng(4).normal(2.0, 3.0, size=(100, 6)), dtype=torch.float32)
    with torch.no_grad():
        a1, _ = actor(rms.normalize(obs))
        a2, _ = actor2(rms2.normalize(obs))
    assert torch.equal(a1, a2)
    assert meta["global_step"] == 1234 and meta["algo"] == "test" and meta["format_version"] == m.CHECKPOINT_FORMAT_VERSION
    for key in ("env_id", "obs_dim", "act_dim", "hidden_sizes", "activation", "actor_state_dict", "obs_rms", "args"):
        assert key in meta


@pytest.mark.parametrize("path", scripts_with("save_checkpoint", "load_checkpoint"))
def test_bad_checkpoints_give_one_line_errors(path, tmp_path):
    m = load_script(path)
    actor, rms = _trained_looking_actor(m)
    good = tmp_path / "good.pt"
    m.save_checkpoint(good, actor, rms, "SafetyHopperVelocity-v1", "test", m.Args(), 1)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:200])
    junk = tmp_path / "junk.pt"
    torch.save({"hello": 1}, junk)
    cases = [(tmp_path / "missing.pt", {}, "not found"), (corrupt, {}, "not a readable checkpoint"),
             (junk, {}, "not a checkpoint"), (good, {"obs_dim": 7, "act_dim": 2}, "this env has obs 7")]
    for file, kw, needle in cases:
        with pytest.raises(SystemExit) as exc:
            m.load_checkpoint(file, **kw)
        msg = str(exc.value)
        assert needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("path", scripts_with("save_checkpoint"))
def test_a_nan_policy_is_never_written(path, tmp_path):
    m = load_script(path)
    actor, rms = _trained_looking_actor(m)
    with torch.no_grad():
        actor.log_std[0] = float("nan")
    with pytest.raises(SystemExit):
        m.save_checkpoint(tmp_path / "nan.pt", actor, rms, "SafetyHopperVelocity-v1", "test", m.Args(), 1)
    assert not (tmp_path / "nan.pt").exists()


def args_docstrings(path):
    """{field: docstring} of the Args dataclass, read from the source (the text tyro shows)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
    docs = {}
    for prev, node in zip(cls.body, cls.body[1:] + [None]):
        if isinstance(prev, ast.AnnAssign):
            is_doc = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
            docs[prev.target.id] = node.value.value if is_doc else None
    return docs


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in SCRIPTS])
def test_help_documents_every_flag(path):
    docs = args_docstrings(path)
    missing = [name for name, doc in docs.items() if not doc]
    assert not missing, f"Args fields without a docstring: {missing}"
    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr[-2000:]
    help_text = " ".join(out.stdout.split())
    for name, doc in docs.items():
        assert "--" + name.replace("_", "-") in help_text, name
        assert " ".join(doc.split())[:30] in help_text, (name, doc)


@pytest.mark.parametrize("path", scripts_with("load_checkpoint"))
def test_every_copy_of_load_checkpoint_reads_strpos_checkpoints_and_rejects_bad_ones(path, tmp_path):
    """robustness_attack.py (which only loads) included: a checkpoint saved by strpo.py acts the same
    after loading, and bad files are one-line errors."""
    saver, m = load_script(ROOT / "strpo.py"), load_script(path)
    actor, rms = _trained_looking_actor(saver)
    good = tmp_path / "good.pt"
    saver.save_checkpoint(good, actor, rms, "SafetyHopperVelocity-v1", "strpo", saver.Args(), 7)
    loaded, loaded_rms, meta = m.load_checkpoint(good, env_id="SafetyHopperVelocity-v1", obs_dim=6, act_dim=2)
    obs = torch.as_tensor(np.random.default_rng(5).normal(1.0, 2.0, size=(50, 6)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(actor(rms.normalize(obs))[0], loaded(loaded_rms.normalize(obs))[0])
    assert meta["global_step"] == 7
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for bad, kw in ((tmp_path / "missing.pt", {}), (tmp_path / "junk.pt", {}), (good, {"obs_dim": 7, "act_dim": 2})):
        with pytest.raises(SystemExit) as exc:
            m.load_checkpoint(bad, **kw)
        assert str(exc.value).startswith("error:") and "\n" not in str(exc.value)
