"""Tests for pallas_kernels/leech_decode.py (and the kernel dispatch of leech_closest_point).

The kernel runs in the Pallas interpreter on CPU. Its unrolled body is a few thousand ops, which
XLA:CPU compiles in ~3 min at default settings and in ~5 s with optimization and fusion off, so
the kernel call runs once, in a subprocess with those flags (they are process wide: they must not
slow the rest of the suite). Everything is compared with a float64 numpy
brute force over the 8192 cosets and with latticejax's XLA decoder.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latticejax.lattices import golay, leech
from pallas_kernels import _turyn
from pallas_kernels import leech_decode as ld

SQRT8 = np.sqrt(8.0)
ON_GPU = jax.default_backend() == "gpu"
FAST_COMPILE = (
    " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_disable_hlo_passes=fusion,cpu_multi_output_fusion"
)


def _oracle(y):
    """float64 brute force: min over the 8192 cosets of the D24 cost -> (N,) squared distance."""
    y = np.asarray(y, np.float64)
    cw = golay.codewords().astype(np.float64)
    best = np.full(len(y), np.inf)
    for m in (0.0, 1.0):
        for lo in range(0, len(y), 32):
            u = (y[lo : lo + 32, None, :] - m - 2.0 * cw[None]) / 4.0
            z = np.rint(u)
            f = u - z
            wrong = (z.sum(-1) - m) % 2 == 1
            cost = (f * f).sum(-1) + np.where(wrong, (1.0 - 2.0 * np.abs(f)).min(-1), 0.0)
            best[lo : lo + 32] = np.minimum(best[lo : lo + 32], 16.0 * cost.min(1))
    return best


def _inputs(seed):
    """(N, 24) float32 classical-scale points of five kinds (see the comments)."""
    rng = np.random.default_rng(seed)
    gen = leech.Leech().generator  # classical scale, rows = basis
    mv = leech.Leech().minimal_vectors()
    lat = rng.integers(-3, 4, size=(32, 24)) @ gen
    parts = [
        2.0 * rng.normal(size=(64, 24)),  # the benchmark distribution
        lat + 0.02 * rng.normal(size=(32, 24)),  # near lattice points
        lat[:16] + 0.5 * mv[rng.integers(0, len(mv), 16)],  # midpoints: exact ties
        np.round(4 * rng.normal(size=(16, 24))) / 4 / SQRT8,  # many half-integer ties per coset
        3e3 * rng.normal(size=(32, 24)),  # large norm (|y| ~ 1e4 in integer coordinates)
        0.3 * rng.normal(size=(32, 24)),  # near the origin
    ]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """Kernel output of ``_inputs(0)`` through leech_closest_point(use_kernel=True)."""
    x = _inputs(0)
    path = tmp_path_factory.mktemp("leech_decode")
    np.save(path / "x.npy", x)
    code = textwrap.dedent(
        f"""
        import numpy as np, jax.numpy as jnp
        from latticejax.lattices import leech
        from pallas_kernels import leech_decode as ld
        x = jnp.asarray(np.load({str(path / "x.npy")!r}))
        out = leech.leech_closest_point(x, use_kernel=True)  # default: pruned search
        np.save({str(path / "out.npy")!r}, np.asarray(out))
        bs = ld.BlockSizes(64, prune=False)  # the exhaustive search
        full = ld.leech_decode(x * np.float32(8**0.5), block_sizes=bs, interpret={not ON_GPU})
        np.save({str(path / "full.npy")!r}, np.asarray(full))
        """
    )
    env = dict(os.environ)
    if not ON_GPU:
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + FAST_COMPILE
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=600)
    return x, np.load(path / "out.npy"), np.load(path / "full.npy")


def test_exhaustive_kernel_agrees(decoded):
    x, out, full = decoded
    y = np.asarray(jnp.asarray(x) * jnp.float32(SQRT8), np.float64)
    assert ld.is_leech_point(full).all()
    d_full, d_out = ((full - y) ** 2).sum(1), ((out * SQRT8 - y) ** 2).sum(1)
    np.testing.assert_allclose(d_full, d_out, rtol=1e-5, atol=0.1)
    np.testing.assert_array_equal(np.rint(out[:96] * SQRT8), full[:96])  # no ties there


def test_kernel_is_exact(decoded):
    x, out, _ = decoded
    assert out.shape == x.shape and out.dtype == np.float32
    y = np.asarray(jnp.asarray(x) * jnp.float32(SQRT8), np.float64)  # what the kernel decodes
    yo = out.astype(np.float64) * SQRT8
    yo_int = np.rint(yo)
    assert np.all(np.abs(yo - yo_int) <= 1e-3 * np.maximum(1, np.abs(yo_int)))
    assert ld.is_leech_point(yo_int).all()
    assert leech.is_integer_leech_point(yo_int).all()  # latticejax's independent check
    d_kernel = ((yo_int - y) ** 2).sum(1)
    d_best = _oracle(y)
    large = (np.arange(len(y)) >= 128) & (np.arange(len(y)) < 160)
    tol = np.where(large, 0.1, 1e-4)  # float32 rounding of y/4 - t/4 at |y| ~ 1e4
    assert np.all(d_kernel <= d_best * (1 + 1e-5) + tol)
    # Without ties the nearest point is unique: identical to latticejax's XLA decoder.
    ref = np.asarray(leech.leech_closest_point(jnp.asarray(x), use_kernel=False))
    no_tie = np.r_[0:96, 160:192]
    np.testing.assert_array_equal(out[no_tie], ref[no_tie])


def test_reference_is_exact():
    x = _inputs(1)[::2]
    y = jnp.asarray(x * SQRT8)
    out = np.asarray(ld.leech_decode_reference(y, chunk=16), np.float64)
    assert ld.is_leech_point(out).all()
    d = ((out - np.asarray(y, np.float64)) ** 2).sum(1)
    assert np.all(d <= _oracle(np.asarray(y)) * (1 + 1e-4) + 1e-4)


def test_turyn_tables_enumerate_the_golay_code():
    t = _turyn.turyn_tables()
    np.testing.assert_array_equal(_turyn.golay_codewords(), golay.codewords())
    perm = np.asarray(t.perm)
    k = np.random.default_rng(2).integers(0, 4096, 64)
    for v in k:
        xs, a, b = v >> 8, (v >> 4) & 15, v & 15
        bits = (t.codeword_mask(xs, a, b) >> np.arange(24)) & 1
        np.testing.assert_array_equal(golay.codewords()[t.golay_index[v]][perm], bits)
        words = [(t.codeword_mask(xs, 0, 0) >> (8 * q)) & 255 for q in range(3)]
        blocks = [(t.codeword_mask(xs, a, b) >> (8 * q)) & 255 for q in range(3)]
        assert blocks[0] == words[0] ^ t.block_words[0][a]
        assert blocks[1] == words[1] ^ t.block_words[1][b]
        assert blocks[2] == words[2] ^ t.block_words[2][a ^ b]
    assert sorted(t.golay_index.tolist()) == list(range(4096))


def test_errors():
    with pytest.raises(ValueError, match=r"\(N, 24\)"):
        ld.leech_decode(jnp.ones((3, 25)), interpret=True)
    with pytest.raises(TypeError, match="int32"):
        ld.leech_decode(jnp.ones((3, 24), jnp.int32), interpret=True)
    with pytest.raises(ValueError, match="power of 2"):
        ld.leech_decode(jnp.ones((3, 24)), block_sizes=ld.BlockSizes(48), interpret=True)
