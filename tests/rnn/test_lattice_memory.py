"""Tests of the Lattice memory (arXiv 2504.05646): update == one gradient step, orthogonality,
normalized slots over many steps, exact vs float64 numpy, chunked == exact at chunk size 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from latticejax.rnn import LatticeMemory, lattice_chunked, lattice_recurrent, lattice_step
from latticejax.rnn.lattice_memory import NORM_EPS
from tests.rnn._helpers import stepped

jax.config.update("jax_default_matmul_precision", "highest")


def _inputs(seed, b=2, t=23, h=2, m=6, d=5):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, t, h, m)).astype(np.float32)
    k = rng.normal(size=(b, t, h, m)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.normal(size=(b, t, h, d)).astype(np.float32)
    eta = (0.9 / (1 + np.exp(-rng.normal(size=(b, t, h))))).astype(np.float32)
    la = (-np.log1p(np.exp(rng.normal(size=(b, t, h)) - 3))).astype(np.float32)
    h0 = rng.normal(size=(b, h, m, d)).astype(np.float32)
    h0 /= np.linalg.norm(h0, axis=-1, keepdims=True)
    return q, k, v, eta, la, h0


def _numpy_reference(q, k, v, eta, la, h0, normalize, project, readout):
    """Float64 loop over tokens, heads and slots (independent of the einsum code)."""
    q, k, v, eta, h0 = (np.asarray(a, np.float64) for a in (q, k, v, eta, h0))
    b, t, nh, m = k.shape
    out = np.zeros(v.shape)
    state = h0.copy()
    for bi in range(b):
        for hi in range(nh):
            s = state[bi, hi]
            for ti in range(t):
                norms = np.sqrt((s * s).sum(-1) + NORM_EPS)
                unit = s / norms[:, None]
                if la is not None:
                    s = s * np.exp(la[bi, ti, hi])
                n = norms if normalize else np.ones(m)
                c = k[bi, ti, hi] / n
                e = v[bi, ti, hi] - sum(c[i] * s[i] for i in range(m))
                new = s.copy()
                for i in range(m):
                    w = e - unit[i] * (unit[i] @ e) if project else e
                    new[i] = s[i] + eta[bi, ti, hi] * c[i] * w
                s = new
                r = q[bi, ti, hi]
                if readout == "softmax":
                    r = np.exp(r - r.max()) / np.exp(r - r.max()).sum()
                out[bi, ti, hi] = (r / n) @ s
            state[bi, hi] = s
    return out, state


@pytest.mark.parametrize(
    "normalize,project,readout,decay",
    [
        (True, True, "linear", False),
        (True, False, "softmax", False),
        (False, True, "linear", True),
        (False, False, "softmax", True),
    ],
)
def test_exact_matches_float64_numpy(normalize, project, readout, decay):
    q, k, v, eta, la, h0 = _inputs(0, t=9)
    la = la if decay else None
    kw = dict(normalize=normalize, project=project, readout=readout)
    o, hT = lattice_recurrent(q, k, v, eta, la, h0, **kw)
    o_ref, h_ref = _numpy_reference(q, k, v, eta, la, h0, **kw)
    np.testing.assert_allclose(o, o_ref, atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(hT, h_ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_update_is_one_gradient_step(normalize):
    rng = np.random.default_rng(1)
    m, d = 7, 5
    h = jnp.asarray(rng.normal(size=(m, d)) * rng.uniform(0.5, 2.0, size=(m, 1)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(m,)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(d,)), jnp.float32)
    eta = jnp.float32(0.37)

    def loss(hh):
        n = jnp.sqrt(jnp.sum(hh * hh, -1) + NORM_EPS) if normalize else jnp.ones(m)
        return 0.5 * jnp.sum((v - (k / n) @ hh) ** 2)

    expected = h - eta * jax.grad(loss)(h)
    got, _ = lattice_step(h, k, k, v, eta, normalize=normalize, project=normalize)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_write_is_orthogonal_and_gate_form():
    rng = np.random.default_rng(2)
    m, d = 6, 8
    h = jnp.asarray(rng.normal(size=(3, m, d)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, m)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(3, d)), jnp.float32)
    eta = jnp.asarray(rng.uniform(0.1, 1.0, size=(3,)), jnp.float32)
    new, _ = lattice_step(h, k, k, v, eta)
    n = np.sqrt(np.sum(np.asarray(h, np.float64) ** 2, -1) + NORM_EPS)
    unit = np.asarray(h, np.float64) / n[..., None]
    # The change of each slot is orthogonal to it ...
    change = np.asarray(new, np.float64) - np.asarray(h, np.float64)
    np.testing.assert_allclose(np.sum(unit * change, -1), 0.0, atol=1e-5)
    # ... and equals forget * slot + eta c e with f = 1 - eta c (unit . e) / n.
    c = np.asarray(k, np.float64) / n
    e = np.asarray(v, np.float64) - np.einsum("bm,bmd->bd", c, unit * n[..., None])
    f = 1 - np.asarray(eta)[:, None] * c * np.einsum("bmd,bd->bm", unit, e) / n
    gated = (
        f[..., None] * np.asarray(h) + np.asarray(eta)[:, None, None] * c[..., None] * e[:, None]
    )
    np.testing.assert_allclose(new, gated, atol=1e-5, rtol=1e-5)


def test_slots_stay_finite_and_unit_over_10k_steps():
    m, d, steps = 8, 8, 10_000
    keys = jax.random.split(jax.random.key(3), 4)
    ks = jax.random.normal(keys[0], (steps, m))
    ks = ks / jnp.linalg.norm(ks, axis=-1, keepdims=True)
    vs = 3.0 * jax.random.normal(keys[1], (steps, d))
    etas = jax.random.uniform(keys[2], (steps,), minval=0.0, maxval=2.0)
    h0 = jax.random.normal(keys[3], (m, d))

    def body(h, xs):
        h, o = lattice_step(h, xs[0], xs[0], xs[1], xs[2])
        n = jnp.sqrt(jnp.sum(h * h, -1))
        return h, (jnp.max(jnp.abs(jnp.sum((h / n[:, None]) ** 2, -1) - 1)), n, o)

    h, (dev, norms, o) = jax.jit(lambda h0: jax.lax.scan(body, h0, (ks, vs, etas)))(h0)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(o))
    assert float(dev.max()) < 1e-5
    # Orthogonal writes: slot norms never decrease.
    assert np.all(np.diff(np.asarray(norms), axis=0) >= -1e-4 * np.asarray(norms)[1:])


@pytest.mark.parametrize("readout", ["linear", "softmax"])
@pytest.mark.parametrize("normalize,project", [(True, True), (True, False), (False, True)])
def test_chunked_equals_exact_at_chunk_size_one(normalize, project, readout):
    q, k, v, eta, la, h0 = _inputs(4, t=13)
    kw = dict(normalize=normalize, project=project, readout=readout)
    o, hT = lattice_recurrent(q, k, v, eta, None, h0, **kw)
    o1, h1 = lattice_chunked(q, k, v, eta, None, h0, chunk_size=1, **kw)
    np.testing.assert_allclose(o1, o, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(h1, hT, atol=1e-5, rtol=1e-5)


def test_chunked_with_decay_and_chunk_approximation_is_close():
    q, k, v, eta, la, h0 = _inputs(5, t=40, m=16, d=16)
    kw = dict(normalize=False, project=False)
    o, _ = lattice_recurrent(q, k, v, eta, la, h0, **kw)
    o8, _ = lattice_chunked(q, k, v, eta, la, h0, chunk_size=8, **kw)
    # Without normalization and projection nothing is frozen: the chunk form is exact.
    np.testing.assert_allclose(o8, o, atol=1e-4, rtol=1e-4)
    eta_small = 0.1 * eta
    o, _ = lattice_recurrent(q, k, v, eta_small, None, h0)
    o8, _ = lattice_chunked(q, k, v, eta_small, None, h0, chunk_size=8, n_refine=1)
    rel = np.linalg.norm(o8 - o) / np.linalg.norm(o)
    assert rel < 0.05, rel


def test_module_call_equals_step_and_errors():
    rngs = nnx.Rngs(0)
    x = jax.random.normal(jax.random.key(6), (2, 7, 16))
    for kw in [dict(mode="exact"), dict(chunk_size=1, readout="softmax")]:
        layer = LatticeMemory(16, num_heads=2, num_slots=4, rngs=rngs, **kw)
        np.testing.assert_allclose(stepped(layer, x), layer(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="num_heads=3"):
        LatticeMemory(16, num_heads=3, rngs=rngs)
    with pytest.raises(ValueError, match="chunk_size"):
        LatticeMemory(16, num_heads=2, chunk_size=0, rngs=rngs)
    with pytest.raises(ValueError, match="chunk_size"):
        lattice_chunked(*_inputs(0, t=4)[:4], None, _inputs(0)[5], chunk_size=-2)
    with pytest.raises(ValueError, match="batch size 2"):
        layer.step(layer.init_state(2), x[:1, 0])
    with pytest.raises(ValueError, match="normalize=False"):
        LatticeMemory(16, num_heads=2, decay=True, rngs=rngs)
