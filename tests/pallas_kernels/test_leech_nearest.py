"""Tests for pallas_kernels/leech_nearest.py: both kernels (interpret mode on CPU) and the
reference against float64 brute force over the 196560 minimal vectors, and index agreement
with latticejax.

Both kernels run in the Pallas interpreter in one subprocess with fast-compile XLA flags
(process-wide; the interpreted kernels are large XLA graphs). The Turyn ("lanes") kernel's loop
schedule (two Golay automorphisms, 36 octad representatives) is checked against latticejax's
octads, and its traced body size is bounded (Triton's compile time grows superlinearly with it).
"""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.lattices import golay, leech, leech_shell
from pallas_kernels import _turyn
from pallas_kernels import leech_nearest as ln

FAST_COMPILE = (
    " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_disable_hlo_passes=fusion,cpu_multi_output_fusion"
)


def _brute(x):
    mv = leech.integer_minimal_vectors().astype(np.float64)
    return np.asarray(x, np.float64).reshape(-1, 24) @ mv.T


def _inputs():
    """(9, 48) float32: rows near a codeword of each shape, random rows, exact-tie rows."""
    near = jnp.asarray([5, 1103, 1104, 50000, 98255, 98256, 150000, 196559])
    xs = ln.shell_codeword(near) + 1e-3 * jax.random.normal(jax.random.key(3), (8, 24))
    xr = jax.random.normal(jax.random.key(4), (8, 24), jnp.float32)
    # Exact ties: small integers (many equal |x_i|) and a codeword itself (several shapes tie).
    xt = jnp.stack([jnp.round(2 * xr[0]), ln.shell_codeword(jnp.asarray(150000))])
    return jnp.concatenate([xs, xr, xt]).reshape(9, 48), near


@pytest.fixture(scope="module")
def kernels_out(tmp_path_factory):
    """Both kernels on ``_both(x)`` in the Pallas interpreter, in one CPU subprocess with
    fast-compile XLA flags (also on a GPU machine; the default lanes kernel is compiled for real
    in ``test_default_kernel`` there)."""
    x, _ = _inputs()
    path = tmp_path_factory.mktemp("leech_nearest")
    np.save(path / "x.npy", np.asarray(_both(x)))
    code = textwrap.dedent(
        f"""
        import numpy as np, jax.numpy as jnp
        from pallas_kernels import leech_nearest as ln
        x = jnp.asarray(np.load({str(path / "x.npy")!r}))
        out = {{}}
        for bs in (ln.BlockSizes(16, 64, 4, 1, "lanes"), ln.BlockSizes(16, 256, 4, 1, "tiles")):
            idx, vec = ln.leech_nearest(x, block_sizes=bs, interpret=True)
            out[bs.layout + "_idx"], out[bs.layout + "_vec"] = np.asarray(idx), np.asarray(vec)
        np.savez({str(path / "out.npz")!r}, **out)
        """
    )
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + FAST_COMPILE
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=600)
    return dict(np.load(path / "out.npz"))


@functools.lru_cache(maxsize=1)
def _latticejax_index():
    x, _ = _inputs()
    return np.asarray(leech_shell.leech_shell_nearest(_both(x).reshape(-1, 24))[0])


def _both(x):
    """x and its bf16 rounding stacked: one kernel call checks both (bf16 is promoted)."""
    return jnp.concatenate([x, x.astype(jnp.bfloat16).astype(jnp.float32)])


def _check(x, near, idx, vec):
    """idx, vec: outputs for ``_both(x)``; float64 brute force, latticejax and unit norm."""
    xx = _both(x)
    scores = _brute(xx)
    i = np.asarray(idx).ravel()
    assert idx.shape == (18, 2) and vec.shape == (18, 48)
    np.testing.assert_allclose(scores[np.arange(36), i], scores.max(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(i[:8], np.asarray(near))
    # Without ties the maximum is unique: the same index as latticejax (rows 16, 17 may tie).
    lj = _latticejax_index()
    np.testing.assert_array_equal(i[:16], lj[:16])
    np.testing.assert_array_equal(i[18:34], lj[18:34])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vec).reshape(-1, 24), axis=1), 1, 1e-5)


def test_shell_codeword_matches_latticejax_order():
    mv = leech.integer_minimal_vectors().astype(np.float64) / np.sqrt(32)
    got = np.asarray(ln.shell_codeword(jnp.arange(ln.SHELL_SIZE)), np.float64)
    np.testing.assert_allclose(got, mv, atol=1e-6)


@pytest.mark.parametrize("layout", ["lanes", "tiles"])
def test_kernel_is_exact(kernels_out, layout):
    x, near = _inputs()
    _check(x, near, kernels_out[layout + "_idx"], kernels_out[layout + "_vec"])


@functools.lru_cache(maxsize=1)
def _reference():
    x, _ = _inputs()
    return ln.leech_nearest_reference(_both(x), chunk=32)


def test_reference_is_exact():
    x, near = _inputs()
    _check(x, near, *_reference())


def test_default_kernel():
    """The default path: the compiled lanes kernel on GPU, the reference elsewhere; bf16 input
    is promoted."""
    x, near = _inputs()
    _check(x, near, *ln.leech_nearest(_both(x)))
    idx_b, _ = ln.leech_nearest(x.astype(jnp.bfloat16))
    np.testing.assert_array_equal(np.asarray(idx_b), np.asarray(_reference()[0])[9:])


def test_errors():
    with pytest.raises(ValueError, match=r"\(N, 24\*k\)"):
        ln.leech_nearest(jnp.ones((3, 25)))
    with pytest.raises(TypeError, match="int32"):
        ln.leech_nearest(jnp.ones((3, 24), jnp.int32))
    with pytest.raises(ValueError, match="layout"):
        ln.leech_nearest(
            jnp.ones((3, 24)), block_sizes=ln.BlockSizes(layout="rows"), interpret=True
        )
    with pytest.raises(ValueError, match="power of 2"):
        ln.leech_nearest(
            jnp.ones((3, 24)), block_sizes=ln.BlockSizes(48, layout="lanes"), interpret=True
        )


def test_trio_automorphisms():
    """rho (order 7) fixes each trio block, pi cycles the blocks; both map the Golay code
    (latticejax's codewords) onto itself."""
    rho, pi = _turyn.trio_automorphisms()
    code = {tuple(c) for c in golay.codewords().tolist()}
    perm = np.asarray(_turyn.turyn_tables().perm)
    blocks = [set(perm[8 * k : 8 * k + 8].tolist()) for k in range(3)]
    for g in (rho, pi):
        assert sorted(g) == list(range(24))
        image = np.zeros((4096, 24), np.uint8)
        image[:, np.asarray(g)] = golay.codewords()  # coordinate p moves to g[p]
        assert {tuple(c) for c in image.tolist()} == code
    for k in range(3):
        assert {rho[p] for p in blocks[k]} == blocks[k]
        assert {pi[p] for p in blocks[k]} == blocks[(k + 1) % 3]
    g = list(range(24))
    for _ in range(7):
        g = [rho[v] for v in g]
    assert g == list(range(24)) and rho != tuple(range(24))


def test_octad_schedule():
    """Replays the kernel's carry renaming on coordinate labels: code (7r + j)·36 + s is the
    octad of representative s after r pi-steps and j rho-steps, 756 + k the trio's octads;
    every octad of latticejax's list appears once."""
    ol = ln._octad_loop()
    perm = _turyn.turyn_tables().perm
    octs = {tuple(np.nonzero(o)[0].tolist()): i for i, o in enumerate(golay.octads())}
    assert len(ol.reps) == 36
    got = np.full(759, -1)

    def octad(labels, mask):
        return octs[tuple(sorted(labels[perm[q]] for q in range(24) if mask >> q & 1))]

    labels = list(range(24))  # the carry holds x[labels[i]] at position i
    for k, m in enumerate(ol.trio):
        got[756 + k] = octad(labels, m)
    code = 0
    for _ in range(3):
        for _ in range(7):
            for m in ol.reps:
                got[code] = octad(labels, m)
                code += 1
            labels = [labels[ol.rho[i]] for i in range(24)]
        labels = [labels[ol.pi[i]] for i in range(24)]
    # octad_of_code maps to octad_positions() order = latticejax's golay.octads() order
    np.testing.assert_array_equal(got, ol.octad_of_code)
    assert sorted(got.tolist()) == list(range(759))


def _count_eqns(jaxpr):
    n = 0
    for e in jaxpr.eqns:
        n += 1
        for v in e.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _count_eqns(inner)
    return n


def test_lanes_body_is_small():
    """The traced lanes kernel (loops counted once) stays far below the 759-octad unrolled
    form (13.2k equations, minutes in Triton's coalescing pass; this one: 2.5k, ~5 s)."""
    bs = ln.BlockSizes(32, 64, 1, 1, "lanes")
    closed = jax.make_jaxpr(lambda v: ln._lanes_scores(v, bs, True))(jnp.zeros((64, 24)))
    kernels = [e for e in closed.jaxpr.eqns if e.primitive.name == "pallas_call"]
    assert len(kernels) == 1
    n = _count_eqns(kernels[0].params["jaxpr"])
    assert 1000 < n < 4000, n
