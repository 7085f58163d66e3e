"""Tests for pallas_kernels/lattice_chunk.py (arXiv 2504.05646): the fused forward and backward
kernels in the Pallas interpreter against ``lattice_chunk_reference`` (values and gradients), and
the reference against a float64 numpy transcription of the chunk formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import lattice_chunk as lc

B, T, H, M, D, L = 2, 40, 2, 16, 16, 16  # T = 2.5 chunks: a ragged tail


@pytest.fixture(autouse=True)
def _exact_dots():
    """float32 dots everywhere: on GPU the interpreter's and the reference's dots would
    otherwise run in tf32, each rounded differently."""
    with jax.default_matmul_precision("highest"):
        yield


SWITCHES = [(True, True), (True, False), (False, True), (False, False)]


def _inputs(seed, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(seed), 5)
    r = jax.random.normal(ks[0], (B, T, H, M)) / np.sqrt(M)
    k = jax.random.normal(ks[1], (B, T, H, M)) / np.sqrt(M)
    v = jax.random.normal(ks[2], (B, T, H, D))
    beta = jax.random.uniform(ks[3], (B, T, H), minval=0.1, maxval=0.9)
    h0 = jax.random.normal(ks[4], (B, H, M, D))
    return tuple(x.astype(dtype) for x in (r, k, v, beta, h0))


def _numpy_chunk(h, r, k, v, beta, normalize, project):
    """The module docstring's chunk formulas in float64 numpy with an explicit solve."""
    ell = k.shape[0]
    raw = np.sqrt(np.sum(h * h, axis=1) + lc.NORM_EPS)
    unit = h / raw[:, None]
    w = 1.0 / raw if normalize else np.ones_like(raw)
    c, rs = k * w, r * w
    strict, incl = np.tril(np.ones((ell, ell)), -1), np.tril(np.ones((ell, ell)))
    e0 = v - c @ h
    bp = beta[:, None] * c * (e0 @ unit.T) if project else np.zeros_like(c)
    rhs = e0 + (c * (strict @ bp)) @ unit
    u = np.linalg.solve(np.eye(ell) + beta[:, None] * (strict * (c @ c.T)), beta[:, None] * rhs)
    o = rs @ h + (incl * (rs @ c.T)) @ u - (rs * (incl @ bp)) @ unit
    return o, h + c.T @ u - np.sum(bp, axis=0)[:, None] * unit


def _numpy_scan(r, k, v, beta, h0, normalize, project):
    r, k, v, beta, h0 = (np.asarray(x, np.float64) for x in (r, k, v, beta, h0))
    pad = (-T) % L
    r, k, v = (np.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (r, k, v))
    beta = np.pad(beta, ((0, 0), (0, pad), (0, 0)))
    o = np.zeros(v.shape)
    ht = h0.copy()
    for b in range(B):
        for hh in range(H):
            for t0 in range(0, T + pad, L):
                sl = slice(t0, t0 + L)
                o[b, sl, hh], ht[b, hh] = _numpy_chunk(
                    ht[b, hh], r[b, sl, hh], k[b, sl, hh], v[b, sl, hh], beta[b, sl, hh],
                    normalize, project,
                )  # fmt: skip
    return o[:, :T], ht


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize(
    "normalize, project, forward",
    [(*sw, fwd) for sw in SWITCHES for fwd in ("transposed", "resident")]
    + [(True, True, "staged")],
)
def test_forward_matches_reference_and_numpy(normalize, project, forward, monkeypatch):
    monkeypatch.setattr(lc, "FORWARD", forward)
    xs = _inputs(0)
    kw = dict(chunk_size=L, normalize=normalize, project=project)
    o, ht = lc.lattice_chunk_scan(*xs, interpret=True, **kw)
    o_ref, ht_ref = lc.lattice_chunk_reference(*xs, **kw)
    o64, ht64 = _numpy_scan(*xs, normalize, project)
    assert o.shape == (B, T, H, D) and o.dtype == jnp.float32
    assert ht.shape == (B, H, M, D) and ht.dtype == jnp.float32
    assert _rel(o, o_ref) < 1e-5 and _rel(ht, ht_ref) < 1e-5
    assert _rel(o_ref, o64) < 1e-4 and _rel(ht_ref, ht64) < 1e-4


def _loss(fn, w, g):
    def loss(*xs):
        o, ht = fn(*xs)
        return jnp.sum(o.astype(jnp.float32) * w) + jnp.sum(ht * g)

    return loss


@pytest.mark.parametrize("normalize, project", SWITCHES)
@pytest.mark.parametrize("bwd", [lc.chunk_bwd, lc.chunk_bwd_t])
def test_phased_chunk_bwd_matches_vjp(normalize, project, bwd):
    ks = jax.random.split(jax.random.key(6), 7)
    ins = dict(
        h=jax.random.normal(ks[0], (M, 2 * D)),  # m != d
        r=jax.random.normal(ks[1], (L, M)) / 4,
        k=jax.random.normal(ks[2], (L, M)) / 4,
        v=jax.random.normal(ks[3], (L, 2 * D)),
        beta=jax.random.uniform(ks[4], (L,)),
        do=jax.random.normal(ks[5], (L, 2 * D)),
        dh=jax.random.normal(ks[6], (M, 2 * D)),
    )
    names = ("h", "r", "k", "v", "beta")
    _, vjp = jax.vjp(
        lambda *a: lc.chunk_fwd(*a, normalize=normalize, project=project),
        *(ins[n] for n in names),
    )
    want = vjp((ins["do"], ins["dh"]))
    got = {}
    got["h"] = bwd(
        ins.__getitem__, lc.DictScratch(), got.__setitem__, normalize=normalize, project=project
    )
    for n, w in zip(names, want):
        assert _rel(got[n], w) < 1e-5, n


@pytest.mark.parametrize(
    "normalize, project, backward",
    [
        (True, True, "phased"),
        (False, False, "phased"),
        (True, True, "transposed"),
        (True, True, "vjp"),
        (True, True, "resident"),
        (False, False, "resident"),
        (True, True, "resident/prefetch=h"),
        (True, True, "resident/prefetch=none,no saved tiles"),
    ],
)
def test_gradients_match_reference(normalize, project, backward, monkeypatch):
    if backward.startswith("resident/"):  # the resident kernels' knobs
        monkeypatch.setattr(lc, "RESIDENT_PREFETCH", backward.split("=")[1].split(",")[0])
        monkeypatch.setattr(lc, "SAVE_TILES", "no saved tiles" not in backward)
        backward = "resident"
    monkeypatch.setattr(lc, "BACKWARD", backward)
    monkeypatch.setattr(lc, "FORWARD", "resident" if backward == "resident" else "transposed")
    xs = _inputs(1)
    kw = dict(chunk_size=L, normalize=normalize, project=project)
    kw_ = jax.random.split(jax.random.key(2))
    w = jax.random.normal(kw_[0], (B, T, H, D))
    g = jax.random.normal(kw_[1], (B, H, M, D))
    five = (0, 1, 2, 3, 4)
    kern = _loss(lambda *a: lc.lattice_chunk_scan(*a, interpret=True, **kw), w, g)
    ref = _loss(lambda *a: lc.lattice_chunk_reference(*a, **kw), w, g)
    val, grads = jax.value_and_grad(kern, argnums=five)(*xs)
    val_ref, grads_ref = jax.value_and_grad(ref, argnums=five)(*xs)
    assert abs(float(val) - float(val_ref)) <= 1e-5 * abs(float(val_ref))
    for name, gk, gr, x in zip("r k v beta h0".split(), grads, grads_ref, xs):
        assert gk.shape == x.shape and gk.dtype == x.dtype, name
        assert _rel(gk, gr) < 1e-4, name
    # the last token sits in the zero-padded tail chunk and still gets its gradient
    assert float(jnp.max(jnp.abs(grads[3][:, -1]))) > 0


def test_bf16_inputs():
    xs = _inputs(3, jnp.bfloat16)
    o, ht = lc.lattice_chunk_scan(*xs, chunk_size=L, interpret=True)
    assert o.dtype == jnp.bfloat16 and ht.dtype == jnp.float32
    o_ref, ht_ref = lc.lattice_chunk_reference(*xs, chunk_size=L)  # f32 math on bf16 values
    assert _rel(o, o_ref) < 1e-2 and _rel(ht, ht_ref) < 1e-5

    def loss(*a):
        o, ht = lc.lattice_chunk_scan(*a, chunk_size=L, interpret=True)
        return jnp.sum(o.astype(jnp.float32)) + jnp.sum(ht)

    grads = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*xs)
    assert all(gk.dtype == jnp.bfloat16 for gk in grads)
    assert all(bool(jnp.all(jnp.isfinite(gk.astype(jnp.float32)))) for gk in grads)


def test_reference_dispatch_off_gpu(monkeypatch):
    monkeypatch.setattr(lc._dispatch, "on_gpu", lambda: False)
    xs = _inputs(4, jnp.bfloat16)
    o, ht = lc.lattice_chunk_scan(*xs, chunk_size=L)
    o_ref, ht_ref = lc.lattice_chunk_reference(*xs, chunk_size=L)
    assert o.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(o, np.float32), np.asarray(o_ref.astype(o.dtype), np.float32)
    )
    np.testing.assert_array_equal(ht, ht_ref)
    with pytest.raises(ValueError, match="interpret=False"):
        lc.lattice_chunk_scan(*xs, chunk_size=L, interpret=False)


def test_unsupported_reason():
    assert lc.unsupported_reason(64, 128, 128) == ""
    assert lc.unsupported_reason(16, 16, 16) == ""
    msg = lc.unsupported_reason(48, 8, 128)
    assert "chunk_size=48" in msg and "m=8" in msg and "d=" not in msg


def test_errors():
    r, k, v, beta, h0 = _inputs(5)
    with pytest.raises(ValueError, match="chunk_size=24"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=24, interpret=True)
    with pytest.raises(ValueError, match="r must have shape"):
        lc.lattice_chunk_scan(r[:, :, :, :8], k, v, beta, h0, chunk_size=L, interpret=True)
    with pytest.raises(ValueError, match="beta must have shape"):
        lc.lattice_chunk_scan(r, k, v, beta[:, :-1], h0, chunk_size=L, interpret=True)
    with pytest.raises(ValueError, match="h0 must have shape"):
        lc.lattice_chunk_scan(r, k, v, beta, h0[:, :, :, :8], chunk_size=L, interpret=True)
    with pytest.raises(ValueError, match="v must have shape"):
        lc.lattice_chunk_scan(r, k, v[:, :-1], beta, h0, chunk_size=L, interpret=True)
    with pytest.raises(TypeError, match="k must be float32"):
        lc.lattice_chunk_scan(r, k.astype(jnp.int32), v, beta, h0, chunk_size=L, interpret=True)
    with pytest.raises(ValueError, match="num_warps"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=L, interpret=True, num_warps=3)


def test_sizes_checked_on_every_backend(monkeypatch):
    """Off GPU (interpret=None: the pure-JAX reference) the kernel's size rules still apply, so a
    call that runs on CPU also runs compiled on a GPU."""
    monkeypatch.setattr(lc._dispatch, "on_gpu", lambda: False)
    r, k, v, beta, h0 = _inputs(6)
    with pytest.raises(ValueError, match="chunk_size=8"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=8)
    with pytest.raises(ValueError, match="chunk_size=0"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=0)
    with pytest.raises(ValueError, match="m=8"):
        lc.lattice_chunk_scan(r[..., :8], k[..., :8], v, beta, h0[:, :, :8], chunk_size=L)
    with pytest.raises(ValueError, match="num_warps"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=L, num_warps=3)
    assert "chunk_size=16.0" in lc.unsupported_reason(16.0, 16, 16)


def test_bf16_dot_operands_round_but_stay_close():
    # dot_dtype=bfloat16 must really change the dots' operands, and only by bf16 rounding:
    # kernel (interpreter) and reference both, outputs and gradients.
    xs = _inputs(5)
    o32, ht32 = _numpy_scan(*xs, True, True)
    kw = dict(chunk_size=L, dot_dtype=jnp.bfloat16)
    o_k, ht_k = lc.lattice_chunk_scan(*xs, interpret=True, **kw)
    o_r, ht_r = lc.lattice_chunk_reference(*xs, chunk_size=L)  # float32 dots
    with lc.dot_operands(jnp.bfloat16):
        o_b, ht_b = lc.lattice_chunk_reference(*xs, chunk_size=L)
    for o, ht in ((o_k, ht_k), (o_b, ht_b)):
        assert 1e-4 < _rel(o, o32) < 5e-2 and _rel(ht, ht32) < 5e-2
    assert _rel(o_r, o32) < 1e-5 and lc.DOT_DTYPE == jnp.float32  # the context restored it

    def loss(fn, *a):
        o, ht = fn(*a)
        return jnp.sum(o * xs[2]) + jnp.sum(ht)

    five = (1, 2, 3, 4, 5)
    g_k = jax.grad(loss, argnums=five)(
        lambda *a: lc.lattice_chunk_scan(*a, interpret=True, **kw), *xs
    )
    g_r = jax.grad(loss, argnums=five)(lambda *a: lc.lattice_chunk_reference(*a, chunk_size=L), *xs)
    for a, b in zip(g_k, g_r):
        assert 1e-5 < _rel(a, b) < 5e-2
    with pytest.raises(ValueError, match="dot_dtype must be float32 or bfloat16, got float16"):
        lc.lattice_chunk_scan(*xs, chunk_size=L, dot_dtype=jnp.float16)


def test_dot_dtype_of_the_call_reaches_the_reference_backward(monkeypatch):
    # jax.grad traces the solve's custom_vjp backward after lattice_chunk_scan has returned, i.e.
    # outside its dot_operands context: its dots must take the call's dot_dtype, not whatever the
    # global DOT_DTYPE is then (the reference path: off GPU with interpret=None).
    monkeypatch.setattr(lc._dispatch, "on_gpu", lambda: False)  # the same on a GPU machine
    r, k, v, beta, h0 = _inputs(9)

    def grads(fn):
        def loss(k, v):
            o, ht = fn(r, k, v, beta, h0)
            return jnp.sum(o * v) + jnp.sum(ht)

        return jax.grad(loss, argnums=(0, 1))(k, v)

    def scan(dot_dtype):
        return lambda *a: lc.lattice_chunk_scan(*a, chunk_size=L, dot_dtype=dot_dtype)

    def reference(*a):
        return lc.lattice_chunk_reference(*a, chunk_size=L)

    with lc.dot_operands(jnp.bfloat16):  # forward and backward traced inside: all bf16 dots
        want_bf16 = grads(reference)
        got_f32 = grads(scan(jnp.float32))  # float32 asked inside a caller's bf16 context
    want_f32 = grads(reference)
    got_bf16 = grads(scan("bfloat16"))  # a dtype name is accepted too
    for got, want in zip(got_bf16 + got_f32, want_bf16 + want_f32):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert 1e-5 < _rel(want_bf16[0], want_f32[0]) < 5e-2  # the two really differ
    with pytest.raises(ValueError, match="dot_dtype must be float32 or bfloat16, got 'bf16'"):
        lc.lattice_chunk_scan(r, k, v, beta, h0, chunk_size=L, dot_dtype="bf16")


def test_kernel_variants_by_memory_size(monkeypatch):
    assert lc.kernel_variants(64, 64) == ("resident", "resident")
    assert lc.kernel_variants(64, 64, 64) == ("transposed", "phased")  # chunk > 32
    assert lc.kernel_variants(128, 128) == ("transposed", "phased")
    monkeypatch.setattr(lc, "BACKWARD", "vjp")
    assert lc.kernel_variants(64, 64) == ("resident", "vjp")
    monkeypatch.setattr(lc, "RESIDENT_PREFETCH", "all")
    with pytest.raises(ValueError, match="RESIDENT_PREFETCH"):
        lc.kernel_variants(64, 64)
    monkeypatch.setattr(lc, "FORWARD", "slabs")
    with pytest.raises(ValueError, match="unknown kernel variant"):
        lc.kernel_variants(64, 64)
