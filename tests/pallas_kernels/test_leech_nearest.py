"""Tests for pallas_kernels/leech_nearest.py: both kernels (interpret mode on CPU) and the
reference against float64 brute force over the 196560 minimal vectors, and index agreement
with latticejax.

The Turyn ("lanes") kernel unrolls ~10k ops (759 octads, 16 × 16 pairs); XLA:CPU compiles its
interpreted form in ~100 s at default settings and in ~15 s with optimization and fusion off,
so both kernels run in one subprocess with those (process-wide) flags.
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

from latticejax.lattices import leech, leech_shell
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
    fast-compile XLA flags (also on a GPU machine: the lanes kernel takes minutes to compile
    for the GPU; the default tiles kernel is compiled for real in ``test_default_kernel``)."""
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
    """The default path: the compiled tiles kernel on GPU, the reference elsewhere; bf16 input
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
