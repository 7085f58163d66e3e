"""The `Lattice` interface shared by every lattice in latticejax.

A lattice is stored by its generator matrix ``G`` (rows are basis vectors): a lattice point is
``z @ G`` for an integer row vector ``z``. Concrete lattices implement ``_closest_point`` (the exact
decoder, on float32/float64 input of shape ``(..., dim)``) and set the known constants; everything
else (input checking, coordinates, the straight-through quantizer) lives here once.

Subclasses are final: wrap a lattice instead of subclassing a concrete one. ``closest_point`` and
``quantize`` run the decoder as one jitted program per (lattice, shape, dtype), so lattices must
be hashable (frozen dataclasses are) and ``_closest_point`` must be traceable.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_float_input(x: Any, dim: int, *, name: str = "x") -> jax.Array:
    """Validates ``x`` of shape ``(..., dim)`` and returns it as float32/float64.

    Decisions are never made in bf16/f16: those are promoted to float32. Integer and boolean
    inputs are rejected (a lattice decoder of integers is almost always a bug upstream).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}.")
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got shape {x.shape}.")
    if x.dtype not in (jnp.float32, jnp.float64):
        x = x.astype(jnp.float32)
    return x


def check_generator(G: Any, *, name: str = "G") -> np.ndarray:
    """Validates a square, full-rank generator matrix and returns it as float64 numpy."""
    G = np.asarray(G)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) generator matrix, got shape {G.shape}.")
    if not np.issubdtype(G.dtype, np.floating) and not np.issubdtype(G.dtype, np.integer):
        raise TypeError(f"{name} must be a real matrix, got dtype {G.dtype}.")
    G = G.astype(np.float64)
    if not np.all(np.isfinite(G)):
        raise ValueError(f"{name} has non-finite entries.")
    s = np.linalg.svd(G, compute_uv=False)
    if s[-1] <= 1e-12 * max(s[0], 1e-300):
        raise ValueError(
            f"{name} is singular (smallest singular value {s[-1]:.3g}); a lattice generator must "
            "have full rank."
        )
    return G


def check_scale(scale: Any, *, name: str = "scale") -> float:
    """Validates a lattice scale (a positive finite Python/numpy number) and returns it as float."""
    if isinstance(scale, jax.core.Tracer) or np.ndim(scale) != 0:
        raise TypeError(f"{name} must be a concrete positive number, got {scale!r}.")
    s = float(scale)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {scale!r}.")
    return s


def check_dim(n: Any, name: str, *, minimum: int = 1, even: bool = False) -> int:
    """Validates an integer dimension ``n >= minimum`` (and even if asked); returns it as int."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {n!r} of type {type(n).__name__}.")
    if n < minimum or (even and n % 2):
        parity = "an even integer" if even else "an integer"
        raise ValueError(f"{name} must be {parity} >= {minimum}, got {n}.")
    return int(n)


@jax.custom_jvp
def straight_through(x: jax.Array, q: jax.Array) -> jax.Array:
    """Returns ``q`` with the gradient of the identity in ``x`` (and none to ``q``)."""
    del x
    return q


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    x, q = primals
    dx, _ = tangents
    return q, dx.astype(q.dtype)


@dataclasses.dataclass(frozen=True)
class Lattice(abc.ABC):
    """Abstract lattice. Attributes known for a lattice are set by its subclass.

    Attributes:
      dim: ambient dimension n.
      kissing_number: number of minimal vectors, or ``None`` if not finite/known.
      packing_radius: half the minimal distance, in this lattice's scale (``None`` if unknown).
      covering_radius: largest distance of a point of R^n to the lattice (``None`` if unknown).
    """

    @property
    def dim(self) -> int:
        return int(self.generator.shape[0])

    @property
    @abc.abstractmethod
    def generator(self) -> np.ndarray:
        """(dim, dim) float64 numpy generator matrix; rows are basis vectors."""

    @property
    def det(self) -> float:
        """Volume of a fundamental cell, |det G|."""
        return float(abs(np.linalg.det(self.generator)))

    kissing_number: int | None = dataclasses.field(default=None, init=False, repr=False)
    packing_radius: float | None = dataclasses.field(default=None, init=False, repr=False)
    covering_radius: float | None = dataclasses.field(default=None, init=False, repr=False)

    def closest_point(self, x: jax.Array) -> jax.Array:
        """Exact nearest lattice point.

        Args:
          x: ``(..., dim)`` float array (bf16/f16 are promoted to float32).
        Returns:
          ``(..., dim)`` array, float32 or float64 like the (promoted) input.
        """
        x = as_float_input(x, self.dim)
        return _decode(self, x)

    @abc.abstractmethod
    def _closest_point(self, x: jax.Array) -> jax.Array:
        """The exact decoder on validated float32/float64 input ``(..., dim)``."""

    def quantize(self, x: jax.Array) -> jax.Array:
        """Straight-through quantizer: value = ``closest_point(x)``, gradient = identity.

        Returns ``(..., dim)`` in the dtype of ``x`` (the decision itself is made in float32+).
        """
        xf = as_float_input(x, self.dim)
        q = jax.lax.stop_gradient(_decode(self, jax.lax.stop_gradient(xf)))
        return straight_through(jnp.asarray(x), q.astype(jnp.asarray(x).dtype))

    def to_coords(self, point: jax.Array) -> jax.Array:
        """Integer coordinates ``z`` (int32) with ``z @ generator == point``.

        Args:
          point: ``(..., dim)`` lattice points (float).
        Returns:
          ``(..., dim)`` int32.
        """
        point = as_float_input(point, self.dim, name="point")
        ginv = jnp.asarray(np.linalg.inv(self.generator), dtype=point.dtype)
        return jnp.round(point @ ginv).astype(jnp.int32)

    def from_coords(self, z: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
        """Lattice point ``z @ generator`` for integer ``z`` of shape ``(..., dim)``."""
        z = jnp.asarray(z)
        if z.ndim == 0 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got shape {z.shape}.")
        return z.astype(dtype) @ jnp.asarray(self.generator, dtype=dtype)

    def minimal_vectors(self) -> np.ndarray:
        """All minimal vectors as a float64 numpy array ``(kissing_number, dim)``."""
        raise ValueError(
            f"{type(self).__name__} has no finite, known minimal-vector shell in latticejax."
        )


@functools.partial(jax.jit, static_argnums=0)
def _decode(lattice: Lattice, x: jax.Array) -> jax.Array:
    """``lattice._closest_point`` compiled once per (lattice, shape, dtype).

    Eager calls then run one XLA program instead of dispatching every primitive (the decoders
    are dozens of small elementwise ops); inside an outer ``jit`` this is simply inlined.
    Lattices are frozen dataclasses, hashed by their fields (or by identity when ``eq=False``).
    """
    return lattice._closest_point(x)
