"""Argument checks shared by the weight quantizers (errors name argument, value and expectation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_bits(bits: int, *, name: str = "bits") -> int:
    """Returns ``bits`` as int if it is an integer in 1..8, else raises ``ValueError``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an integer in 1..8, got {bits!r}.")
    if not 1 <= int(bits) <= 8:
        raise ValueError(f"{name} must be in 1..8, got {bits}.")
    return int(bits)


def code_range(bits: int) -> tuple[int, int]:
    """Signed integer range ``[-2^(b-1), 2^(b-1) - 1]`` of ``bits``-bit coordinates."""
    bits = check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def traced_code_range(bits) -> tuple[jax.Array, jax.Array]:
    """`code_range` as float32 scalars for an integer ``bits`` that may be traced, so that the
    jitted quantizers compile once for every bit width (validate ``bits`` before tracing)."""
    hi = jnp.exp2(jnp.asarray(bits, jnp.float32) - 1.0) - 1.0
    return -hi - 1.0, hi


def check_divides(size: int, dim: int, *, name: str, dim_name: str) -> None:
    """Raises ``ValueError`` unless ``size`` is a positive divisor of ``dim``."""
    if int(size) <= 0 or dim % int(size):
        raise ValueError(f"{name}={size} must be a positive divisor of {dim_name}={dim}.")


def check_matrix(W, *, name: str = "W") -> None:
    """Raises ``ValueError`` unless ``W`` is a 2-D ``(K, N)`` weight matrix."""
    if np.ndim(W) != 2:
        raise ValueError(f"{name} must be a 2-D (K, N) weight matrix, got shape {np.shape(W)}.")


def check_nonsingular(G, *, name: str = "G") -> None:
    """Raises ``ValueError`` if any ``(d, d)`` generator in ``G (..., d, d)`` is singular.

    Skipped for traced values (inside ``jit`` the check cannot raise); call it eagerly at setup.
    """
    if isinstance(G, jax.core.Tracer):
        return
    G = np.asarray(G, dtype=np.float64)
    if G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"{name} must have shape (..., d, d), got shape {G.shape}.")
    if not np.all(np.isfinite(G)):
        raise ValueError(f"{name} has non-finite entries.")
    s = np.linalg.svd(G, compute_uv=False)
    ratio = s[..., -1] / np.maximum(s[..., 0], 1e-300)
    if np.any(ratio <= 1e-7):
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmin(ratio)), ratio.shape))
        raise ValueError(
            f"{name}{list(idx)} is singular (condition ratio {float(ratio[idx]):.3g}); expected "
            "full-rank generators."
        )
