"""Checks of the device-time tool ``pallas_kernels.devtime`` (its GPU numbers: BENCHMARKS.md)."""

import tempfile

import jax
import jax.numpy as jnp
import pytest

from pallas_kernels import devtime
from pallas_kernels import lattice_matmul as lm


def test_parse_block_sizes_round_trips_a_tiling():
    bs = lm.BlockSizes("fma2b", 128, 32, split_k=16, prologue="pallas")
    assert devtime.parse_block_sizes(repr(bs)) == bs
    assert devtime.parse_block_sizes("BlockSizes('dot2', 64, 16, 16, 2)").mode == "dot2"


@pytest.mark.parametrize("text", ["1 + 1", "open('x')", "__import__('os')"])
def test_parse_block_sizes_refuses_anything_else(text):
    with pytest.raises((ValueError, NameError, TypeError)):
        devtime.parse_block_sizes(text)


def test_device_kernels_reads_the_trace_or_names_the_missing_gpu():
    f = jax.jit(lambda x: x * 2)
    jax.block_until_ready(f(jnp.ones(4)))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            jax.block_until_ready(f(jnp.ones(4)))
        if jax.default_backend() == "gpu":
            kernels = devtime.device_kernels(d)
            assert kernels and all(ns >= 0 for _, _, ns in kernels)
        else:
            with pytest.raises(RuntimeError, match="no GPU stream events"):
                devtime.device_kernels(d)


def test_measure_rotates_enough_weights_to_miss_l2(monkeypatch):
    # 4 sets of a 4096^2 2-bit weight (16 MiB) would stay in an H100's 50 MB L2: every profiled
    # call would then read its weight from L2 and the device time would look too fast.
    seen = []

    def spy(case, k, n, bits, m, sets, *args):
        seen.append((case, k * n * (2 if case == "bf16" else bits / 8), sets))
        raise StopIteration

    monkeypatch.setattr(devtime, "_inputs", spy)
    for case, bits in (("glvq", 2), ("glvq", 4), ("bf16", 16)):
        with pytest.raises(StopIteration):
            devtime.measure(case, "4096x4096", bits, 1)
    with pytest.raises(StopIteration):
        devtime.measure("glvq", "8192x28672", 2, 1)
    assert len(seen) == 4
    for case, nbytes, sets in seen:
        assert 4 <= sets <= 16 and sets * nbytes > devtime.L2_BYTES, (case, nbytes, sets)
    with pytest.raises(StopIteration):
        devtime.measure("glvq", "4096x4096", 2, 1, sets=3)
    assert seen[-1][2] == 3  # an explicit count is kept
