"""Grouped lattice vector quantization of weights, GLVQ (arXiv 2510.20984).

Layout (the packed format of `pallas_kernels.packing`): a weight ``W (K, N)`` (``y = x @ W``) is
cut into vectors of ``d = group_dim`` consecutive input rows of one output column; the vectors of
row block ``b`` and output columns ``[g*group_out, (g+1)*group_out)`` form a group sharing one
generator ``G[b, g] (d, d)`` (rows = basis vectors). With a per-column scale ``scales[n]``::

    z[bd:(b+1)d, n] = clip(round(W[bd:(b+1)d, n] / scales[n] @ G[b, g]^-1), -2^(b-1), 2^(b-1)-1)
    W_hat[bd:(b+1)d, n] = scales[n] * z[bd:(b+1)d, n] @ G[b, g]

(Babai rounding, arXiv 2510.20984 §3.2). Training uses straight-through gradients to ``W`` and
the exact gradient of the reconstruction ``z @ G`` to ``G`` and ``scales`` (``z`` held fixed).

The fixed lattices ``zn`` (uniform / RTN), ``dn`` (D_d) and ``e8`` go through the same code:
``G[b, g] = c[b, g] * B`` for the lattice's basis ``B`` normalized to unit volume, with only the
scalar ``c`` learnable; their codebook is the parallelepiped ``{z @ B : z in [-2^(b-1),
2^(b-1)-1]^d}`` (exactly b bits per weight), decoded by Babai rounding or, with
``decoder="exact"``, by the lattice's exact closest point followed by coordinate clipping.

Optional companding (``compand = mu > 0``, GLVQ's companded lattice, arXiv 2510.20984 §3): codes
are taken of ``F(W / scales)`` and ``W_hat = scales * F^-1(z @ G)`` with the mu-law ``F`` of
`latticejax.quant.companding` on the code range ``2^(b-1)``; ``mu`` is fixed, so no bits are added.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from latticejax.lattices.dn import dn_closest_point, dn_generator
from latticejax.lattices.e8 import e8_closest_point, e8_generator
from latticejax.quant._checks import (
    check_bits,
    check_divides,
    check_matrix,
    check_nonsingular,
    code_range,
)
from latticejax.quant.companding import mu_law, mu_law_inverse
from latticejax.quant.rtn import search_scales

LATTICES = ("glvq", "zn", "dn", "e8")
INITS = ("identity", "cholesky")
DECODERS = ("babai", "exact")


@dataclasses.dataclass(frozen=True)
class FixedLattice:
    """A fixed lattice's basis ``B0`` (rows) and exact decoder ``closest_point`` in that scale."""

    basis: np.ndarray
    closest_point: Callable[[jax.Array], jax.Array]

    @property
    def unit_basis(self) -> np.ndarray:
        """``B0 / |det B0|^(1/d)``: the basis scaled to unit cell volume."""
        d = self.basis.shape[0]
        return self.basis / abs(np.linalg.det(self.basis)) ** (1.0 / d)


def fixed_lattice(name: str, d: int) -> FixedLattice:
    """The fixed lattice ``name`` in ``("zn", "dn", "e8")`` of dimension ``d`` (e8 needs d = 8)."""
    if name == "zn":
        return FixedLattice(np.eye(d), jnp.round)
    if name == "dn":
        if d < 2:
            raise ValueError(f"group_dim must be >= 2 for lattice 'dn', got {d}.")
        return FixedLattice(dn_generator(d), dn_closest_point)
    if name == "e8":
        if d != 8:
            raise ValueError(f"group_dim must be 8 for lattice 'e8', got {d}.")
        return FixedLattice(e8_generator(), e8_closest_point)
    raise ValueError(f"lattice must be one of {LATTICES[1:]} here, got {name!r}.")


def check_layout(shape: tuple[int, int], group_dim: int, group_out: int) -> None:
    """Raises ``ValueError`` unless ``group_dim | K`` and ``group_out | N`` for ``shape (K, N)``."""
    K, N = shape
    check_divides(group_dim, K, name="group_dim", dim_name="K (input dim)")
    check_divides(group_out, N, name="group_out", dim_name="N (output dim)")


def to_vectors(W: jax.Array, group_dim: int, group_out: int) -> jax.Array:
    """``(K, N) -> (K/d, N/group_out, group_out, d)``: the d-vectors of each group, as rows."""
    K, N = W.shape
    check_layout((K, N), group_dim, group_out)
    V = W.reshape(K // group_dim, group_dim, N // group_out, group_out)
    return V.transpose(0, 2, 3, 1)


def from_vectors(V: jax.Array) -> jax.Array:
    """Inverse of `to_vectors`: ``(K/d, N/go, go, d) -> (K, N)``."""
    kb, ng, go, d = V.shape
    return V.transpose(0, 3, 1, 2).reshape(kb * d, ng * go)


def babai_codes(V: jax.Array, G: jax.Array, bits: int) -> jax.Array:
    """Clipped Babai rounding ``clip(round(v @ G^-1))`` per group (arXiv 2510.20984 eq. 5).

    Args:
      V: ``(Kb, Ng, go, d)`` vectors. G: ``(Kb, Ng, d, d)`` generators (rows = basis).
      bits: 1..8.
    Returns:
      ``(Kb, Ng, go, d)`` integral floats in ``[-2^(b-1), 2^(b-1)-1]`` (no gradient).
    """
    lo, hi = code_range(bits)
    check_nonsingular(G, name="generators")
    t = jnp.einsum("bgcd,bgde->bgce", V, jnp.linalg.inv(G))
    return jax.lax.stop_gradient(jnp.clip(jnp.round(t), lo, hi))


def exact_codes(V: jax.Array, c: jax.Array, lattice: FixedLattice, bits: int) -> jax.Array:
    """Exact nearest point of ``c * B`` (``B`` = unit basis), coordinates clipped to ``bits``.

    Args:
      V: ``(Kb, Ng, go, d)``. c: ``(Kb, Ng)`` positive scalars. lattice: `fixed_lattice`.
    Returns:
      ``(Kb, Ng, go, d)`` integral floats in the bit range (no gradient).
    """
    lo, hi = code_range(bits)
    B0 = lattice.basis
    nu = abs(np.linalg.det(B0)) ** (1.0 / B0.shape[0])
    s = (c / nu)[:, :, None, None]
    p = lattice.closest_point(V / s)
    z = jnp.round(p @ jnp.asarray(np.linalg.inv(B0), V.dtype))
    return jax.lax.stop_gradient(jnp.clip(z, lo, hi))


def dequantize(z: jax.Array, G: jax.Array, scales: jax.Array) -> jax.Array:
    """``W_hat = scales * (z @ G)`` per group.

    Args:
      z: ``(K, N)`` integral codes. G: ``(K/d, N/go, d, d)``. scales: ``(N,)``.
    Returns:
      ``(K, N)`` in the dtype of ``G``.
    """
    kb, ng, d, _ = G.shape
    K, N = z.shape
    Z = to_vectors(z.astype(G.dtype), d, N // ng)
    return from_vectors(jnp.einsum("bgcd,bgde->bgce", Z, G)) * scales


def bits_per_weight(
    shape: tuple[int, int],
    bits: int,
    group_dim: int,
    group_out: int,
    *,
    generator_params: int,
    param_bits: int = 32,
) -> float:
    """Exact storage cost per weight including generator and scale overhead (arXiv 2510.20984).

    ``bits + (param_bits * generator_params * (K/d) * (N/go) + param_bits * N) / (K * N)``.

    Args:
      shape: ``(K, N)``. bits: code bits. group_dim, group_out: the layout.
      generator_params: stored numbers per group generator (``d*d`` for GLVQ, 1 for a fixed
        lattice, whose generator is ``c * B``). param_bits: bits per stored number (float32: 32).
    Returns:
      bits per weight as a float (exact for these integer inputs up to float rounding).
    """
    K, N = shape
    bits = check_bits(bits)
    check_layout(shape, group_dim, group_out)
    groups = (K // group_dim) * (N // group_out)
    overhead = param_bits * (generator_params * groups + N)
    return bits + overhead / (K * N)


def step_grid(n_grid: int = 48) -> jax.Array:
    """``(n_grid,)`` candidate cell sizes ``c``, log-spaced from 1/4 to 2, in units of the
    per-column RTN step (`rtn.search_scales`), which is where the coordinates are measured.

    Both choices fix a bug of the first version, whose scales were the column RMS and whose
    grid was linear in the row block's maximum: a group of rows shares ``c`` across all
    columns, so one outlier weight (all-MiniLM-L6-v2 has a 7.9 among ~0.03 weights on its most
    used input row) could not be represented in its column and was clipped to 5% of its value.
    """
    return jnp.exp(jnp.linspace(np.log(0.25), np.log(2.0), n_grid))


def _unit_basis_for(lattice: str, d: int) -> np.ndarray:
    return np.eye(d) if lattice == "glvq" else fixed_lattice(lattice, d).unit_basis


def _decode_error(V, G, bits, decode):
    z = decode(V, G)
    return jnp.sum((jnp.einsum("bgcd,bgde->bgce", z, G) - V) ** 2, axis=(2, 3))


def init_generators(
    W: jax.Array,
    bits: int,
    *,
    lattice: str = "glvq",
    group_dim: int = 8,
    group_out: int | None = None,
    init: str = "identity",
    n_grid: int = 48,
    compand: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Initial ``(G, scales)`` for `glvq_fake_quant` (arXiv 2510.20984 §3.3).

    ``scales[n]`` is the MSE-optimal RTN step of column ``n`` (`rtn.search_scales`), so that
    every column's range, outliers included, is representable. The per-group shape ``B`` is
    the unit identity (``init="identity"``; fixed lattices use their own unit basis) or the
    transposed Cholesky factor of the group's d×d second moment normalized to unit determinant
    (``init="cholesky"``, GLVQ only), so that ``v @ B^-1`` is white. The size ``c`` of
    ``G = c B`` minimizes the group's Babai-rounding error over the ``n_grid`` candidates of
    `step_grid` (log-spaced multiples of the column step).

    Args:
      W: ``(K, N)`` float weight. bits: 1..8. lattice: one of ``LATTICES``.
      group_dim: d. group_out: output columns per generator (default N).
      compand: mu-law mu (0: off); the groups are fitted in the companded domain.
    Returns:
      ``G (K/d, N/go, d, d)`` and ``scales (N,)``, dtype of W.
    """
    check_matrix(W)
    bits = check_bits(bits)
    W = jnp.asarray(W)
    K, N = W.shape
    group_out = N if group_out is None else int(group_out)
    check_layout((K, N), group_dim, group_out)
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}.")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    if init == "cholesky" and lattice != "glvq":
        raise ValueError(f"init='cholesky' needs lattice='glvq', got lattice={lattice!r}.")
    return _init_generators(W, bits, lattice, group_dim, group_out, init, n_grid, float(compand))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _init_generators(W, bits, lattice, group_dim, group_out, init, n_grid, compand):
    d = group_dim
    scales = search_scales(W, bits, axis=0)
    V = to_vectors(mu_law(W / scales, compand, 2.0 ** (bits - 1)), d, group_out)
    kb, ng = V.shape[:2]
    if init == "cholesky":
        S = jnp.einsum("bgcd,bgce->bgde", V, V) / group_out
        S = S + 1e-3 * jnp.mean(jnp.diagonal(S, axis1=-2, axis2=-1)) * jnp.eye(d, dtype=W.dtype)
        B = jnp.swapaxes(jnp.linalg.cholesky(S), -1, -2)
        B = B / jnp.abs(jnp.linalg.det(B))[..., None, None] ** (1.0 / d)
    else:
        B = jnp.broadcast_to(jnp.asarray(_unit_basis_for(lattice, d), W.dtype), (kb, ng, d, d))
    cands = step_grid(n_grid).astype(W.dtype)
    decode = lambda V_, G_: babai_codes(V_, G_, bits)

    def err_for(c):
        return _decode_error(V, c * B, bits, decode)

    errs = jax.lax.map(err_for, cands)  # (n_grid, kb, ng)
    c = cands[jnp.argmin(errs, axis=0)]
    return (c[..., None, None] * B).astype(W.dtype), scales.astype(W.dtype)


def glvq_fake_quant(
    W: jax.Array,
    G: jax.Array,
    scales: jax.Array,
    bits: int,
    *,
    codes: jax.Array | None = None,
    compand: float = 0.0,
) -> jax.Array:
    """Fake-quantized weight: value ``scales * F^-1(z @ G)``, gradient identity to ``W`` (STE)
    and the reconstruction's gradient to ``G`` and ``scales`` (arXiv 2510.20984 §3.2).

    Args:
      W: ``(K, N)`` float. G: ``(K/d, N/go, d, d)``. scales: ``(N,)``. bits: 1..8.
      codes: optional precomputed ``(K, N)`` codes (e.g. from the exact decoder, taken of
        ``F(W / scales)``); default clipped Babai rounding.
      compand: mu of the mu-law ``F`` (`latticejax.quant.companding`); 0: ``F`` = identity.
    Returns:
      ``(K, N)`` dtype of W.
    """
    check_matrix(W)
    bits = check_bits(bits)
    kb, ng, d, _ = G.shape
    K, N = W.shape
    if (kb * d, ng * (N // max(ng, 1))) != (K, N) or N % ng:
        raise ValueError(f"G of shape {G.shape} does not tile W of shape {W.shape}.")
    r = 2.0 ** (bits - 1)
    if codes is None:
        V = to_vectors(jax.lax.stop_gradient(mu_law(W / scales, compand, r)), d, N // ng)
        codes = from_vectors(babai_codes(V, G, bits))
    U = dequantize(jax.lax.stop_gradient(codes), G, jnp.ones_like(scales))
    W_hat = (mu_law_inverse(U, compand, r) * scales).astype(W.dtype)
    return W_hat + (W - jax.lax.stop_gradient(W))


class GLVQ(nnx.Module):
    """Learnable grouped lattice quantizer of one ``(K, N)`` weight (arXiv 2510.20984).

    ``lattice="glvq"`` learns a full generator per group; ``"zn"``, ``"dn"``, ``"e8"`` learn only
    the scalar ``c`` of ``G = c * B``. ``q(W)`` returns the fake-quantized ``(K, N)`` weight.

    Attributes:
      generator: ``(K/d, N/go, d, d)`` Param (``glvq``) or ``log_c``: ``(K/d, N/go)`` Param.
      scales: ``(N,)`` Param, per-output-column scale.
      compand: mu-law mu applied to ``W / scales`` before rounding (0: off; module doc).
    """

    def __init__(
        self,
        W: jax.Array,
        bits: int,
        *,
        lattice: str = "glvq",
        group_dim: int = 8,
        group_out: int | None = None,
        init: str = "identity",
        decoder: str = "babai",
        compand: float = 0.0,
    ):
        check_matrix(W)
        self.bits = check_bits(bits)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
        if decoder == "exact" and lattice == "glvq":
            raise ValueError("decoder='exact' needs a fixed lattice (zn, dn, e8), got 'glvq'.")
        K, N = W.shape
        self.shape = (int(K), int(N))
        self.lattice = lattice
        self.group_dim = int(group_dim)
        self.group_out = N if group_out is None else int(group_out)
        self.decoder = decoder
        if not compand >= 0:
            raise ValueError(f"compand must be a mu-law mu >= 0 (0: off), got {compand!r}.")
        self.compand = float(compand)
        G, scales = init_generators(
            jnp.asarray(W, jnp.float32),
            bits,
            lattice=lattice,
            group_dim=self.group_dim,
            group_out=self.group_out,
            init=init,
            compand=self.compand,
        )
        self.scales = nnx.Param(scales)
        if lattice == "glvq":
            self.generator = nnx.Param(G)
        else:
            B = _unit_basis_for(lattice, self.group_dim)
            self.log_c = nnx.Param(jnp.log(G[..., 0, :] @ np.linalg.inv(B)[:, 0]))

    def generators(self) -> jax.Array:
        """``(K/d, N/go, d, d)`` float32 generators (rows = basis vectors)."""
        if self.lattice == "glvq":
            return self.generator[...]
        B = jnp.asarray(_unit_basis_for(self.lattice, self.group_dim), jnp.float32)
        return jnp.exp(self.log_c[...])[..., None, None] * B

    def codes(self, W: jax.Array) -> jax.Array:
        """``(K, N)`` int32 codes of ``F(W / scales)`` in ``[-2^(b-1), 2^(b-1)-1]``."""
        G = self.generators()
        T = mu_law(W / self.scales[...], self.compand, 2.0 ** (self.bits - 1))
        V = to_vectors(jax.lax.stop_gradient(T), self.group_dim, self.group_out)
        if self.decoder == "exact":
            lat = fixed_lattice(self.lattice, self.group_dim)
            z = exact_codes(V, jnp.exp(self.log_c[...]), lat, self.bits)
        else:
            z = babai_codes(V, G, self.bits)
        return from_vectors(z).astype(jnp.int32)

    def __call__(self, W: jax.Array) -> jax.Array:
        """Fake-quantized ``(K, N)`` weight (STE to W, reconstruction gradient to G, scales)."""
        if tuple(W.shape) != self.shape:
            raise ValueError(f"W must have shape {self.shape}, got {tuple(W.shape)}.")
        codes = self.codes(W) if self.decoder == "exact" else None
        return glvq_fake_quant(
            W, self.generators(), self.scales[...], self.bits, codes=codes, compand=self.compand
        )

    @property
    def bits_per_weight(self) -> float:
        """Exact bits per weight incl. float32 generators (d*d, or 1 for a fixed lattice) and
        float32 scales; see `bits_per_weight`."""
        params = self.group_dim**2 if self.lattice == "glvq" else 1
        return bits_per_weight(
            self.shape, self.bits, self.group_dim, self.group_out, generator_params=params
        )


__all__ = [
    "DECODERS",
    "GLVQ",
    "INITS",
    "LATTICES",
    "babai_codes",
    "bits_per_weight",
    "check_layout",
    "dequantize",
    "exact_codes",
    "fixed_lattice",
    "from_vectors",
    "glvq_fake_quant",
    "init_generators",
    "to_vectors",
]
