"""The ``interpret`` convention of the kernels' entry points (pallas_kernels._dispatch)."""

import jax
import jax.numpy as jnp
import pytest

from pallas_kernels import _dispatch
from pallas_kernels import lattice_matmul as lm
from pallas_kernels import leech_nearest as ln


@pytest.mark.parametrize(
    "interpret, on_gpu, want",
    [(True, False, True), (True, True, True), (None, True, True), (None, False, False)],
)
def test_use_kernel(interpret, on_gpu, want):
    assert _dispatch.use_kernel(interpret, on_gpu) is want


def test_false_compiles_on_gpu_and_never_falls_back():
    # False used to select the pure-JAX reference on every backend (a silent trap: callers that
    # passed `interpret=not on_gpu` timed and tested the reference on the GPU).
    assert _dispatch.use_kernel(False, True) is True
    with pytest.raises(ValueError, match="interpret=False compiles the Pallas GPU kernel"):
        _dispatch.use_kernel(False, False)


def test_entry_points_refuse_false_off_gpu(monkeypatch):
    monkeypatch.setattr(lm, "_on_gpu", lambda: False)
    monkeypatch.setattr(ln, "_on_gpu", lambda: False)
    pk = lm.random_glvq(jax.random.key(0), 64, 32, 2, 32)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        lm.lattice_matmul(jnp.ones((1, 64)), pk, interpret=False)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ln.leech_nearest(jnp.ones((2, 24)), interpret=False)
