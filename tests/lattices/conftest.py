"""Shared fixtures for the lattice tests."""

import zlib

import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Runs the test with 64-bit JAX types (exact-decoding checks are made in float64)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: fresh data per test, reproducible in CI."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
