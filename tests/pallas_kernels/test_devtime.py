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
